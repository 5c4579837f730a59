"""Bad or hostile use never crashes the interpreter, hangs, or returns garbage silently.

Each test here failed before its fix (found by fuzzing the public API). Anything that could
crash the interpreter runs in a child process, so a regression fails one test, not the run.
"""

import math
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import nbcnn
import oracles
from nbcnn import optim


def run_child(code: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout)


# --------------------------------------------------------------------------- optimiser state


def _tiny(width):
    return nbcnn.Sequential([nbcnn.Flatten(), nbcnn.Dense(width), nbcnn.Dense(2, activation="softmax")],
                            input_shape=(2, 2, 1), seed=0)


def test_one_optimizer_shared_by_two_models_is_refused_not_a_segfault():
    child = run_child("""
        import numpy as np, nbcnn
        from nbcnn import optim
        def tiny(width):
            return nbcnn.Sequential([nbcnn.Flatten(), nbcnn.Dense(width), nbcnn.Dense(2, activation="softmax")],
                                    input_shape=(2, 2, 1), seed=0)
        x, y = np.ones((4, 2, 2, 1), np.float32), np.array([0, 1, 0, 1])
        opt = optim.Adam()
        a, b = tiny(3), tiny(50)
        a.compile(opt); a.fit(x, y, epochs=1, batch_size=4, verbose=0)
        b.compile(opt)
        try:
            b.fit(x, y, epochs=1, batch_size=4, verbose=0)
        except ValueError as exc:
            print("REFUSED", exc)
    """)
    assert child.returncode == 0, child.stderr[-2000:]
    assert "REFUSED" in child.stdout and "another model" in child.stdout


def test_a_smaller_second_model_does_not_reuse_the_first_models_moments():
    x, y = np.ones((4, 2, 2, 1), np.float32), np.array([0, 1, 0, 1])
    opt = optim.Adam()
    a, b = _tiny(3), _tiny(3)
    a.compile(opt)
    a.fit(x, y, epochs=1, batch_size=4, verbose=0)
    b.compile(opt)
    with pytest.raises(ValueError, match="another model"):
        b.fit(x, y, epochs=1, batch_size=4, verbose=0)


def test_optimizer_state_of_the_wrong_size_is_refused():
    model = _tiny(3)
    opt = optim.Adam()
    model.compile(opt)
    name = next(f"{path}/{key}" for path, _, key in model.network.parameters())
    opt.slots[name] = {"m": np.zeros(1000, np.float32), "v": np.zeros(1000, np.float32)}
    with pytest.raises(ValueError, match="optimizer state .* has shape"):
        model.fit(np.ones((4, 2, 2, 1), np.float32), np.array([0, 1, 0, 1]), epochs=1, batch_size=4, verbose=0)


@pytest.mark.parametrize("make", [
    lambda: optim.Adam(float("nan")), lambda: optim.Adam(-1), lambda: optim.Adam(math.inf),
    lambda: optim.Adam(beta_1=1.0), lambda: optim.Adam(epsilon=0), lambda: optim.SGD(momentum=-0.1),
    lambda: optim.SGD(weight_decay=float("nan")),
])
def test_optimizer_hyper_parameters_must_be_finite_and_in_range(make):
    with pytest.raises(ValueError, match="must be a finite number"):
        make()
    with pytest.raises(TypeError):
        optim.Adam("0.1")


# --------------------------------------------------------------------------- processes and threads


def test_a_pool_of_forked_workers_runs_kernels_after_the_parent_has():
    """GNU OpenMP killed every forked child that ran a parallel loop again, and Pool.map hung."""
    child = run_child("""
        import multiprocessing as mp
        import numpy as np, nbcnn

        def work(seed):
            x = np.random.default_rng(seed).random((16, 12, 12, 8), dtype=np.float32)
            return float(nbcnn.conv2d(x, np.ones((3, 3, 8, 16), np.float32), np.zeros(16, np.float32)).sum())

        if __name__ == "__main__":
            print(work(0))  # the parent runs parallel kernels first
            with mp.get_context("fork").Pool(2) as pool:
                print(pool.map(work, range(4)))
    """, timeout=300)
    assert child.returncode == 0, child.stderr[-2000:]
    assert "Terminating" not in child.stderr


def test_set_backend_holds_in_every_thread_use_backend_in_its_own():
    seen = {}

    def ask(key):
        seen[key] = nbcnn.get_backend()

    try:
        nbcnn.set_backend("python")
        worker = threading.Thread(target=ask, args=("set",))
        worker.start(); worker.join()
        with nbcnn.use_backend("cpu"):
            ask("block")
            worker = threading.Thread(target=ask, args=("other thread during block",))
            worker.start(); worker.join()
    finally:
        nbcnn.set_backend(None)
    assert seen == {"set": "python", "block": "cpu", "other thread during block": "python"}


# --------------------------------------------------------------------------- pooling geometry


@pytest.mark.parametrize("op", ["max", "avg"])
def test_pooling_work_and_memory_grow_with_the_output_not_the_padding(op):
    """f = stride = (1, F), pad = (0, F - 1) on a 1x2 image: two outputs. The fast kernels worked
    at every padded position (4.5 s at F = 1e5; 1.6 GB at F = 1e8). Now F = 1e8 must give the
    oracle's answer with the process's peak memory grown by less than 100 MB (the same call
    with F = 1000 runs first, so compiling is not counted)."""
    child = run_child(f"""
        import resource, numpy as np, nbcnn
        x = np.array([[[[1.0], [3.0]]]], np.float32)
        pool, back = nbcnn.{op}_pool2d, nbcnn.{op}_pool2d_backward

        def run(F):
            p = pool(x, f=(1, F), stride=(1, F), pad=(0, F - 1))
            return p, back(np.ones_like(p), x, f=(1, F), stride=(1, F), pad=(0, F - 1))

        run(1000)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        p, dx = run(10 ** 8)
        grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
        print(p.ravel().tolist(), dx.ravel().tolist(), grown_mb < 100)
    """, timeout=120)
    assert child.returncode == 0, child.stderr[-2000:]
    # output 0's window covers only pixel 0, output 1's only pixel 1 (its first cell is x[1])
    assert child.stdout.strip() == "[1.0, 3.0] [1.0, 1.0] True"


def test_an_argmax_that_int32_cannot_number_is_refused():
    x = np.ones((1, 1, 1, 1), np.float32)
    with pytest.raises(ValueError, match="int32"):
        nbcnn.max_pool2d(x, 50000, None, 49999, return_argmax=True)
    # without the argmax the same window works, through the readable gather on every backend
    assert nbcnn.max_pool2d_backward(np.ones((1, 1, 1, 1), np.float32), x, 50000, None, 49999).item() == 1.0


@pytest.mark.parametrize("hyper", [dict(f=2.0), dict(f=True), dict(f=2, stride=2.0), dict(f=2, pad=False),
                                   dict(f=(2, 2.0))])
def test_pooling_validation_does_not_depend_on_earlier_calls(hyper):
    x = np.ones((1, 4, 4, 1), np.float32)
    nbcnn.max_pool2d(x, 2)  # the accepted twin, first: its verdict must not be reused
    nbcnn.max_pool2d(x, 2, 2, 0)
    with pytest.raises(TypeError):
        nbcnn.max_pool2d(x, **hyper)


# --------------------------------------------------------------------------- silent garbage in the ops


@pytest.mark.parametrize("backend", ["python", "cpu"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_no_bias_means_no_bias(backend, dtype):
    """b=None gave NaN in float32, a casting error in float64 and a TypeError on python."""
    rng = np.random.default_rng(0)
    x, W = rng.standard_normal((1, 4, 4, 2)).astype(dtype), rng.standard_normal((3, 3, 2, 3)).astype(dtype)
    Wd = rng.standard_normal((32, 3)).astype(dtype)
    with nbcnn.use_backend(backend):
        z = nbcnn.conv2d(x, W, None, pad=1)
        y = nbcnn.dense(x.reshape(1, -1), Wd, None)
    np.testing.assert_allclose(z, oracles.conv_forward(x, W, np.zeros(3), (1, 1), (1, 1, 1, 1)), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(y, x.reshape(1, -1).astype(np.float64) @ Wd, rtol=1e-5, atol=1e-5)
    assert z.dtype == y.dtype == dtype


@pytest.mark.parametrize("backend", ["python", "cpu", "cuda"])
def test_relu_keeps_nan(backend):
    """relu(nan) was 0: one NaN pixel then hid itself in training (numpy and torch give NaN)."""
    with nbcnn.use_backend(backend):
        y = nbcnn.relu(np.array([np.nan, -1.0, 2.0], np.float32))
    assert np.isnan(y[0]) and y[1:].tolist() == [0.0, 2.0]


@pytest.mark.parametrize("op", ["relu", "sigmoid", "tanh", "softmax", "leaky_relu"])
def test_a_scalar_keeps_its_shape(op):
    y = getattr(nbcnn, op)(np.float32(0.5))
    assert np.shape(y) == ()
    assert np.shape(getattr(nbcnn, op + "_backward")(np.float32(1.0), np.float32(0.5))) == ()


@pytest.mark.parametrize("hyper", [dict(pad=2**62), dict(stride=2**64), dict(stride=(1, 2**63))])
def test_huge_hyper_parameters_are_refused_clearly(hyper):
    x, W = np.ones((1, 3, 3, 1), np.float32), np.ones((1, 1, 1, 1), np.float32)
    with pytest.raises(ValueError, match="at most 2\\*\\*31 - 1"):
        nbcnn.conv2d(x, W, None, **hyper)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_huge_stride_and_pad_give_the_answer_not_a_huge_allocation(dtype):
    """1x1 input, stride = pad = 100000: the float32 fast path asked for 149 GiB of padded input."""
    x, W = np.full((1, 1, 1, 1), 3.0, dtype), np.full((1, 1, 1, 1), 2.0, dtype)
    z = nbcnn.conv2d(x, W, None, stride=100000, pad=100000)
    expected = np.zeros((1, 3, 3, 1))
    expected[0, 1, 1, 0] = 6.0
    np.testing.assert_array_equal(z, expected)
    dx, dW, db = nbcnn.conv2d_backward(np.ones_like(z), x, W, stride=100000, pad=100000)
    assert (dx.item(), dW.item(), db.item()) == (2.0, 3.0, 9.0)


@pytest.mark.parametrize("backend", ["python", "cpu", "cuda"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_padding_contributes_nothing_even_next_to_inf(backend, dtype):
    """The fast kernels multiplied their copied zeros: 0 * inf = NaN where the readable loop,
    which skips padding, gives inf. Every backend now gives the readable answer (the oracle:
    a numpy sum over the real cells only)."""
    x = np.arange(1.0, 26.0, dtype=dtype).reshape(1, 5, 5, 1)
    W = np.ones((3, 3, 1, 24), dtype)
    W[0, 0, 0, :] = np.inf  # the top-left tap meets the padding at the top and left border
    dz = np.ones((1, 5, 5, 24), dtype)
    dz[0, 0, 0, 0] = np.inf
    with nbcnn.use_backend(backend):
        z = nbcnn.conv2d(x, W, None, pad=1)
        dx, dW, _ = nbcnn.conv2d_backward(dz, x, W, pad=1)
    xp = np.pad(x[0, :, :, 0].astype(np.float64), 1)
    real = np.pad(np.ones((5, 5)), 1)
    for h in range(5):
        for w in range(5):
            cells = real[h:h + 3, w:w + 3] > 0
            want = np.sum((xp[h:h + 3, w:w + 3] * np.where(cells, W[:, :, 0, 0], 0))[cells])
            assert z[0, h, w, 0] == want, (h, w, z[0, h, w, 0], want)
    assert not np.isnan(z).any() and not np.isnan(dx).any() and not np.isnan(dW).any()
