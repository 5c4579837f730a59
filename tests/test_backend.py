"""The dispatcher: choosing backends, telling why one cannot run, never falling back silently."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import nbcnn
from nbcnn import config
from conftest import REAL_GPU

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_python(code: str, **env) -> subprocess.CompletedProcess:
    """Run code in a fresh interpreter (numba's simulator switch only works before import)."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_ENABLE_CUDASIM", "NBCNN_BACKEND")}
    full_env["PYTHONPATH"] = REPO + os.pathsep + full_env.get("PYTHONPATH", "")
    full_env.update(env)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=full_env, timeout=300)


def test_available_backends_says_what_works_and_why():
    status = nbcnn.available_backends()
    assert set(status) == {"python", "cpu", "cuda"}
    assert status["python"].ok and status["cpu"].ok
    assert status["cuda"].ok  # a real GPU, or the simulator conftest switched on
    assert ("simulator" in status["cuda"].reason) != REAL_GPU
    assert all(isinstance(s.reason, str) and s.reason for s in status.values())


def test_set_backend_and_context_manager_restore():
    try:
        assert nbcnn.set_backend("python") == "python"
        assert nbcnn.get_backend() == "python"
        with nbcnn.use_backend("cpu") as inside:
            assert inside == "cpu" and nbcnn.get_backend() == "cpu"
        assert nbcnn.get_backend() == "python"
    finally:
        nbcnn.set_backend(None)


def test_environment_variable_picks_the_backend(monkeypatch):
    monkeypatch.setenv("NBCNN_BACKEND", "python")
    assert nbcnn.get_backend() == "python"
    monkeypatch.setenv("NBCNN_BACKEND", "bogus")
    with pytest.raises(ValueError, match="unknown backend 'bogus'.*NBCNN_BACKEND"):
        nbcnn.get_backend()
    with nbcnn.use_backend("cpu"):  # code wins over the environment
        assert nbcnn.get_backend() == "cpu"


def test_auto_is_cpu_without_a_real_gpu():
    with nbcnn.use_backend("auto") as chosen:
        assert chosen == ("cuda" if REAL_GPU else "cpu")


def test_unknown_backend_names_the_choices():
    with pytest.raises(ValueError, match="choose one of"):
        nbcnn.set_backend("tpu")
    with pytest.raises(TypeError):
        nbcnn.set_backend(3)


@pytest.mark.skipif(REAL_GPU, reason="this machine has a GPU")
def test_cuda_without_gpu_or_simulator_is_a_clear_error_not_a_fallback():
    result = run_python("""
        import nbcnn
        try:
            nbcnn.set_backend("cuda")
        except nbcnn.BackendError as e:
            print("ERROR:", e)
        print("CHOSEN:", nbcnn.get_backend())
    """)
    assert result.returncode == 0, result.stderr
    assert "ERROR: backend 'cuda' (from set_backend) cannot run here" in result.stdout
    assert "NUMBA_ENABLE_CUDASIM=1" in result.stdout  # the fix is named
    assert "CHOSEN: cpu" in result.stdout


@pytest.mark.skipif(REAL_GPU, reason="this machine has a GPU")
def test_cuda_from_the_environment_without_gpu_fails_at_the_first_op():
    result = run_python("""
        import numpy as np, nbcnn
        nbcnn.relu(np.ones(3))
    """, NBCNN_BACKEND="cuda")
    assert result.returncode != 0
    assert "BackendError: backend 'cuda' (from $NBCNN_BACKEND) cannot run here" in result.stderr


def test_importing_nbcnn_does_not_import_numba_cuda():
    result = run_python("""
        import sys, numpy as np, nbcnn
        nbcnn.available_backends()  # may probe the driver with ctypes, not numba.cuda
        with nbcnn.use_backend("cpu"):
            nbcnn.relu(np.ones(3))
        print("numba.cuda" in sys.modules, "numba_cuda" in sys.modules)
    """)
    assert result.returncode == 0, result.stderr
    if not REAL_GPU:
        assert result.stdout.split() == ["False", "False"]


def test_gpu_arrays_stay_on_the_device():
    from numba import cuda

    x = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1) - 8
    with nbcnn.use_backend("cuda"):
        y = nbcnn.relu(cuda.to_device(x))
        assert nbcnn.backend.is_device_array(y)
        p = nbcnn.max_pool2d(y, 2)
        assert nbcnn.backend.is_device_array(p)
        host = nbcnn.max_pool2d(x, 2)
        assert isinstance(host, np.ndarray)
    np.testing.assert_array_equal(nbcnn.to_host(p), host.clip(0))


def test_debug_prints_backend_kernel_and_time(monkeypatch, capsys):
    monkeypatch.setenv("NBCNN_DEBUG", "1")
    with nbcnn.use_backend("cpu"):
        nbcnn.relu(np.ones(3, np.float32))
    err = capsys.readouterr().err
    assert "[nbcnn] cpu" in err and "relu" in err and "ms" in err


def _conv_case(dtype, rng=np.random.default_rng(3)):
    x = rng.standard_normal((2, 9, 8, 5)).astype(dtype)
    W = rng.standard_normal((3, 3, 5, 7)).astype(dtype)
    b = rng.standard_normal(7).astype(dtype)
    dz = rng.standard_normal((2, 5, 4, 7)).astype(dtype)  # stride 2, pad 1
    return x, W, b, dz


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_plain_inputs_run_the_cpu_kernel_without_launch(monkeypatch, dtype):
    """conv2d and conv2d_backward on plain numpy arrays call the cpu kernels straight away
    (backend.cpu_runners) and give the same bits as the full launch path; anything else
    (other layouts, mixed dtypes, lists) still goes through launch."""
    from nbcnn import backend as dispatch

    x, W, b, dz = _conv_case(dtype)
    launched = []
    real_launch = dispatch.launch
    monkeypatch.setattr(dispatch, "launch", lambda kernel, *a, **k: (launched.append(kernel.name),
                                                                      real_launch(kernel, *a, **k))[1])
    with nbcnn.use_backend("cpu"):
        z = nbcnn.conv2d(x, W, b, 2, 1)
        grads = nbcnn.conv2d_backward(dz, x, W, 2, 1)
        assert launched == [] and z.dtype == dtype and all(g.dtype == dtype for g in grads)
        with monkeypatch.context() as m:  # the same ops, every kernel through launch
            m.setattr(dispatch, "cpu_runners", lambda *kernels, **chosen: None)
            z_launched = nbcnn.conv2d(x, W, b, 2, 1)
            grads_launched = nbcnn.conv2d_backward(dz, x, W, 2, 1)
        assert launched == ["conv2d_forward", "conv2d_backward_input", "conv2d_backward_filter", "bias_backward"]
        np.testing.assert_array_equal(z, z_launched)
        for g, g_launched in zip(grads[:2], grads_launched[:2]):
            np.testing.assert_array_equal(g, g_launched)
        # db: summed by the float32 dW tiles as they read dz, in another order than the bias kernel
        np.testing.assert_allclose(grads[2], grads_launched[2], rtol=1e-5, atol=1e-5)
        x_strided = np.asfortranarray(x)  # not C-contiguous: converted first
        np.testing.assert_array_equal(nbcnn.conv2d(x_strided, W, b, 2, 1), z)
        np.testing.assert_allclose(nbcnn.conv2d(x, W.tolist(), b, 2, 1), z, rtol=1e-4, atol=1e-4)  # mixed dtypes
        with config.override(NBCNN_DEBUG="1"):  # printing each launch: launched
            launched.clear()
            nbcnn.conv2d(x, W, b, 2, 1)
            assert launched == ["conv2d_forward"]
    with nbcnn.use_backend("python"):  # another backend: launch, always
        launched.clear()
        nbcnn.conv2d(x[:1, :4, :4], W, b, 2, 1)
        assert launched == ["conv2d_forward"]


def test_checked_windows_are_remembered_but_bad_arguments_still_raise():
    from nbcnn import checks

    checks.window((1, 8, 8, 3), (3, 3), 1, 1, "conv2d")
    assert checks.window((1, 8, 8, 3), (3, 3), 1, 1, "conv2d") is checks.window((1, 8, 8, 3), (3, 3), 1, 1, "conv2d")
    with pytest.raises(TypeError, match="stride must be an int"):
        checks.window((1, 8, 8, 3), (3, 3), True, 1, "conv2d")  # True == 1, but not a stride
    with pytest.raises(ValueError, match="larger than the padded input"):
        checks.window((1, 2, 2, 3), (3, 3), 1, 0, "conv2d")
    with pytest.raises(ValueError, match="larger than the padded input"):  # raised again, not remembered
        checks.window((1, 2, 2, 3), (3, 3), 1, 0, "conv2d")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_plain_dense_inputs_run_the_cpu_kernel_without_launch(monkeypatch, dtype):
    """dense and dense_backward take the same direct cpu path as conv2d: nothing launched, the
    launch path's bits; a transposed (not C-contiguous) x is converted first."""
    from nbcnn import backend as dispatch

    rng = np.random.default_rng(5)
    x, W, b = (rng.standard_normal(s).astype(dtype) for s in ((9, 20), (20, 7), (7,)))
    dy = rng.standard_normal((9, 7)).astype(dtype)
    launched = []
    real_launch = dispatch.launch
    monkeypatch.setattr(dispatch, "launch", lambda kernel, *a, **k: (launched.append(kernel.name),
                                                                      real_launch(kernel, *a, **k))[1])
    with nbcnn.use_backend("cpu"):
        y, grads = nbcnn.dense(x, W, b), nbcnn.dense_backward(dy, x, W)
        assert launched == []
        with monkeypatch.context() as m:
            m.setattr(dispatch, "cpu_runners", lambda *kernels, **chosen: None)
            y_launched, grads_launched = nbcnn.dense(x, W, b), nbcnn.dense_backward(dy, x, W)
        assert len(launched) == 4
        for got, want in zip((y, *grads), (y_launched, *grads_launched)):
            assert got.dtype == dtype
            np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(nbcnn.dense(np.asfortranarray(x), W, b), y)  # converted first
