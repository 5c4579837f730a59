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
