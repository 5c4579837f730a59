"""The register-blocked direct conv (nbcnn/kernels/fast/direct.py) and its SIMD helpers.

Correctness against the oracle is in test_conv_fast.py (conv_fast routes float32 here);
this file checks what is particular to the direct kernel: that its tiles really are kept in
vector registers (the reason it exists), the padded-input helper, and the guard rails of
the intrinsics.

The register checks read the machine code of the tiled kernels (the forward's 4 pixel x
16 channel and 8 x 8 tiles, the dW's 6 tap x 16 channel tile) for two x86 targets, whatever
the host is: AVX2 (Zen 3, where the kernels were written: 16 vector registers) and
AVX-512 (Sapphire Rapids: 32 vector registers, and FMAs that broadcast an input number
straight from memory). Each target is compiled once per session in a child process with
``NUMBA_CPU_NAME`` set (tests/asm_targets.py), so a check written on one kind of machine
holds on the other. A tile "kept in registers" means: in the loops that hold its FMAs no
vector register goes to or comes back from the stack (a spill, which made a 6 x 16 tile 2-3x
slower on AVX2). Memory operands that read the inputs or weights are fine. The
12 x 8 tile direct.py mentions is not in the code any more (a 12-pixel copy of the narrow
loop nest still spills on Zen 3, not on Haswell: it depends on the LLVM's choices), so what the
spill check sees is tested on probe loops of 20 and 40 sums instead, which need more than 16,
and more than 32, vector registers whatever LLVM does.
"""

import platform
import re

import numpy as np
import pytest
from numba import njit

import asm_targets
import oracles
from asm_targets import TARGETS, VECTOR_REGISTERS, tile_loops
from nbcnn.checks import Window
from nbcnn.kernels.fast import direct as conv_direct, simd

x86 = pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"),
                         reason="the register checks compile for x86 CPUs and read x86 assembly")

TILES = ("conv_tiles", "conv_tiles_dot", "filter_grad_tap_tiles", "conv_tiles_narrow", "conv_tiles_narrow8", "filter_grad_tiles", "filter_grad_tiles_narrow",
         "filter_grad_tiles_narrow8", "filter_grad_tiles_mid")
"""The register-tiled kernels; their sums per target: asm_targets.tile_sums (AVX2: 8, 8, 12,
12 ymm sums for 4 px x 16 ch, 8 px x 8 ch, 6 taps x 16 ch, 12 taps x 8 ch; AVX-512: 16, 8,
24, 12 zmm sums for 8 x 32, 8 x 16, 12 x 32, 12 x 16; and on both, the narrow tile at 8
lanes (8 ymm sums, and 12 for dW): AVX-512's tiles for 8 channels or fewer)."""
WIDTH = {8: "y", 16: "z"}
"""Register letter of a vector of 8 / 16 float32 lanes."""
_VECTOR_REGISTER = re.compile(r"%([xyz])mm(\d+)")
_AVX512_ONLY = re.compile(r"\{1to\d+\}|%zmm\d|%[xy]mm(?:1[6-9]|2\d|3[01])\b|%k[0-7]\b")
"""Syntax only AVX-512 code has: embedded broadcasts, 512-bit registers, registers 16-31,
mask registers."""


@x86
@pytest.mark.parametrize("kernel", TILES)
@pytest.mark.parametrize("target", TARGETS)
def test_the_tile_is_kept_in_vector_registers(target, kernel):
    """Each step of the reduction is the tile's multiply-adds as FMAs of the target's width
    (8-lane ymm registers on AVX2, 16-lane zmm on AVX-512: simd.host_lanes), and the sums stay in vector registers for the whole reduction: the loops holding the
    FMAs never move a vector register to or from the stack (a spill), and never store a
    vector at all (the tile is stored once, after its reduction).

    An FMA may read memory: the weights, or (AVX-512 only) the broadcast input number, as in
    ``vfmadd231ps (%r11,%r12){1to8}, %ymm8, %ymm7``. Which operand holds the sum depends on
    the target (``vfmadd231ps`` accumulates into its last operand, the ``vfmadd213ps`` LLVM
    picks for Zen 3 into its first, with register copies between steps), so the sums are
    not identified by register name."""
    if kernel == "filter_grad_tap_tiles" and target == "avx2":
        pytest.skip("the dW tile of taps runs on AVX-512 only (filter_grad_taps.usable)")
    sums = asm_targets.tile_sums(target, kernel)
    assert asm_targets.lanes(target) == {"avx2": 8, "avx512": 16}[target]
    lanes = asm_targets.tile_lanes(target, kernel)
    loops = tile_loops(asm_targets.assembly(target, kernel))
    assert loops, "no loop of vector FMAs: the tile was not vectorised"
    for loop in loops:
        fmas = loop.fmas
        assert len(fmas) >= sums and len(fmas) % sums == 0, \
            f"{len(fmas)} FMAs in a loop: not whole steps of the {sums}-sum tile"
        widths = {w for fma in fmas for w, _ in _VECTOR_REGISTER.findall(fma)}
        assert widths == {WIDTH[lanes]}, f"FMAs not all on {WIDTH[lanes]}mm registers ({lanes} lanes): {fmas[:3]}"
        assert not loop.spills, f"vector registers spilled to the stack in the tile's loop: {loop.spills[:3]}"
        assert not loop.vector_stores, f"sums stored during the reduction: {loop.vector_stores[:3]}"


@x86
@pytest.mark.parametrize("target", TARGETS)
def test_the_spill_check_sees_real_spills(target):
    """The check above is not vacuous: a loop of ``sums`` sums needs them and two more
    vector registers (a weight vector, an input broadcast), so 20 sums spill on AVX2 (16
    registers) but not on AVX-512 (32; its FMAs there read the inputs through ``{1to8}``
    broadcasts, which are not spills), and 40 sums spill on both."""
    for sums in asm_targets.PROBE_SUMS:
        (loop,) = tile_loops(asm_targets.assembly(target, f"probe_{sums}"))
        assert len(loop.fmas) == sums
        if sums + 2 > VECTOR_REGISTERS[target]:
            assert loop.spills, f"{sums} sums on {target}: no spill seen"
            assert any(re.search(r"\(%rsp", s) for s in loop.spills)
        else:
            assert not loop.spills, f"{sums} sums fit in {target}'s registers, yet: {loop.spills[:3]}"


def test_the_spill_check_reads_stack_addresses_only():
    """The rules on hand-written loops: an FMA reading an input through an embedded
    broadcast is no spill (the line that fooled the first version of this check on
    AVX-512); a vector register stored to or loaded from %rsp, or from %rbp where the
    function set %rbp up as its frame pointer, is one; %rbp as a plain register is not."""
    def loop(prologue, *body):
        asm = "\n".join(["f:", *prologue, ".LBB0_1:", *body, "\tjne\t.LBB0_1", "\tretq"])
        (found,) = tile_loops(asm)
        return found

    fine = loop([], "\tvfmadd231ps\t(%r11,%r12){1to8}, %ymm8, %ymm7", "\tvbroadcastss\t(%rbp,%r15,4), %ymm9",
                "\tvfmadd231ps\t%ymm9, %ymm8, %ymm6", "\tmovq\t64(%rsp), %rbx")
    assert (fine.spills, fine.vector_stores, len(fine.fmas)) == ([], [], 2)
    spilled = loop([], "\tvmovups\t%ymm7, 64(%rsp)", "\tvfmadd231ps\t96(%rsp), %ymm8, %ymm7")
    assert len(spilled.spills) == 2 and spilled.vector_stores == ["vmovups\t%ymm7, 64(%rsp)"]
    framed = loop(["\tpushq\t%rbp", "\tmovq\t%rsp, %rbp"], "\tvfmadd231ps\t-64(%rbp), %ymm8, %ymm7")
    assert framed.spills == ["vfmadd231ps\t-64(%rbp), %ymm8, %ymm7"]


def test_a_jump_back_to_an_exit_block_is_no_loop():
    """LLVM may place a loop's exit block (a dW tile's stores) above the loop and jump back
    to it from the loop's end: that span is no loop, and its stores are no spills; the
    real loop inside it is still found."""
    asm = "\n".join(["f:", "\tjmp\t.LBB0_3", ".LBB0_1:", "\tvmovups\t%ymm1, (%rsi)", "\tjmp\t.LBB0_9",
                     ".LBB0_3:", "\tvfmadd231ps\t(%rax), %ymm2, %ymm1", "\tdecq\t%rcx", "\tjne\t.LBB0_3",
                     "\tjmp\t.LBB0_1", ".LBB0_9:", "\tretq"])
    (loop,) = tile_loops(asm)
    assert (loop.lines[0], len(loop.fmas), loop.vector_stores) == (".LBB0_3:", 1, [])


@x86
@pytest.mark.parametrize("target", TARGETS)
def test_each_target_compiles_its_own_instruction_set(target):
    """The children compiled for the CPU named, with its own features only (not the host's):
    the AVX2 code has no AVX-512 syntax; the AVX-512 code keeps 20 sums in registers, so it
    has registers 16-31 (AVX-512VL)."""
    cpu, features = asm_targets.compiled_for(target)
    assert (cpu, features) == (TARGETS[target], "")
    if target == "avx2":
        for name in TILES + tuple(f"probe_{s}" for s in asm_targets.PROBE_SUMS):
            found = _AVX512_ONLY.findall(asm_targets.assembly(target, name))
            assert not found, f"AVX-512 instructions in the AVX2 code of {name}: {found[:3]}"
    else:
        (loop,) = tile_loops(asm_targets.assembly(target, "probe_20"))
        assert max(int(n) for fma in loop.fmas for _, n in _VECTOR_REGISTER.findall(fma)) >= 16


def test_padded_input_is_x_when_no_border_is_needed():
    x = np.zeros((1, 9, 12, 2), np.float32)
    win = Window(3, 3, 1, 1, 0, 0)
    assert conv_direct.padded_input(x, win, 7, 10, lambda name, n: np.empty(n, np.float32)) is x


@pytest.mark.parametrize("pads, stride", [((1, 1), 1), ((0, 0), 1), ((3, 3), 2), ((2, 0), 1), ((0, 1), 2)])
def test_padded_input_borders(pads, stride, rng):
    """The copy is x inside a zero border, as big as the windows read."""
    x = rng.standard_normal((2, 7, 9, 3)).astype(np.float32)
    top, left = pads
    f = 3
    H_out = (7 + 2 * top - f) // stride + 1
    W_out = (9 + 2 * left - f) // stride + 1
    win = Window(f, f, stride, stride, top, left)
    xp = conv_direct.padded_input(x, win, H_out, W_out, lambda name, n: np.full(n, np.nan, np.float32))
    if pads == (0, 0):
        assert xp is x
        return
    assert xp.shape[1:3] == ((H_out - 1) * stride + f, (W_out - 1) * stride + f)
    assert not np.isnan(xp).any(), "every cell written (border zeroed)"
    np.testing.assert_array_equal(xp[:, top:top + 7, left:left + 9], x)
    assert xp.sum(dtype=np.float64) == pytest.approx(x.sum(dtype=np.float64), rel=1e-5)


def test_forward_and_filter_gradient_match_the_oracle(rng):
    """The two entry points called directly (not through conv_fast), on a LeNet-like layer."""
    x = rng.standard_normal((5, 14, 14, 6)).astype(np.float32)
    W = rng.standard_normal((5, 5, 6, 16)).astype(np.float32)
    b = rng.standard_normal(16).astype(np.float32)
    win = Window(5, 5, 1, 1, 0, 0)
    z = np.empty((5, 10, 10, 16), np.float32)
    scratch = lambda name, n: np.empty(n, np.float32)  # noqa: E731
    conv_direct.forward(x, W, b, win, z, scratch)
    np.testing.assert_allclose(z, oracles.conv_forward(x, W, b, (1, 1), (0, 0, 0, 0)), rtol=1e-4, atol=1e-4)
    dz = rng.standard_normal(z.shape).astype(np.float32)
    dW = np.empty_like(W)
    conv_direct.backward_filter(x, dz, win, dW, scratch)
    _, want_dW, _ = oracles.conv_backward(dz, x, W, (1, 1), (0, 0, 0, 0))
    np.testing.assert_allclose(dW, want_dW, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("n, hw, c, f, k", [
    (1, 3, 5, 3, 10),     # one output row: only the last row's separate pass
    (3, 6, 3, 3, 10),     # seed39's channels, several rows and images
    (2, 5, 7, 2, 33),     # a last panel of one channel, wider tiles
    (4, 9, 2, 3, 40),     # rows past a chunk's worth with a few channels
])
def test_filter_gradient_with_channels_short_of_a_tile(n, hw, c, f, k, rng):
    """K not a multiple of the dW tile's width: every row but the last is summed straight from
    dz (its pixels' last vectors read on into the next pixel), the last from a copy with room
    after it, never past the end of dz. The oracle: float64 sums."""
    x = rng.standard_normal((n, hw, hw, c)).astype(np.float32)
    H_out = hw - f + 1
    dz = rng.standard_normal((n, H_out, H_out, k)).astype(np.float32)
    dW = np.empty((f, f, c, k), np.float32)
    db = np.full(k, np.nan, np.float32)
    conv_direct.backward_filter(x, dz, Window(f, f, 1, 1, 0, 0), dW, lambda name, size: np.empty(size, np.float32), db)
    _, want_dW, want_db = oracles.conv_backward(dz, x, np.zeros((f, f, c, k), np.float32), (1, 1), (0, 0, 0, 0))
    np.testing.assert_allclose(dW, want_dW, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(db, want_db, rtol=1e-4, atol=1e-4)  # summed in the same pass


@pytest.mark.parametrize("n, hw, c, f, k, l2", [
    (8, 30, 16, 3, 64, ""),      # chunked rows, a 6 x 64 tile on AVX-512
    (8, 30, 16, 3, 40, "65536"),  # chunks split in parts (dz past a small L2), a last panel of 8
    (64, 12, 3, 3, 10, ""),      # seed39's channels: one chunk, rows split, the last row apart
])
def test_bias_gradient_in_the_filter_gradients_pass(n, hw, c, f, k, l2, rng, monkeypatch):
    """db from the dW tiles (each panel's first tile adds up its rows of dz), however the rows
    are chunked and split: the float64 oracle's sums, and the same bits on 1 and 2 threads."""
    import numba

    monkeypatch.setenv("NBCNN_L2_BYTES", l2)
    x = rng.standard_normal((n, hw, hw, c)).astype(np.float32)
    H_out = hw - f + 1
    dz = rng.standard_normal((n, H_out, H_out, k)).astype(np.float32)
    results = []
    for threads in sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)}):
        saved = numba.get_num_threads()
        numba.set_num_threads(threads)
        try:
            dW, db = np.empty((f, f, c, k), np.float32), np.full(k, np.nan, np.float32)
            conv_direct.backward_filter(x, dz, Window(f, f, 1, 1, 0, 0), dW, lambda name, size: np.empty(size, np.float32), db)
        finally:
            numba.set_num_threads(saved)
        results.append((dW, db))
    _, want_dW, want_db = oracles.conv_backward(dz, x, np.zeros((f, f, c, k), np.float32), (1, 1), (0, 0, 0, 0))
    np.testing.assert_allclose(results[0][0], want_dW, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(results[0][1], want_db, rtol=1e-4, atol=1e-3)
    for a, b in zip(results[0], results[-1]):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("n, hw, c, f, k", [
    (16, 12, 3, 3, 10),    # seed39's 3 -> 10: tasks of many tiles, 10 of 16 lanes
    (9, 11, 5, 2, 12),     # 12 of 16 lanes, pixels that leave the last tile part-empty
    (40, 7, 6, 3, 6),      # 6 of 8 lanes (the narrow tile's 8-lane vectors), 1000 pixels
    (12, 9, 4, 3, 16),     # a whole vector: no spill
])
def test_narrow_tiles_spill_only_into_pixels_their_task_stores_next(n, hw, c, f, k, rng):
    """The narrow forward stores whole vectors of K < lanes channels: each pixel's lanes past K
    run into the next pixel, which is stored after it by the same task, except after a task's
    last tile (a scalar copy there). Enough pixels for tasks of several tiles, on 1 thread and
    2: every output cell written (NaN otherwise), none clobbered (the oracle), same bits."""
    import numba

    x = rng.standard_normal((n, hw, hw, c)).astype(np.float32)
    W = rng.standard_normal((f, f, c, k)).astype(np.float32)
    b = rng.standard_normal(k).astype(np.float32)
    H_out = hw - f + 1
    assert n * H_out * H_out // conv_direct.NARROW_PIXELS // 16 > -(-H_out // conv_direct.NARROW_PIXELS)  # tasks > a row
    results = []
    for threads in sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)}):
        saved = numba.get_num_threads()
        numba.set_num_threads(threads)
        try:
            z = np.full((n, H_out, H_out, k), np.nan, np.float32)
            conv_direct.forward(x, W, b, Window(f, f, 1, 1, 0, 0), z, lambda name, size: np.empty(size, np.float32))
        finally:
            numba.set_num_threads(saved)
        results.append(z)
    np.testing.assert_allclose(results[0], oracles.conv_forward(x, W, b, (1, 1), (0,) * 4), rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(results[0], results[-1])


@pytest.mark.parametrize("n, hw, c, k, pad", [
    (1, 5, 64, 96, 1),     # three panels, the input far smaller than the filters: split by panels
    (2, 3, 48, 70, 0),     # a last panel half empty, two images, no padding
    (1, 4, 300, 64, 1),    # a long reduction: blocks of the run inside each panel task
])
def test_small_inputs_under_large_filters_split_by_panels(n, hw, c, k, pad, rng):
    """conv_tiles hands each thread one panel of filters for every pixel when the input is
    small and the filters large (YOLOv3-tiny's 13 x 13 layers): same sums as the oracle."""
    x = rng.standard_normal((n, hw, hw, c)).astype(np.float32)
    W = (rng.standard_normal((3, 3, c, k)) / np.sqrt(9 * c)).astype(np.float32)
    b = rng.standard_normal(k).astype(np.float32)
    H_out = hw + 2 * pad - 2
    panels = -(-k // conv_direct.CHANNELS)
    assert panels > 1 and 9 * c * panels * conv_direct.CHANNELS * 4 > 4 * n * (hw + 2 * pad) ** 2 * c  # the split
    z = np.empty((n, H_out, H_out, k), np.float32)
    conv_direct.forward(x, W, b, Window(3, 3, 1, 1, pad, pad), z, lambda name, size: np.empty(size, np.float32))
    np.testing.assert_allclose(z, oracles.conv_forward(x, W, b, (1, 1), (pad,) * 4), rtol=1e-4, atol=1e-4)


def test_simd_intrinsics_refuse_what_they_cannot_load():
    @njit
    def load_from(a):
        return simd.load8(a, 0)

    with pytest.raises(Exception, match="1-D float32"):
        load_from(np.zeros(8, np.float64))
    with pytest.raises(Exception, match="1-D float32"):
        load_from(np.zeros((2, 8), np.float32))


def test_simd_round_trip():
    @njit
    def axpy(a, x, y, out):
        for i in range(0, out.size, 8):
            simd.store8(out, i, simd.fma8(simd.splat8(a), simd.load8(x, i), simd.load8(y, i)))

    x = np.arange(16, dtype=np.float32)
    y = np.ones(16, np.float32)
    out = np.empty(16, np.float32)
    axpy(np.float32(2), x, y, out)
    np.testing.assert_array_equal(out, 2 * x + 1)


def test_keep_where_eq8_is_the_readable_select():
    """Lanes where the key matches keep v (a -0.0 becomes +0.0, as ``0 + v`` does), the
    others are +0.0; keys must be int32."""
    @njit
    def pick(v, keys, k, out):
        simd.store8(out, 0, simd.keep_where_eq8(simd.load8(v, 0), keys, 0, k))

    v = np.array([1, -2, -0.0, 4, 5, -0.0, 7, 8], np.float32)
    keys = np.array([3, 1, 3, 3, 0, 2, 3, -1], np.int32)
    out = np.full(8, np.nan, np.float32)
    pick(v, keys, 3, out)
    want = np.float32(0) + np.where(keys == 3, v, np.float32(0))
    np.testing.assert_array_equal(out.view(np.int32), want.view(np.int32))
    with pytest.raises(Exception, match="int32"):
        pick(v, keys.astype(np.int64), 3, out)
