"""The ``nbcnn`` command line.

    nbcnn info                     which backends work here, and which one "auto" picks
    nbcnn edges [--backend cpu]    the lecture's vertical-edge example, then edges of a photo
    nbcnn step                     step through the convolution kernel in pdb

Every command runs the library's own functions (``nbcnn.conv2d`` and friends) on the
backend you choose with ``--backend`` (or $NBCNN_BACKEND); nothing here has its own maths.
"""

from __future__ import annotations

import ast
import bdb
import contextlib
import importlib.metadata
import inspect
import os
import pdb
import platform
import sys
import textwrap
import threading
import time
from pathlib import Path

import click
import numpy as np

import nbcnn
from nbcnn import backend as _dispatch
from nbcnn.images import load_image, sample_image_path, save_image
from nbcnn.kernels import conv as _conv

BACKEND_NAMES = ("auto", *nbcnn.BACKENDS)


def _backend_option(help_text: str = "Backend to run on (default: $NBCNN_BACKEND, else auto)."):
    return click.option("--backend", "backend_name", type=click.Choice(BACKEND_NAMES, case_sensitive=False),
                        default=None, help=help_text)


@contextlib.contextmanager
def _backend(name: str | None):
    """``nbcnn.use_backend(name)`` (or the current backend if None); a backend that cannot run
    here becomes a one-line click error that says why, not a traceback."""
    with contextlib.ExitStack() as stack:
        try:
            used = stack.enter_context(nbcnn.use_backend(name)) if name else nbcnn.get_backend()
        except (nbcnn.BackendError, ValueError, TypeError) as exc:
            raise click.ClickException(str(exc)) from None
        yield used


def _in_simulator(backend_name: str) -> bool:
    return backend_name == "cuda" and _dispatch.cuda_simulator_enabled()


@click.group(name="nbcnn", context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(nbcnn.__version__, prog_name="nbcnn")
def main():
    """nbcnn: convolutional neural networks from scratch, in readable Python compiled by Numba.

    Choose where kernels run with --backend (python, cpu, cuda or auto) on a command, or with
    the environment variable NBCNN_BACKEND. Set NBCNN_DEBUG=1 to print every kernel launch.
    """


# --------------------------------------------------------------------------- info


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


@main.command()
def info():
    """Show which backends work on this machine (and why not), which one "auto" picks,
    and the versions of Python, numpy, Numba and numba-cuda."""
    click.echo(f"nbcnn {nbcnn.__version__}")
    click.echo(f"  python      {platform.python_version()}")
    for dist in ("numpy", "numba", "numba-cuda", "pillow"):
        click.echo(f"  {dist:11s} {_version(dist)}")
    click.echo("")
    click.echo("backends:")
    for name, status in nbcnn.available_backends().items():
        click.echo(f"  {name:7s} {'yes' if status.ok else 'no ':3s}  {status.reason}")
    click.echo("")
    click.echo(f"auto picks: {_dispatch.auto_backend()}  (cuda on a real GPU, else cpu)")
    env = _dispatch.ENV_VAR
    try:
        current = nbcnn.get_backend()
    except (nbcnn.BackendError, ValueError) as exc:
        current = f"none: {exc}"
    source = f"from ${env}={os.environ[env]!r}" if os.environ.get(env) else f"${env} is not set"
    click.echo(f"in use now: {current}  ({source})")


# --------------------------------------------------------------------------- edges

# The lecture's vertical-edge filter and two smoother variants; the horizontal one is the transpose.
EDGE_FILTERS = {
    "lecture": np.array([[1, 0, -1], [1, 0, -1], [1, 0, -1]], dtype=np.float32),
    "sobel": np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], dtype=np.float32),
    "scharr": np.array([[3, 0, -3], [10, 0, -10], [3, 0, -3]], dtype=np.float32),
}
PANEL_GAP = 4  # grey pixels between the panels of the output image


def _grid_lines(a: np.ndarray) -> list[str]:
    ints = np.rint(a).astype(int)
    width = max(len(str(v)) for v in ints.flat)
    return [" ".join(f"{v:>{width}d}" for v in row) for row in ints]


def _show_equation(x: np.ndarray, f: np.ndarray, z: np.ndarray) -> None:
    """Print ``image * filter = output`` as integer grids side by side."""
    blocks = [(f"image {x.shape[0]}x{x.shape[1]}", _grid_lines(x)),
              (f"filter {f.shape[0]}x{f.shape[1]}", _grid_lines(f)),
              (f"output {z.shape[0]}x{z.shape[1]}", _grid_lines(z))]
    height = max(len(lines) for _, lines in blocks)
    columns = []
    for title, lines in blocks:
        width = max(len(title), *(len(s) for s in lines))
        top = (height - len(lines)) // 2
        rows = [""] * top + lines + [""] * (height - top - len(lines))
        columns.append([title.ljust(width)] + [r.ljust(width) for r in rows])
    middle = 1 + (height - 1) // 2
    for r in range(height + 1):
        ops = ("*", "=") if r == middle else (" ", " ")
        click.echo("  " + f"  {columns[0][r]}  {ops[0]}  {columns[1][r]}  {ops[1]}  {columns[2][r]}".rstrip())
    click.echo("")


def _lecture_example(direction: str) -> None:
    """The 6x6 example of the lecture, run through nbcnn.conv2d on the current backend."""
    vertical = EDGE_FILTERS["lecture"]
    b = np.zeros(1, dtype=np.float32)
    if direction in ("vertical", "both"):
        x = np.zeros((6, 6), dtype=np.float32)
        x[:, :3] = 10  # bright left half, dark right half: one vertical edge in the middle
        z = nbcnn.conv2d(x[None, :, :, None], vertical[:, :, None, None], b, pad="valid")
        click.echo("Vertical edge detection, the lecture's example: nbcnn.conv2d(x, W, b=0, pad='valid'),")
        click.echo("x of shape (1, 6, 6, 1), W of shape (3, 3, 1, 1); output size (6 - 3) // 1 + 1 = 4.")
        _show_equation(x, vertical, z[0, :, :, 0])
        click.echo("The bright band of 30s in the middle is the edge (wide, because the image is tiny).")
        click.echo("Dark on the left and bright on the right would give -30: the sign tells the direction.")
        click.echo("")
    if direction in ("horizontal", "both"):
        horizontal = vertical.T.copy()
        x = np.zeros((6, 6), dtype=np.float32)
        x[:3, :] = 10  # bright top half: one horizontal edge
        z = nbcnn.conv2d(x[None, :, :, None], horizontal[:, :, None, None], b, pad="valid")
        click.echo("Horizontal edge detection: the same filter turned by 90 degrees (W transposed),")
        click.echo("on an image bright at the top and dark at the bottom.")
        _show_equation(x, horizontal, z[0, :, :, 0])


def _timed_conv(x, W, b, backend_name: str):
    """Run ``nbcnn.conv2d(x, W, b, pad="same")``; return z and a sentence on how long it took."""
    start = time.perf_counter()
    z = nbcnn.conv2d(x, W, b, pad="same")
    ms = (time.perf_counter() - start) * 1e3
    if backend_name == "python":
        note = "plain Python loops"
    elif _in_simulator(backend_name):
        note = "the CUDA simulator runs every GPU thread as Python"
    else:
        note = "compiled; Numba compiled the kernel, or loaded it from its cache, for the 6x6 example"
        if backend_name == "cuda":
            note += "; includes copying to and from the GPU"
    return z, f"{ms:.1f} ms ({note})"


@main.command()
@_backend_option()
@click.option("--image", "image_path", type=click.Path(dir_okay=True, path_type=Path), default=None,
              help="Image to run the filters over (default: the sudoku photo shipped in nbcnn/data).")
@click.option("--out", "out_path", type=click.Path(path_type=Path), default=Path("edges.png"),
              show_default=True, help="Where to write the PNG of the filtered image.")
@click.option("--direction", type=click.Choice(["vertical", "horizontal", "both"]), default="both",
              show_default=True, help="Which edges to detect (both: also their magnitude).")
@click.option("--filter", "filter_name", type=click.Choice(sorted(EDGE_FILTERS)), default="sobel",
              show_default=True, help="The 3x3 filter for the image (the 6x6 example always uses 'lecture').")
@click.option("--width", type=click.IntRange(min=3), default=None,
              help="Resize the image to this width first (default: full size; 64 px in the CUDA "
                   "simulator, which runs every GPU thread as Python and is slow).")
def edges(backend_name, image_path, out_path, direction, filter_name, width):
    """Edge detection with convolution, as in the lecture.

    First the lecture's example: a 6x6 image, bright on the left and dark on the right,
    convolved with the 3x3 vertical-edge filter [[1, 0, -1]] * 3 gives a 4x4 output whose two
    middle columns are 30: the edge. Its transpose finds horizontal edges.

    Then both filters run over a real image in one nbcnn.conv2d call (two output channels,
    pad "same"), and a PNG shows |vertical|, |horizontal| and the magnitude
    sqrt(vertical^2 + horizontal^2) side by side, on one common brightness scale.
    """
    with _backend(backend_name) as used:
        # check the files before computing anything
        if not out_path.parent.is_dir():
            raise click.ClickException(f"cannot write {out_path}: folder {out_path.parent} does not exist")
        path = image_path or sample_image_path()
        shrink = width is None and _in_simulator(used)
        try:
            img = load_image(path, grey=True, width=64 if shrink else width)
        except (ValueError, FileNotFoundError) as exc:
            raise click.ClickException(str(exc)) from None

        _lecture_example(direction)

        if shrink:
            click.echo("(The CUDA simulator runs every GPU thread as Python: the image was shrunk to "
                       "64 px wide; pass --width to choose.)")

        vertical = EDGE_FILTERS[filter_name]
        filters = {"vertical": [vertical], "horizontal": [vertical.T], "both": [vertical, vertical.T]}[direction]
        W = np.stack(filters, axis=-1)[:, :, None, :].astype(np.float32)  # (3, 3, 1, C_out)
        b = np.zeros(W.shape[3], dtype=np.float32)
        x = img[None]  # (1, H, W, 1)
        click.echo(f"Filtering {path} with the {filter_name} filter on backend {used}:")
        z, timing = _timed_conv(x, W, b, used)
        click.echo(f"  nbcnn.conv2d: x {x.shape} * W {W.shape} -> z {z.shape}, pad 'same'")
        click.echo(f"  took {timing}")

        responses = np.abs(z[0])  # (H, W, C_out)
        panels = [responses[:, :, c] for c in range(responses.shape[2])]
        names = {"vertical": ["|vertical|"], "horizontal": ["|horizontal|"],
                 "both": ["|vertical|", "|horizontal|", "magnitude"]}[direction]
        if direction == "both":
            panels.append(np.sqrt(panels[0] ** 2 + panels[1] ** 2))
        scale = max(float(p.max()) for p in panels) or 1.0  # all black if the image is flat
        gap = np.full((img.shape[0], PANEL_GAP), 0.5, dtype=np.float32)
        row = [panels[0] / scale]
        for p in panels[1:]:
            row += [gap, p / scale]
        picture = np.concatenate(row, axis=1)
        try:
            save_image(out_path, picture)
        except (OSError, ValueError) as exc:
            raise click.ClickException(str(exc)) from None
        shown = names[0] if len(names) == 1 else f"{', '.join(names)} side by side"
        click.echo(f"Wrote {out_path} ({picture.shape[1]} x {picture.shape[0]} px): "
                   f"{shown}, normalised to 0..255.")


# --------------------------------------------------------------------------- step


def first_body_line(func) -> tuple[str, int]:
    """(file, line) of the first statement in ``func``'s body, after its docstring."""
    lines, start = inspect.getsourcelines(func)
    node = ast.parse(textwrap.dedent("".join(lines))).body[0]
    body = node.body
    if (len(body) > 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)):
        body = body[1:]
    return inspect.getsourcefile(func), start + body[0].lineno - 1


class _ThreadSafePdb(pdb.Pdb):
    """pdb that may also be entered from the threads the CUDA simulator starts: one thread at
    a time talks to you, and after ``q`` no other thread stops."""

    _talking = threading.RLock()

    def __init__(self):
        # Talk over this command's own streams, even where a test runner swaps sys.stdin/stdout
        # (click's CliRunner points a default pdb at the real terminal).
        super().__init__(stdin=sys.stdin, stdout=sys.stdout)
        self.use_rawinput = True  # pdb turns this off for explicit streams; keep line editing

    def interaction(self, frame, tb):
        with self._talking:
            if self.quitting:
                return
            super().interaction(frame, tb)


STEP_INTRO = """\
Stepping through the convolution kernel in pdb (backend: {backend}).

nbcnn.conv2d(x, W, b) runs on a 1x4x4x1 image (bright left, dark right) and the lecture's
3x3 vertical-edge filter: (4 - 3) // 1 + 1 = 2, so 2x2 = 4 output numbers. Each one is
computed by conv2d_forward_cell, where a breakpoint is set:
    {where}
{extra}
pdb stops first at the top of nbcnn.conv2d (validate the inputs, then dispatch). Then type:
  c                  continue to the breakpoint in conv2d_forward_cell (again: the next output)
  n                  run the next line of the kernel (s steps into a call)
  p z                the running sum: bias + the products so far (n once first: pdb stops
                     before the line that creates z)
  p h_in, w_in       where the filter's current row/column sits on the input
  p n, h_out, w_out, k    which output number this call computes
  ll                 list the whole function, with an arrow at the current line
  bt                 the call stack, from the command down to the kernel
  q                  quit
"""

SIM_NOTE = """
In the CUDA simulator each GPU thread is a Python thread running the @cuda.jit kernel;
to follow them one by one, this launch puts one thread in each block. At the breakpoint,
`up` moves to the kernel `forward` and `p t` shows this thread's global index, cuda.grid(1).
"""


@main.command()
@click.option("--backend", "backend_name", type=click.Choice(nbcnn.BACKENDS, case_sensitive=False),
              default="python", show_default=True,
              help="python, or cuda when the CUDA simulator is active (cpu and a real GPU run "
                   "compiled code that pdb cannot enter).")
def step(backend_name):
    """Step through the convolution kernel in pdb, the Python debugger.

    Runs a tiny nbcnn.conv2d (a 1x4x4x1 image, one 3x3 filter) under pdb with a breakpoint
    on the first line of conv2d_forward_cell in nbcnn/kernels/conv.py: the function that
    computes one output number. Type c to reach it, n to run a line, p z to print the
    running sum, bt for the call stack, q to quit.

    \b
    Stepping a @cuda.jit kernel: Numba's CUDA simulator runs every GPU thread as Python,
    so pdb works inside kernels. Start Python with the simulator on:
        NUMBA_ENABLE_CUDASIM=1 nbcnn step --backend cuda
    stops in conv2d_forward_cell inside a simulated GPU thread. In your own kernels, with
    NUMBA_ENABLE_CUDASIM=1 set before Python starts, put a breakpoint in the kernel body,
        if cuda.grid(1) == 0:
            breakpoint()
    (the condition keeps the other threads, which run at the same time, out of pdb).
    On a real GPU the kernel is machine code: use the simulator to step it.
    """
    name = backend_name.lower()
    if name == "cpu":
        raise click.ClickException(
            "the cpu backend runs the kernel as compiled machine code: pdb cannot stop inside it. "
            "Use --backend python: the same loop source, run as Python.")
    if name == "cuda" and not _dispatch.cuda_simulator_enabled():
        raise click.ClickException(
            "pdb can step a @cuda.jit kernel only in Numba's CUDA simulator, which must be switched "
            "on before Python starts: NUMBA_ENABLE_CUDASIM=1 nbcnn step --backend cuda")

    x = np.zeros((1, 4, 4, 1), dtype=np.float32)
    x[:, :, :3, :] = 10
    W = EDGE_FILTERS["lecture"][:, :, None, None].copy()
    b = np.zeros(1, dtype=np.float32)
    filename, line = first_body_line(_conv.conv2d_forward_cell)

    with _backend(name) as used:
        click.echo(STEP_INTRO.format(backend=used, where=f"{filename}:{line}",
                                     extra=SIM_NOTE if used == "cuda" else ""))
        click.echo("x[0, :, :, 0] =")
        click.echo("\n".join("  " + s for s in _grid_lines(x[0, :, :, 0])))
        click.echo("W[:, :, 0, 0] =")
        click.echo("\n".join("  " + s for s in _grid_lines(W[:, :, 0, 0])))
        click.echo("")

        debugger = _ThreadSafePdb()
        error = debugger.set_break(filename, line)
        if error:  # pragma: no cover - the line comes from the function's own source
            raise click.ClickException(f"cannot set a breakpoint at {filename}:{line}: {error}")
        saved_threads_per_block = _dispatch.THREADS_PER_BLOCK
        saved_fast = os.environ.get("NBCNN_FAST")
        try:
            if used == "cuda":
                os.environ["NBCNN_FAST"] = "0"  # the readable kernel, which calls conv2d_forward_cell
                _dispatch.THREADS_PER_BLOCK = 1  # simulated GPU threads then run one after another
                threading.settrace(debugger.trace_dispatch)  # follow the simulator's threads
            z = debugger.runcall(nbcnn.conv2d, x, W, b)  # returns None after q
        except bdb.BdbQuit:  # runcall catches it, but let a quit from another thread end quietly too
            z = None
        finally:
            threading.settrace(None)
            _dispatch.THREADS_PER_BLOCK = saved_threads_per_block
            if saved_fast is None:
                os.environ.pop("NBCNN_FAST", None)
            else:
                os.environ["NBCNN_FAST"] = saved_fast
            debugger.clear_all_breaks()
    if z is None:
        click.echo("Left the debugger.")
        return
    click.echo("Done: z[0, :, :, 0] =")
    click.echo("\n".join("  " + s for s in _grid_lines(z[0, :, :, 0])))


# --------------------------------------------------------------------------- bench


@main.command()
@click.option("--backend", "backend_name", type=click.Choice(nbcnn.BACKENDS, case_sensitive=False), default="cpu",
              show_default=True, help="Backend whose kernels are timed.")
@click.option("--shapes", default=None, help="Comma-separated shape names (default: the whole suite).")
@click.option("--ops", default=None, help="Comma-separated ops: conv_fwd, conv_bwd, maxpool_fwd, maxpool_bwd, "
              "avgpool_fwd, avgpool_bwd, dense (default: all).")
@click.option("--repeat", type=click.IntRange(min=1), default=5, show_default=True, help="Timed runs after a warm-up.")
@click.option("--tiny", is_flag=True, help="Tiny shapes (seconds on the python backend and in the CUDA simulator).")
@click.option("--ladder", is_flag=True, help="The optimisation ladder of one conv shape (see --shape).")
@click.option("--shape", "ladder_shape", default="vgg_b3", show_default=True, help="The conv shape of --ladder.")
@click.option("--peers/--no-peers", default=True, show_default=True, help="Also time numpy im2col+BLAS and torch.")
@click.option("--compile-time/--no-compile-time", default=True, show_default=True,
              help="Also measure JIT compile time (cold and warm cache, in fresh processes).")
@click.option("--rounds", type=click.IntRange(min=1), default=1, show_default=True,
              help="Run nbcnn and the peers in turn this many times, keeping each one's fastest run "
                   "(a shared machine's slow spells then rarely hit one side only).")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option("--models", is_flag=True, help="Whole models instead: LeNet-5 training images/s and VGG-16 "
                                             "forward at 224x224, against the same networks in PyTorch.")
def bench(backend_name, shapes, ops, repeat, tiny, ladder, ladder_shape, peers, compile_time, rounds, as_json,
          models):
    """Time the kernels (GFLOP/s, GB/s) next to numpy and PyTorch, each in its own process.

    Shapes: seed39 lenet_c2 resnet_s2 vgg_b3 stem_s2 incep5x5 incep1x1 (conv),
    pool32x16 pool112x64 (pooling), fc4096 lenet_fc (dense); with --tiny: tiny tinypool tinyfc.
    """
    import json

    from nbcnn import benchmark

    backend_name = backend_name.lower()
    with _backend(backend_name):  # a backend that cannot run here: a clear error, before any timing
        pass
    if backend_name == "cuda" and _in_simulator(backend_name) and not tiny:
        raise click.ClickException("the CUDA simulator runs a few thousand threads a second: use --tiny")
    try:
        if models:
            from nbcnn import benchmark_models

            result = benchmark_models.run(repeat=repeat, vgg=not tiny, backend=backend_name, peers=peers,
                                          steps=2 if tiny else 20, batch=8 if tiny else 64)
            click.echo(json.dumps(result, indent=1) if as_json else benchmark_models.format_result(result))
            return
        if ladder:
            if backend_name != "cpu":
                raise click.ClickException("--ladder times the cpu kernels; leave out --backend or use cpu")
            result = benchmark.run_ladder(ladder_shape, repeat, peers)
            click.echo(json.dumps(result, indent=1) if as_json else benchmark.format_ladder(result))
            return
        names = [n.strip() for n in shapes.split(",") if n.strip()] if shapes else None
        op_list = tuple(o.strip() for o in ops.split(",")) if ops else benchmark.ALL_OPS
        bad = [o for o in op_list if o not in benchmark.ALL_OPS]
        if bad:
            raise click.ClickException(f"unknown op(s) {bad}; choose from {', '.join(benchmark.ALL_OPS)}")
        if backend_name == "python" and not tiny and not names:
            tiny = True
            click.echo("note: the python backend runs the readable loops as Python: using the --tiny shapes", err=True)
        result = benchmark.run_suite(backend_name, names, repeat, tiny, op_list, peers, compile_time, rounds)
    except (ValueError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(result, indent=1) if as_json else benchmark.format_table(result))


@main.command()
@_backend_option()
@click.option("--dataset", type=click.Choice(["digits", "fashion-mnist", "mnist"]), default="digits", show_default=True,
              help="digits: OpenCV's 5,000 handwritten digits (shipped); fashion-mnist: Debian's "
                   "dataset-fashion-mnist (or --data DIR); mnist: the IDX files in --data DIR.")
@click.option("--data", "data_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder with the four IDX files (train/t10k images and labels).")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Default: 10 (digits), 8 (others).")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--lr", "learning_rate", type=click.FloatRange(min=0, min_open=True), default=2e-3, show_default=True,
              help="Adam's learning rate (cosine-decayed over the run).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Train on the first N examples only.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
              show_default=True, help="Folder for the learning-curve PNG (and --save).")
@click.option("--save", "save_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Save the trained model (weights + optimiser state) to this checkpoint file.")
@click.option("--experiment", type=click.Choice(["lenet", "depth"]), default="lenet", show_default=True,
              help="lenet: train LeNet-5; depth: plain vs residual nets of growing depth (the ResNet lesson).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train(backend_name, dataset, data_dir, epochs, batch_size, learning_rate, limit, out_dir, save_path, experiment,
          seed, quiet):
    """Train LeNet-5 on real handwritten digits (or Fashion-MNIST) and report test accuracy,
    the confusion matrix and a learning-curve PNG."""
    from nbcnn import experiments

    with _backend(backend_name) as used:
        try:
            if experiment == "depth":
                curves, path = experiments.depth_experiment(epochs=epochs or 4, out_dir=str(out_dir), seed=seed,
                                                            verbose=not quiet)
                click.echo(f"backend: {used}")
                for name, errors in curves.items():
                    click.echo(f"{name:>22}: training error " + " ".join(f"{e:.3f}" for e in errors))
                click.echo(f"wrote {path}")
                return
            result = experiments.train_lenet(dataset, epochs=epochs or (10 if dataset == "digits" else 8),
                                             batch_size=batch_size, learning_rate=learning_rate, data_dir=data_dir,
                                             out_dir=str(out_dir), seed=seed, limit=limit, verbose=not quiet,
                                             save_path=save_path)
        except (FileNotFoundError, ValueError) as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"backend: {used}   {result['seconds']:.1f} s, {result['images_per_second']:.0f} images/s")
    click.echo(f"test accuracy: {result['test_accuracy']:.2%}")
    click.echo(experiments.format_confusion(result["confusion"], result["class_names"]))
    click.echo(f"learning curve: {result['curve']}")
    if save_path:
        click.echo(f"saved model: {save_path}")


if __name__ == "__main__":
    main()
