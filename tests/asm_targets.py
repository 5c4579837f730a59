"""Assembly of the fast kernels for a chosen x86 CPU (whatever the host is), and a reader
that finds the register tile's loops in it and any vector spills there.

Why a child process: Numba compiles for the CPU named by ``NUMBA_CPU_NAME`` /
``NUMBA_CPU_FEATURES``, read once when numba is imported. So each target gets one
``python asm_targets.py`` child with those set (features ``""``: the named CPU's own
feature set; left unset, Numba would add the *host's* features, and an "AVX2" target
compiled on an AVX-512 host would use AVX-512) and its own empty ``NUMBA_CACHE_DIR``
(cached code for another CPU is never loaded, and cached code cannot be inspected). The
child only compiles, never runs, what it compiles: AVX-512 code would not run on an AVX2
host. It writes ``{name: assembly}`` as JSON; the first ``assembly(target, name)`` compiles
for every target (all children at once), once per test session, and keeps the result.

What counts as a spill: a vector register written to, or read back from, the stack (an
address based on %rsp, or on %rbp when the function uses %rbp as its frame pointer) inside
the loops that hold the tile's FMAs. Other memory operands are fine: an FMA may read the
input or the weights directly, e.g. AVX-512's embedded broadcast
``vfmadd231ps (%r11,%r12){1to8}, %ymm8, %ymm7`` is the ``vbroadcastss`` of AVX2 folded into
the FMA, not a sum coming back from memory.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from functools import lru_cache

TARGETS = {
    # Zen 3, where the kernels were written and tuned: AVX2 + FMA, 16 ymm registers
    "avx2": "znver3",
    # Sapphire Rapids: AVX-512 (VL), 32 vector registers, FMAs with embedded broadcasts
    "avx512": "sapphirerapids",
}
"""The instruction sets the asm checks run for: name -> LLVM CPU name (``NUMBA_CPU_NAME``)."""

VECTOR_REGISTERS = {"avx2": 16, "avx512": 32}

PROBE_SUMS = (20, 40)
"""Sums of the spill probes (see ``_probe_source``): 20 sums need more than AVX2's 16
vector registers but fit AVX-512's 32; 40 fit neither."""

# ---------------------------------------------------------------- the child (compiles)

def _kernel_signatures():
    """The register-tiled kernels of nbcnn.kernels.fast.direct, with the argument types the
    conv layers call them with (flat float32 arrays, tuples of Python ints). Types only:
    nothing is run."""
    from numba import types

    flat = types.Array(types.float32, 1, "C")
    shape4, geometry = types.UniTuple(types.int64, 4), types.UniTuple(types.int64, 7)
    tiles = (flat, shape4, flat, geometry, flat, flat, types.boolean)  # ..., out, relu
    # filter_grad_tiles(xf, x_shape, dzf, geometry, row_range, chunk_rows, parts, workers, tap_slots,
    # vector_slots, lane_slots, bias_parts):
    # the tile shape (taps, vectors) is given as two tuples of those lengths
    from nbcnn.kernels.fast import direct
    dw = (flat, shape4, flat, geometry, types.UniTuple(types.int64, 2), types.int64, flat, types.int64)

    def shape(*counts):  # (taps, vectors, lanes) as tuples of those lengths, then bias_parts
        return tuple(types.UniTuple(types.int64, n) for n in counts) + (flat,)

    from nbcnn.kernels.fast import dot
    from nbcnn.kernels.fast.simd import LANES
    # conv_tiles_dot(..., pixel_slots, out_slots): 3 outputs (an RGB layer's dX)
    dot_tile = tiles + (types.UniTuple(types.int64, dot.pixels_per_tile(3)), types.UniTuple(types.int64, 3))
    # filter_grad_tap_tiles(xf, x_shape, dzf, geometry, chunk_rows, parts, workers, k_slots, vector_slots,
    # bias_parts)
    from nbcnn.kernels.fast import filter_grad_taps as taps
    taps_tile = (flat, shape4, flat, geometry, types.int64, flat, types.int64,
                 types.UniTuple(types.int64, taps.K_BROADCASTS), types.UniTuple(types.int64, taps.TAP_VECTORS), flat)
    # conv_tiles_narrow(..., lane_slots): the vector width as a tuple of that length
    return {"conv_tiles": tiles + (types.Array(types.float32, 2, "C"),), "conv_tiles_dot": dot_tile, "filter_grad_tap_tiles": taps_tile,
            "conv_tiles_narrow": tiles + (types.UniTuple(types.int64, LANES),),
            "conv_tiles_narrow8": tiles + (types.UniTuple(types.int64, 8),),
            "filter_grad_tiles": dw + shape(*direct.filter_grad_shape(1 << 20)),
            "filter_grad_tiles_mid": dw + shape(*direct.filter_grad_shape(direct.CHANNELS)),
            "filter_grad_tiles_narrow": dw + shape(*direct.filter_grad_shape(LANES)),
            "filter_grad_tiles_narrow8": dw + shape(*direct.filter_grad_shape(1))}


def _sums(shape):
    """The vector sums of a dW tile shape (taps, vectors, lanes)."""
    return shape[0] * shape[1]


def _probe_source(sums):
    """A loop of ``sums`` 8-lane sums, each ``+= x[..] * w`` per step, like the narrow tile:
    needs ``sums`` vector registers for the sums, and one or two more."""
    lines = [f"def probe_{sums}(x, w, steps, out):"]
    lines += [f"    a{p} = load8(out, {8 * p})" for p in range(sums)]
    lines += ["    for i in range(steps):", "        wv = load8(w, 8 * i)"]
    lines += [f"        a{p} = fma8(splat_at8(x, {sums} * i + {p}), wv, a{p})" for p in range(sums)]
    lines += [f"    store8(out, {8 * p}, a{p})" for p in range(sums)]
    return "\n".join(lines)


def _compile_in_child(out_path):
    """Compile every kernel and probe for the CPU this process was started for; write the
    assembly and what Numba compiled for to ``out_path``."""
    from numba import njit, types
    from numba.core.registry import cpu_target

    from nbcnn.kernels.fast import direct, dot
    from nbcnn.kernels.fast import filter_grad_taps as taps
    from nbcnn.kernels.fast.simd import fma8, load8, splat_at8, store8

    asm = {}
    for name, sig in _kernel_signatures().items():
        kernel = {"conv_tiles_dot": dot.conv_tiles_dot, "filter_grad_tap_tiles": taps.filter_grad_tap_tiles}.get(name) or getattr(direct, {"conv_tiles_narrow8": "conv_tiles_narrow", "filter_grad_tiles_narrow": "filter_grad_tiles",
                                  "filter_grad_tiles_mid": "filter_grad_tiles",
                                  "filter_grad_tiles_narrow8": "filter_grad_tiles"}.get(name, name))
        options = {k: v for k, v in kernel.targetoptions.items() if k != "nopython"}
        fresh = njit(**options)(kernel.py_func)  # the kernel's own options, without its cache
        fresh.compile(sig)
        asm[name] = fresh.inspect_asm(sig)
    flat = types.Array(types.float32, 1, "C")
    for sums in PROBE_SUMS:
        scope = dict(load8=load8, store8=store8, fma8=fma8, splat_at8=splat_at8)
        exec(_probe_source(sums), scope)
        probe = njit(scope[f"probe_{sums}"])
        sig = (flat, flat, types.int64, flat)
        probe.compile(sig)
        asm[f"probe_{sums}"] = probe.inspect_asm(sig)
    _, cpu, features = cpu_target.target_context.codegen().magic_tuple()
    from nbcnn.kernels.fast import simd
    sums = {"conv_tiles": direct.PIXELS * direct.CHANNELS // simd.LANES,  # 4 x 16 (AVX2), 8 x 32 (AVX-512)
            "conv_tiles_dot": dot.pixels_per_tile(3) * 3,  # 8 (AVX-512) or 4 (AVX2) pixels x 3 outputs
            "filter_grad_tap_tiles": taps.K_BROADCASTS * taps.TAP_VECTORS,  # 8 channels x 3 vectors of taps
            "conv_tiles_narrow": direct.NARROW_PIXELS,  # NARROW_PIXELS x one vector
            "conv_tiles_narrow8": direct.NARROW_PIXELS,  # the same, 8 lanes (ymm) on any target
            "filter_grad_tiles": _sums(direct.filter_grad_shape(1 << 20)),  # 6 x 16 (AVX2), 6 x 64 (AVX-512)
            "filter_grad_tiles_mid": _sums(direct.filter_grad_shape(direct.CHANNELS)),  # 6 x 16, 8 x 32
            "filter_grad_tiles_narrow": direct.NARROW_TAPS,  # 12 x one vector
            "filter_grad_tiles_narrow8": direct.NARROW_TAPS}  # the same, 8 lanes on any target
    widths = {name: 8 if name.endswith("narrow8") else simd.LANES for name in sums}
    with open(out_path, "w") as f:
        json.dump({"cpu": cpu, "features": features, "asm": asm, "lanes": simd.LANES, "sums": sums,
                   "widths": widths}, f)


# ---------------------------------------------------------------- the parent (reads)

@lru_cache(maxsize=None)
def _all_targets():
    """{target: {"cpu", "features", "asm": {name: text}}}, or the error, once per session:
    one child per target, all at once."""
    work = tempfile.mkdtemp(prefix="nbcnn_asm_")
    children = {}
    try:
        for target, cpu in TARGETS.items():
            env = dict(os.environ, NUMBA_CPU_NAME=cpu, NUMBA_CPU_FEATURES="",
                       NUMBA_CACHE_DIR=os.path.join(work, f"cache_{target}"))
            env.pop("NUMBA_DISABLE_JIT", None)
            env.pop("NBCNN_LANES", None)  # the width follows the target CPU
            out = os.path.join(work, f"{target}.json")
            children[target] = out, subprocess.Popen(
                [sys.executable, os.path.abspath(__file__), out], env=env,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        results = {}
        for target, (out, child) in children.items():
            stdout, stderr = child.communicate(timeout=600)
            if child.returncode != 0:
                return RuntimeError(f"compiling for {TARGETS[target]} failed:\n{stdout}\n{stderr}")
            if "not a recognized processor" in stderr:
                return RuntimeError(f"this LLVM does not know the CPU {TARGETS[target]!r}:\n{stderr}")
            with open(out) as f:
                results[target] = json.load(f)
        return results
    except subprocess.TimeoutExpired as e:
        return RuntimeError(f"compiling took too long: {e}")
    finally:
        for _, child in children.values():
            if child.poll() is None:
                child.kill()
                child.wait()
        shutil.rmtree(work, ignore_errors=True)


def _target(target):
    results = _all_targets()
    if isinstance(results, Exception):  # kept, so that every test reports it without compiling again
        raise results
    return results[target]


def compiled_for(target):
    """(cpu name, cpu features) Numba compiled the ``target``'s code for."""
    result = _target(target)
    return result["cpu"], result["features"]


def lanes(target):
    """The vector width (float32 lanes) nbcnn chose for ``target`` (simd.host_lanes)."""
    return _target(target)["lanes"]


def tile_lanes(target, kernel):
    """The lanes of the vectors in ``kernel``'s register tile as compiled for ``target``."""
    return _target(target)["widths"][kernel]


def tile_sums(target, kernel):
    """Vector sums in the register tile of ``kernel`` as compiled for ``target``."""
    return _target(target)["sums"][kernel]


def assembly(target, name):
    """The assembly of kernel or probe ``name`` compiled for ``target`` (a key of TARGETS)."""
    return _target(target)["asm"][name]


_FMA = re.compile(r"^\s*v(?:f|fn)m(?:add|sub)\d{3}p[sd]\s+(.*)$")
_VECTOR_REGISTER = re.compile(r"%[xyz]mm\d+")
_BACKWARD_JUMP = re.compile(r"^\s*j\w+\s+(\.L\w+)\s*$")
_LABEL = re.compile(r"^(\S+):")
_VECTOR_STORE = re.compile(r"%[xyz]mm\d+,\s*[-\w]*\(%[^)]*\)\s*$")  # "..., %ymm3, 64(%rsp)"


@dataclass
class Loop:
    """Lines ``first .. last`` of the assembly: a label and a later jump back to it."""
    first: int
    last: int
    lines: list = field(repr=False)
    frame_pointer: bool = False  # the function uses %rbp as its frame pointer

    @property
    def fmas(self):
        """The operands of the loop's vector FMAs, e.g. ``"%ymm9, %ymm8, %ymm7"`` (AT&T order:
        the accumulator, source and destination, is the last one)."""
        return [m.group(1).strip() for m in map(_FMA.match, self.lines) if m]

    @property
    def accumulators(self):
        return [fma.rsplit(",", 1)[-1].strip() for fma in self.fmas]

    @property
    def vector_stores(self):
        """Instructions that write a vector register to memory (any memory)."""
        return [line.strip() for line in self.lines if _VECTOR_STORE.search(line)]

    @property
    def spills(self):
        """Instructions that move a vector register to or from the stack."""
        stack = r"\(%(?:rsp|rbp)[,)]" if self.frame_pointer else r"\(%rsp[,)]"
        return [line.strip() for line in self.lines
                if _VECTOR_REGISTER.search(line) and re.search(stack, line)]


def tile_loops(asm):
    """The innermost loops of ``asm`` that hold vector FMAs: the reduction loops of a
    register tile (a loop is a label and a later jump back to it that the code from the
    label reaches without leaving the lines between them; innermost: it contains no other
    such loop; loops laid out in pieces may yield several)."""
    lines = asm.splitlines()
    labels = {m.group(1): i for i, m in enumerate(map(_LABEL.match, lines)) if m}
    spans = []
    for i, line in enumerate(lines):
        m = _BACKWARD_JUMP.match(line)
        if m and labels.get(m.group(1), i) < i:
            spans.append((labels[m.group(1)], i))
    spans = [(a, b) for a, b in spans if _comes_back(lines, a, b, labels)]
    with_fmas = [(a, b) for a, b in spans if any(_FMA.match(line) for line in lines[a:b + 1])]
    innermost = [(a, b) for a, b in with_fmas
                 if not any((a, b) != (c, d) and a <= c and d <= b for c, d in with_fmas)]
    return [Loop(a, b, lines[a:b + 1], _uses_frame_pointer(lines, a)) for a, b in sorted(set(innermost))]


_JUMP = re.compile(r"^\s*(j\w+)\s+(\.L\w+)\s*$")


def _comes_back(lines, a, b, labels):
    """Whether the code from the label at line ``a`` reaches the jump back at line ``b``
    through lines ``a .. b`` only (falling through, or jumping to a label among them). Not
    so for a jump back to an exit block that LLVM placed above the loop (a dW tile's stores
    after its reduction: the stores flow out of the span, never to the jump)."""
    seen, todo = set(), [a]
    while todo:
        i = todo.pop()
        if i in seen or not a <= i <= b:
            continue
        seen.add(i)
        if i == b:
            return True
        text = lines[i].strip()
        m = _JUMP.match(lines[i])
        if m:
            todo.append(labels.get(m.group(2), -1))
            if m.group(1) == "jmp":
                continue
        if text.startswith("ret"):
            continue
        todo.append(i + 1)
    return False


def _uses_frame_pointer(lines, at):
    """Whether the function holding line ``at`` sets %rbp up as its frame pointer (else
    %rbp is one more general register, and ``(%rbp,%r15,4)`` an array element)."""
    start = at
    while start > 0 and not (_LABEL.match(lines[start]) and not lines[start].startswith(".")):
        start -= 1
    return any(re.match(r"^\s*movq\s+%rsp,\s*%rbp\s*$", line) for line in lines[start:at])


if __name__ == "__main__":
    _compile_in_child(sys.argv[1])
