"""The command line: `nbcnn info`, `nbcnn edges`, `nbcnn step`, run through click's CliRunner."""

import linecache
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import cli
import nbcnn
from nbcnn import backend as dispatch
from nbcnn.edges import PANEL_GAP
from nbcnn.images import load_image, sample_image_path
from nbcnn.kernels import conv

REPO = Path(__file__).resolve().parents[1]
GAP = PANEL_GAP


def run(*args, input=None):
    return CliRunner().invoke(cli.main, list(args), input=input)


def assert_clean_error(result, *words):
    """A non-zero exit with a one-line message, not a Python traceback."""
    assert result.exit_code != 0, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    for word in words:
        assert word in result.output


# --------------------------------------------------------------------------- info


def test_info_lists_every_backend_and_the_auto_choice():
    result = run("info")
    assert result.exit_code == 0, result.output
    for name in ("python", "cpu", "cuda"):
        assert re.search(rf"^\s+{name}\s+(yes|no)\s+\S", result.output, re.M), result.output
    assert f"auto picks: {dispatch.auto_backend()}" in result.output
    assert "numba" in result.output and "numpy" in result.output


# --------------------------------------------------------------------------- edges


def test_edges_prints_the_lecture_example_and_writes_three_panels(tmp_path):
    out = tmp_path / "edges.png"
    result = run("edges", "--backend", "cpu", "--out", str(out))
    assert result.exit_code == 0, result.output

    # a 6x6 image, bright left half, and the vertical filter: a 4x4 output, middle columns 30
    assert len(re.findall(r"(?<![\d-])0\s+30\s+30\s+0\s*$", result.output, re.M)) == 4, result.output
    assert len(re.findall(r"(?<![\d-])1\s+0\s+-1(?!\d)", result.output)) == 3  # the vertical filter
    assert len(re.findall(r"-1\s+-1\s+-1(?!\d)", result.output)) == 1           # its transpose
    assert f"Wrote {out}" in result.output and "backend cpu" in result.output
    assert re.search(r"took [\d.]+ ms", result.output)

    # |vertical|, |horizontal| and the magnitude side by side, on the sudoku photo
    H, W, _ = load_image(sample_image_path(), grey=True).shape
    with Image.open(out) as im:
        assert im.size == (3 * W + 2 * GAP, H)
        picture = np.asarray(im.convert("L"), dtype=np.float64)
    vertical = picture[:, :W]
    horizontal = picture[:, W + GAP:2 * W + GAP]
    magnitude = picture[:, 2 * (W + GAP):]
    for panel in (vertical, horizontal, magnitude):
        assert panel.std() > 5
    assert magnitude.max() == 255  # normalised to the full range
    # the sudoku's grid lines: a few columns of the vertical panel far brighter than most
    assert np.sort(vertical.mean(axis=0))[-5:].mean() > 3 * np.median(vertical.mean(axis=0))
    assert np.sort(horizontal.mean(axis=1))[-5:].mean() > 3 * np.median(horizontal.mean(axis=1))


@pytest.mark.parametrize("backend_name", nbcnn.BACKENDS)
def test_edges_runs_on_every_backend(tmp_path, backend_name):
    out = tmp_path / "v.png"
    result = run("edges", "--backend", backend_name, "--direction", "vertical", "--width", "24",
                 "--filter", "lecture", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert f"on backend {backend_name}" in result.output
    assert "0 30 30  0" in result.output and "-1 -1 -1" not in result.output  # vertical example only
    with Image.open(out) as im:
        assert im.size[0] == 24  # one panel
    assert nbcnn.get_backend() == dispatch.auto_backend()  # --backend did not leak out


def test_edges_on_a_corrupt_image_is_a_clean_error(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not really a PNG")
    assert_clean_error(run("edges", "--image", str(bad), "--out", str(tmp_path / "e.png")), "broken.png")
    text = tmp_path / "notes.png"
    text.write_text("hello")
    assert_clean_error(run("edges", "--image", str(text), "--out", str(tmp_path / "e.png")), "notes.png")
    truncated = tmp_path / "half.png"
    truncated.write_bytes(sample_image_path().read_bytes()[:5000])
    assert_clean_error(run("edges", "--image", str(truncated), "--out", str(tmp_path / "e.png")), "half.png")
    assert not (tmp_path / "e.png").exists()


def test_edges_missing_files_are_clean_errors(tmp_path):
    assert_clean_error(run("edges", "--image", str(tmp_path / "nope.jpg")), "nope.jpg", "not found")
    assert_clean_error(run("edges", "--out", str(tmp_path / "no" / "dir" / "e.png")), "does not exist")


def test_edges_on_an_unavailable_backend_is_a_clean_error(monkeypatch):
    monkeypatch.setattr(dispatch, "_cuda_status", lambda: nbcnn.Availability(False, "no GPU in this test"))
    assert_clean_error(run("edges", "--backend", "cuda"), "cuda", "no GPU in this test")
    assert_clean_error(run("edges", "--backend", "gpu"), "gpu")


# --------------------------------------------------------------------------- step


def _breakpoint_line():
    filename, line = cli.first_body_line(conv.conv2d_forward_cell)
    return filename, line, linecache.getline(filename, line).strip()


def test_step_stops_in_the_conv_kernel():
    filename, line, source = _breakpoint_line()
    assert Path(filename).name == "conv.py" and source and not source.startswith(("def", '"""', "@"))

    result = run("step", input="c\nn\np z\nq\n")
    assert result.exit_code == 0, result.output
    assert f"conv.py({line})conv2d_forward_cell()" in result.output
    assert f"-> {source}" in result.output
    assert "ops.py" in result.output  # the first stop: the top of nbcnn.conv2d
    assert "Left the debugger" in result.output
    assert threading.gettrace() is None  # the debugger's hooks are gone


def test_step_continues_to_the_result():
    result = run("step", input="c\n" * 5)  # the first stop, then one stop per output number
    assert result.exit_code == 0, result.output
    assert result.output.count("conv2d_forward_cell()") == 4
    assert re.search(r"Done: z\[0, :, :, 0\] =\n\s+0 30\n\s+0 30", result.output), result.output


def test_step_refuses_compiled_backends():
    assert_clean_error(run("step", "--backend", "cpu"), "--backend python")


def test_step_cuda_stops_in_a_simulated_gpu_thread(tmp_path):
    """In the CUDA simulator every GPU thread is Python: pdb stops in the kernel's cell function."""
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", PYTHONPATH=str(REPO))
    env.pop("NBCNN_BACKEND", None)
    proc = subprocess.run([sys.executable, "-m", "cli", "step", "--backend", "cuda"],
                          input="c\nup\np t\nc\nup\np t\nq\n", capture_output=True, text=True,
                          cwd=REPO, env=env, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    _, line, _ = _breakpoint_line()
    assert proc.stdout.count(f"conv.py({line})conv2d_forward_cell()") == 2
    assert "forward()" in proc.stdout  # `up`: the @cuda.jit kernel's frame
    assert re.search(r"\(Pdb\) 0\n.*\(Pdb\) 1\n", proc.stdout, re.S), proc.stdout  # threads 0 then 1
    assert "Left the debugger" in proc.stdout
