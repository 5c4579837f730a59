"""One place for every switch (nbcnn/config.py), and NBCNN_DEBUG naming the route that ran."""

import ast
import os
import re
from pathlib import Path

import numpy as np
import pytest

import nbcnn
from nbcnn import backend, config
from nbcnn.kernels.fast import direct

ROOT = Path(__file__).resolve().parents[1]


def test_the_readme_table_lists_every_switch_and_no_other():
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("### Switches"):]
    listed = re.findall(r"^\| `(NBCNN_[A-Z0-9_]+)` \| (?:`([^`]*)`|\(unset\)) \|", table, flags=re.M)
    assert listed == [(s.name, s.default) for s in config.SWITCHES]


def _switch_names(tree):
    """Every string constant in the module that names an NBCNN_* variable."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and re.fullmatch(r"NBCNN_[A-Z0-9_]+", node.value):
            yield node.value


def _reads_environment_directly(tree):
    """``os.environ.get("NBCNN_X")``, ``os.getenv("NBCNN_X")`` or ``os.environ["NBCNN_X"]``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            name = ast.unparse(node.func)
            if name in ("os.environ.get", "os.getenv", "environ.get") and str(node.args[0].value).startswith("NBCNN_"):
                yield node.args[0].value
        if isinstance(node, ast.Subscript) and ast.unparse(node.value) in ("os.environ", "environ"):
            key = node.slice
            if isinstance(key, ast.Constant) and str(key.value).startswith("NBCNN_"):
                yield key.value


def test_only_config_reads_the_switches():
    """Switches read ad hoc in many modules drift apart: only config.py reads them. Other
    modules may name one (the benchmark sets them for its child processes), but only the
    switches config.py defines."""
    known = {s.name for s in config.SWITCHES}
    offenders = {}
    for path in [*(ROOT / "nbcnn").rglob("*.py"), ROOT / "cli.py"]:
        if path.name == "config.py":
            continue
        tree = ast.parse(path.read_text())
        bad = (set(_switch_names(tree)) - known) | set(_reads_environment_directly(tree))
        if bad:
            offenders[str(path.relative_to(ROOT))] = sorted(bad)
    assert not offenders, f"NBCNN_* variables read outside nbcnn/config.py, or unknown to it: {offenders}"


def test_override_sets_then_restores(monkeypatch):
    monkeypatch.delenv("NBCNN_FAST", raising=False)
    monkeypatch.setenv("NBCNN_DIRECT", "1")
    with config.override(NBCNN_FAST="0", NBCNN_DIRECT=None):
        assert not config.fast_kernels_enabled()
        assert "NBCNN_DIRECT" not in os.environ and config.direct_enabled()  # unset: the default
    assert "NBCNN_FAST" not in os.environ and os.environ["NBCNN_DIRECT"] == "1"
    with pytest.raises(ValueError, match="NBCNN_FASTT"):
        with config.override(NBCNN_FASTT="0"):
            pass


def test_an_empty_variable_means_the_default(monkeypatch):
    monkeypatch.setenv("NBCNN_BACKEND", "")
    monkeypatch.setenv("NBCNN_DEBUG", "yes")
    assert config.backend_name() == "auto"
    assert config.debug_level() == 1  # not a number, but the user asked for output


def _launch_lines(capfd, fn):
    fn()
    return [line for line in capfd.readouterr().err.splitlines() if line.startswith("[nbcnn]")]


@pytest.mark.parametrize("fast, dtype, expected", [
    ("1", np.float32, direct.tile_name(16)),  # "direct 4x16 tile" on AVX2, "direct 8x16 tile" on AVX-512
    ("1", np.float64, "im2col+BLAS"),
    ("0", np.float32, "readable loop"),
])
def test_debug_names_the_route_that_ran(monkeypatch, capfd, fast, dtype, expected):
    monkeypatch.setenv("NBCNN_DEBUG", "1")
    monkeypatch.setenv("NBCNN_FAST", fast)
    x = np.ones((1, 6, 6, 3), dtype)
    W = np.ones((3, 3, 3, 16), dtype)
    with nbcnn.use_backend("cpu"):
        lines = _launch_lines(capfd, lambda: nbcnn.conv2d(x, W, np.zeros(16, dtype)))
    assert len(lines) == 1 and "conv2d_forward" in lines[0] and expected in lines[0], lines


def test_a_padded_float32_layer_keeps_the_register_tiles_in_backward(monkeypatch, capfd):
    """A routing guard: a padded 5x5 layer's dX and dW belong on the register tiles (a wrong
    shape in a routing condition once sent this dW to im2col + BLAS, 3x slower, same numbers)."""
    monkeypatch.setenv("NBCNN_DEBUG", "1")
    x = np.ones((2, 8, 8, 24), np.float32)
    W = np.ones((5, 5, 24, 32), np.float32)
    with nbcnn.use_backend("cpu"):
        lines = _launch_lines(capfd, lambda: nbcnn.conv2d_backward(np.ones((2, 8, 8, 32), np.float32), x, W, pad=2))
    routes = {line.split()[2]: line for line in lines}
    assert "flipped direct" in routes["conv2d_backward_input"], lines
    # AVX-512: the tile of taps (8 channels x 48 taps); AVX2: the direct "dW 6x16 tile"
    from nbcnn.checks import Window
    from nbcnn.kernels.fast import filter_grad_taps
    taps = filter_grad_taps.takes(x, np.ones((2, 8, 8, 32), np.float32), Window(5, 5, 1, 1, 2, 2))
    want = filter_grad_taps.tile_name(5 * 24) if taps else direct.filter_grad_tile_name(32)
    assert want in routes["conv2d_backward_filter"], lines


def test_debug_names_winograd_and_the_python_loop(monkeypatch, capfd):
    monkeypatch.setenv("NBCNN_DEBUG", "1")
    x = np.ones((1, 8, 8, 32), np.float32)
    W = np.ones((3, 3, 32, 32), np.float32)
    with nbcnn.use_backend("cpu"):
        assert "winograd" in _launch_lines(capfd, lambda: nbcnn.conv2d(x, W, np.zeros(32, np.float32)))[0]
    with nbcnn.use_backend("python"):
        assert "readable loop" in _launch_lines(capfd, lambda: nbcnn.relu(np.ones(3, np.float32)))[0]


def test_register_fast_is_what_the_cpu_backend_runs(monkeypatch):
    calls = []

    def source(x, out):
        for i in range(out.size):
            out[i] = x[i] + 1

    def fast(x, out):
        calls.append("fast")
        out[:] = x + 1

    kernel = backend.Kernel("plus_one", source, cuda=lambda: None)
    assert kernel.cpu is kernel.naive_cpu  # nothing registered: the compiled loop nest
    kernel.register_fast(cpu=fast)
    x, out = np.arange(3.0), np.zeros(3)
    backend.launch(kernel, x, out, backend="cpu")
    assert calls == ["fast"] and out.tolist() == [1.0, 2.0, 3.0]
    monkeypatch.setenv("NBCNN_FAST", "0")
    assert kernel.cpu is kernel.naive_cpu


def test_cuda_kernels_binds_numba_cuda_as_the_module_global():
    """The simulator finds `cuda` in a kernel's globals: the factory must see the module global."""
    namespace = {"cuda": None}
    exec("def build(tag):\n    return (cuda, tag)\n", namespace)
    built = backend.cuda_kernels(namespace["build"])
    from numba import cuda

    assert built("a") == (cuda, "a") and namespace["cuda"] is cuda
    assert built("a") is built("a")  # built once per argument


def test_switch_reads_follow_os_environ(monkeypatch):
    """config reads POSIX switches from os.environ's own dict (one lookup): every way of setting
    or unsetting one through os.environ is seen at the next read."""
    monkeypatch.setenv("NBCNN_FAST", "0")
    assert config.get("NBCNN_FAST") == "0" and not config.fast_kernels_enabled()
    os.environ["NBCNN_FAST"] = "1"
    assert config.fast_kernels_enabled()
    monkeypatch.setenv("NBCNN_CACHE", "/tmp/caf\u00e9")  # not ASCII: decoded as os.environ does
    assert config.get("NBCNN_CACHE") == os.environ["NBCNN_CACHE"] == "/tmp/caf\u00e9"
    monkeypatch.delenv("NBCNN_FAST")
    assert config.get("NBCNN_FAST") == "1"
    with config.override(NBCNN_DIRECT="0"):
        assert not config.direct_enabled()
    assert config.direct_enabled()
