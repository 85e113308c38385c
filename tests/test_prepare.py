"""Backend.prepare and the precision modes (DESIGN.md, "Precision"): the contract, the NumPy
oracle of the modes, the numba backend's packed weights (bitwise its per-call packing), the layer
and the ONNX loaders passing the mode through, and the conformance checks failing on mutants."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest

import lstm_backends as lb
from lstm_backends.backends.numpy_backend import NumpyBackend, product
from lstm_backends.testing import random_params, random_problem, reference_forward, run_conformance

ml_dtypes = pytest.importorskip("ml_dtypes")


def test_unknown_precision_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"precision must be None or one of 'bf16', 'bf16x3'; got 'fp8'"):
        lb.get_backend("numpy").prepare(random_params(3, 4, rng=0), precision="fp8")


def test_a_backend_without_the_mode_names_those_that_have_it():
    class NoModes(NumpyBackend):
        name = "no-modes"
        capabilities = frozenset({"forward", "cell"})

    with pytest.raises(lb.UnsupportedFeatureError, match=r"precision='bf16'.*backends that do: .*numpy"):
        NoModes().prepare(random_params(3, 4, rng=0), precision="bf16")
    assert "bf16" in lb.get_backend("auto", requires=["bf16"]).capabilities


@pytest.mark.parametrize("mode", ["bf16", "bf16x3"])
def test_numba_modes_equal_the_float32_oracle_up_to_summation_order(mode):
    """The same rounded operands as the NumPy oracle run in float32 (the float32 paths; with a
    projection the portable path, modes.py), every feature, lengths and reverse; cell equals
    forward with T=1."""
    pytest.importorskip("numba")
    nb, ref = lb.get_backend("numba"), lb.get_backend("numpy")
    for k, feats in enumerate([{}, {"proj_size": 5}, {"peephole": True}]):
        opts = {"clip": 0.7, "input_forget": True} if feats.get("peephole") else {}
        p = random_problem(12, 5, 9, 37, seed=60 + k, lengths="random", **feats)
        for rev in (False, True):
            a = nb.forward(p.x, nb.prepare(p.params, mode), p.h0, p.c0, lengths=p.lengths, reverse=rev, **opts)
            b = ref.forward(p.x, ref.prepare(p.params, mode), p.h0, p.c0, lengths=p.lengths, reverse=rev, **opts)
            assert max(np.abs(u - v).max() for u, v in zip(a, b)) < 2e-6
        h1, c1 = nb.cell(p.x[0], p.h0, p.c0, nb.prepare(p.params, mode), **opts)
        _, h2, c2 = nb.forward(p.x[:1], nb.prepare(p.params, mode), p.h0, p.c0, **opts)
        np.testing.assert_array_equal(h1, h2)
        np.testing.assert_array_equal(c1, c2)
        w = ref.prepare(p.params, mode)   # prepared by another backend: split on the fly, same bits
        np.testing.assert_array_equal(nb.forward(p.x, w, p.h0, p.c0, **opts)[0],
                                      nb.forward(p.x, nb.prepare(p.params, mode), p.h0, p.c0, **opts)[0])
        for u, v in zip(nb.cell(p.x[0], p.h0, p.c0, w, **opts), (h1, c1)):
            np.testing.assert_array_equal(u, v)


_BF16_WORDS = {"fma": "rounded operands", "pairs": "vdpbf16ps on bfloat16 pairs", "amx": "AMX tiles on bfloat16 pairs"}


@pytest.mark.parametrize("mode", ["bf16", "bf16x3"])
@pytest.mark.parametrize("kernel", ["fma", "pairs", "amx"])
@pytest.mark.parametrize("feats, opts", [({}, {}), ({"peephole": True}, {"clip": 0.6, "input_forget": True})])
def test_numba_modes_run_on_every_float32_path_with_the_same_bits(monkeypatch, feats, opts, kernel, mode):
    """Both modes without a projection run on the float32 kernels (rounded or split panels and x;
    h rounded, or split in three blocks per panel, by the gate update), their products as float32
    FMAs or on bfloat16 pair panels (``vdpbf16ps`` or AMX tiles, each emulated where the CPU lacks
    it): every kind gives the same bits, also on a workspace full of NaN (nothing unwritten is
    read: bf16x3's h blocks hold zeros past H), h_n is the last step's unrounded h (h0 for rows of
    length 0, also with the state updated in place), within summation order of the oracle; the
    cell is a one-step forward.  (I = 40, H = 70: the AMX kernel runs whole 32-k tile steps and its
    vdpbf16ps tail; the last panel is partly empty.)"""
    pytest.importorskip("numba")
    from lstm_backends.backends import numba_backend
    from lstm_backends.backends._numba import amx, bf16
    from lstm_backends.backends.numba_backend import NumbaBackend

    monkeypatch.setattr(bf16, "BF16_PAIRS", kernel == "pairs")
    monkeypatch.setattr(amx, "BF16_AMX", kernel == "amx")
    if kernel == "amx" and amx.HAS_AMX and not amx.permission():
        pytest.skip("this CPU has AMX but the OS refused this process the tile data")
    assert amx.bf16_kernel() == kernel

    ref = lb.get_backend("numpy")
    p = random_problem(11, 9, 40, 70, seed=71, lengths="random", **feats)
    lengths = p.lengths.copy()
    lengths[2] = 0
    w_ref = ref.prepare(p.params, mode)
    wsf = numba_backend._workspace(np.dtype(np.float32), 1 << 20, 1 << 14)[0]   # (no call grows it)
    for rev in (False, True):
        expected = ref.forward(p.x, w_ref, p.h0, p.c0, lengths=lengths, reverse=rev, **opts)
        first = None
        for kind in ("serial", "team", "serial+bulk", "team+bulk"):
            be = NumbaBackend(kind=kind)
            wsf[...] = np.nan
            got = be.forward(p.x, be.prepare(p.params, mode), p.h0, p.c0, lengths=lengths, reverse=rev, **opts)
            assert numba_backend._workspace(np.dtype(np.float32))[0] is wsf   # (it ran on the poisoned one)
            # summation order may flip an h's rounding now and then: the checks' one-step bound
            assert max(np.abs(u - v).max() for u, v in zip(got, expected)) < 5e-5, kind
            if first is None:
                first = [a.copy() for a in got]
            for u, v in zip(got, first):
                np.testing.assert_array_equal(u, v, err_msg=kind)
        np.testing.assert_array_equal(first[1][2], p.h0[2])   # length 0: h0, unrounded
        h, c = p.h0.copy(), p.c0.copy()   # the state updated in place
        be.forward(p.x, be.prepare(p.params, mode), h, c, lengths=lengths, reverse=rev, out=(first[0].copy(), h, c),
                   **opts)
        np.testing.assert_array_equal(h, first[1])
        np.testing.assert_array_equal(c, first[2])
    text = NumbaBackend(kind="team+bulk").describe_path(9, 70, precision=mode)   # (a fresh one: never solo)
    assert text.startswith(f"{mode}: team+bulk x") and _BF16_WORDS[kernel] in text
    assert ("h split in three" in text) == (mode == "bf16x3")
    w = be.prepare(p.params, mode)
    _, h1, c1 = be.forward(p.x[:1], w, p.h0, p.c0, **opts)
    h2, c2 = be.cell(p.x[0], p.h0, p.c0, w, **opts)
    if kernel != "fma" or mode == "bf16x3":   # the same kernel: the same bits
        np.testing.assert_array_equal(h2, h1)
        np.testing.assert_array_equal(c2, c1)
    else:       # the float32 cell (mkt), its chains in the same order
        np.testing.assert_allclose(h2, h1, rtol=0, atol=5e-5)


def test_three_blocks_split_each_panel_of_units_into_hi_hi_lo():
    """bf16x3's h operand on the float32 paths (``gates.SPLIT3``): per 16 units the blocks
    ``[hi | hi | lo]`` (weights: ``[W_hi | W_lo | W_hi]``), zero past H."""
    from lstm_backends.backends._numba.modes import three_blocks

    a = np.random.default_rng(6).standard_normal((3, 37)).astype(np.float32)
    hi = a.astype(ml_dtypes.bfloat16).astype(np.float32)
    lo = (a - hi).astype(ml_dtypes.bfloat16).astype(np.float32)
    for weights, parts in ((False, (hi, hi, lo)), (True, (hi, lo, hi))):
        got = three_blocks(a, weights)
        assert got.shape == (3, 3 * 48) and got.flags.c_contiguous
        blocks = got.reshape(3, 3, 3, 16)   # (row, panel, block, unit)
        for j, part in enumerate(parts):
            np.testing.assert_array_equal(blocks[:, :, j].reshape(3, 48)[:, :37], part)
        assert not blocks[:, 2, :, 5:].any()   # units 37..47 of the last panel


def test_pair_panels_hold_two_rounded_rows_per_word():
    from lstm_backends.backends._numba.bf16 import pair_panels

    rng = np.random.default_rng(5)
    p = rng.standard_normal((3, 7, 64)).astype(ml_dtypes.bfloat16).astype(np.float32)   # K odd
    words = pair_panels(p).view(np.uint32)
    assert words.shape == p.shape and words.ctypes.data % 64 == 0
    lo = (words[:, 0::2, :] << 16).view(np.float32)
    hi = (words[:, 0::2, :] & np.uint32(0xFFFF0000)).view(np.float32)
    np.testing.assert_array_equal(lo, p[:, 0::2, :])
    np.testing.assert_array_equal(hi[:, :3, :], p[:, 1::2, :])
    assert not hi[:, 3, :].any() and not words[:, 1::2, :].any()   # the missing odd row, the unused rows


@pytest.mark.parametrize("cpu", ["znver4", "sapphirerapids"])
def test_the_bf16_pair_kernel_assembles_to_vdpbf16ps_without_spills(monkeypatch, cpu):
    """The kernel a CPU with AVX512-BF16 runs, built for two such CPUs here: one vdpbf16ps per
    accumulator and pair, nothing spilled (it never ran on such a CPU in this project's CI runs
    that lack one: see bf16.py)."""
    from lstm_backends.backends._numba import bf16

    monkeypatch.setattr(bf16, "HAS_DP", True)
    bodies = _assemble(lambda m: [bf16._define_mkbf(m, mr) for mr in (1, 6)], cpu)
    for mr in (1, 6):
        body = bodies[f"lstmb_mkbf_r{mr}"]
        assert body.count("vdpbf16ps") == 4 * mr, (mr, body.count("vdpbf16ps"))
        assert not [line for line in body.splitlines() if "zmm" in line and "(%rsp)" in line]


def _assemble(define, cpu):
    """Host assembly of the IR functions ``define(module)`` returns, built for ``cpu``."""
    import llvmlite.binding as llb
    from llvmlite import ir

    llb.initialize_native_target()
    llb.initialize_native_asmprinter()
    m = ir.Module("t")
    m.triple = llb.get_process_triple()
    for fn in define(m):
        fn.linkage = "external"
    mod = llb.parse_assembly(str(m))
    mod.verify()
    tm = llb.Target.from_default_triple().create_target_machine(cpu=cpu, features="", opt=3)
    pto = llb.PipelineTuningOptions()
    pto.speed_level = 3
    pb = llb.PassBuilder(tm, pto)
    pb.getModulePassManager().run(mod, pb)
    return {part.split(",")[0]: part for part in tm.emit_assembly(mod).split(".type\t")[1:]}


def test_the_amx_kernel_assembles_to_tile_instructions(monkeypatch):
    """The kernel a CPU with AMX runs, built for ``sapphirerapids`` here: one tile configuration,
    the four accumulators loaded and stored once, an A tile and four B tiles with four
    ``tdpbf16ps`` per 32 k (the loop may be unrolled), 1 to 16 rows, the tail on ``vdpbf16ps`` in
    row groups of up to 6, no vector reloaded
    from the stack (it never ran on such a CPU in this project's CI runs that lack one: see amx.py)."""
    from lstm_backends.backends._numba import amx, bf16

    monkeypatch.setattr(bf16, "HAS_DP", True)
    bodies = _assemble(lambda m: [amx._define_mkamx(m, mr, real=True) for mr in (1, 6, 16)], "sapphirerapids")
    for mr in (1, 6, 16):
        body = bodies[f"lstmb_mkamx_r{mr}"]
        assert body.count("ldtilecfg") == 1 and body.count("tilestored") == 4 and body.count("tilerelease") == 1, mr
        dps = body.count("tdpbf16ps")
        assert dps and dps % 4 == 0 and body.count("tileloadd") == 4 + 5 * dps // 4, (mr, dps)
        assert "vdpbf16ps" not in body   # the tail: calls of mkbf, up to 6 rows each (16 = 6 + 6 + 4)
        assert "call" in body
        assert not [line for line in body.splitlines() if re.search(r"\(%rsp\), %[xyz]mm", line)], mr
    for g in (1, 4, 6):
        assert bodies[f"lstmb_mkbf_r{g}"].count("vdpbf16ps") == 4 * g


def test_the_amx_kernel_computes_the_rounded_product_at_every_k_and_row_count():
    """``mkamx`` (the tiles emulated where the CPU lacks them, the real ones where it has them) at
    k below, at and above whole 32-k tile steps, 1-16 rows (the tail in groups of up to 6), the bias
    row broadcast (row stride 0):
    ``cin + bf16(a) @ w`` within float32 summation order, and the pair kernel's result as close."""
    numba = pytest.importorskip("numba")
    from lstm_backends.backends._numba import amx, bf16
    from lstm_backends.backends._numba.intrinsics import _mkx

    if amx.HAS_AMX and not amx.permission():
        pytest.skip("this CPU has AMX but the OS refused this process the tile data")

    @numba.njit
    def run(mark, mr, a, w, k, cin, ldcin, out):
        _mkx(np.float32(0), mark, mr, a.ctypes.data, a.shape[1], w.ctypes.data, k, cin.ctypes.data, ldcin,
             out.ctypes.data, out.shape[1])

    rng = np.random.default_rng(8)
    for k in (1, 31, 32, 33, 64, 100):
        w = rng.standard_normal((k, 64)).astype(ml_dtypes.bfloat16).astype(np.float32)
        pairs = bf16.pair_panels(w[None])[0]
        for mr in (1, 2, 6, 7, 12, 16):
            a = rng.standard_normal((mr, k + 3)).astype(np.float32)
            for ldcin in (0, 72):
                cin = rng.standard_normal((mr, 72)).astype(np.float32)
                rows = cin[:1].repeat(mr, 0)[:, :64] if ldcin == 0 else cin[:, :64]
                exact = rows + a[:, :k].astype(ml_dtypes.bfloat16).astype(np.float64) @ w
                got, dp = (np.full((mr, 80), np.nan, np.float32) for _ in range(2))
                run(amx.MARK, mr, a, pairs, k, cin, ldcin, got)
                assert np.isnan(got[:, 64:]).all()   # nothing written past the panel's columns
                bound = 4e-7 * (1 + np.abs(a[:, :k]) @ np.abs(w)).max()
                assert np.abs(got[:, :64] - exact).max() <= bound, (k, mr, ldcin)
                if mr <= 6:   # (the pair kernel takes up to 6 rows)
                    run(1, mr, a, pairs, k, cin, ldcin, dp)
                    np.testing.assert_allclose(got[:, :64], dp[:, :64], rtol=0, atol=2 * bound)


def test_no_bf16_instruction_is_emitted_for_another_target_than_the_host():
    """With ``NUMBA_CPU_NAME`` naming another CPU (a portable cache) the kernels are built with the
    instructions emulated: emitting them for a target without them would abort LLVM."""
    code = ("from lstm_backends.backends._numba import amx, bf16, ir\n"
            "print(ir.HOST_TARGET, amx.HAS_AMX, bf16.HAS_DP)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "NUMBA_CPU_NAME": "generic"})
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.split() == ["False", "False", "False"]


def test_amx_is_asked_for_only_where_the_cpu_has_it():
    """Without AMX the OS is never asked and the default never picks tiles; with it, a fresh
    process (no pytest, no faulthandler's signal stack) gets the permission and its default bf16
    forward runs on tiles, within summation order of the oracle."""
    pytest.importorskip("numba")
    from lstm_backends.backends._numba import amx

    if not amx.HAS_AMX:
        assert amx.permission() is False
        if amx.BF16_AMX is None:
            assert amx.bf16_kernel() != "amx"
        return
    code = (
        "import numpy as np, lstm_backends as lb\n"
        "from lstm_backends.backends._numba import amx\n"
        "from lstm_backends.testing import random_problem\n"
        "assert amx.permission() and amx.bf16_kernel() == 'amx'\n"
        "p = random_problem(9, 16, 96, 130, seed=3)\n"
        "nb, ref = lb.get_backend('numba'), lb.get_backend('numpy')\n"
        "a = nb.forward(p.x, nb.prepare(p.params, 'bf16'), p.h0, p.c0)\n"
        "b = ref.forward(p.x, ref.prepare(p.params, 'bf16'), p.h0, p.c0)\n"
        "print(max(float(np.abs(u - v).max()) for u, v in zip(a, b)))\n")
    env = {k: v for k, v in os.environ.items() if k not in ("LSTM_BACKENDS_BF16_AMX", "PYTHONFAULTHANDLER")}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert float(res.stdout.strip().splitlines()[-1]) < 5e-5


def test_float64_weights_with_a_mode_are_refused_where_the_mode_takes_float32():
    class Float32Modes(NumpyBackend):
        name = "float32-modes"
        precision_dtypes = (np.dtype(np.float32),)

    with pytest.raises(ValueError, match=r"precision='bf16' takes float32 weights .* got float64"):
        Float32Modes().prepare(random_params(3, 4, dtype=np.float64, rng=0), precision="bf16")


def test_prepared_params_are_immutable_copies():
    params = random_params(3, 4, rng=1)
    w = lb.get_backend("numpy").prepare(params)
    assert isinstance(w, lb.PreparedParams)
    assert all(not a.flags.writeable for a in w.params if a is not None)
    assert all(a is not b for a, b in zip(w.params[:4], params[:4]))
    with pytest.raises(AttributeError):
        w.precision = "bf16"
    assert "numpy" in repr(w) and "H=4" in repr(w)


def test_the_oracle_rounds_every_product_operand():
    rng = np.random.default_rng(2)
    a, w = rng.standard_normal((3, 40)).astype(np.float32), rng.standard_normal((8, 40)).astype(np.float32)
    bf = ml_dtypes.bfloat16
    exact = a.astype(bf).astype(np.float64) @ w.astype(bf).astype(np.float64).T
    np.testing.assert_array_equal(product(a, w, "bf16"), exact.astype(np.float32))
    full = a.astype(np.float64) @ w.astype(np.float64).T
    err16 = np.abs(product(a, w, "bf16") - full).max()
    err3 = np.abs(product(a, w, "bf16x3") - full).max()
    err32 = np.abs(product(a, w) - full).max()
    assert err3 < err16 / 100 and err32 < err3, (err16, err3, err32)   # bf16x3: ~16 significant bits


@pytest.mark.parametrize("mode, bound", [("bf16", 8e-3), ("bf16x3", 1e-5)])
def test_stated_accuracy_of_the_modes_on_the_reference(mode, bound):
    be = lb.get_backend("numpy")
    worst = 0.0
    for seed in range(4):
        p = random_problem(20, 4, 16, 37, seed=seed, lengths="random")
        ref = reference_forward(p)
        got = be.forward(p.x, be.prepare(p.params, mode), p.h0, p.c0, lengths=p.lengths)
        worst = max(worst, *(np.abs(g - r).max() for g, r in zip(got, ref)))
    assert worst <= bound
    assert worst > bound / 1000, "the mode must round something (else this test proves nothing)"


def test_training_is_refused_in_a_precision_mode():
    be = lb.get_backend("numpy")
    p = random_problem(3, 2, 3, 4, seed=3)
    with pytest.raises(lb.UnsupportedFeatureError, match=r"cannot train .* precision='bf16'"):
        be.forward_train(p.x, be.prepare(p.params, "bf16"))


@pytest.mark.parametrize("kind", ["serial", "team", "serial+bulk", "team+bulk"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numba_prepared_weights_are_bitwise_its_per_call_packing(kind, dtype):
    pytest.importorskip("numba")
    from lstm_backends.backends.numba_backend import NumbaBackend

    be = NumbaBackend(kind=kind)
    for k, (feats, opts) in enumerate([({}, {}), ({"proj_size": 13}, {}),
                                       ({"peephole": True}, {"clip": 0.6, "input_forget": True})]):
        p = random_problem(9, 5, 7, 40, dtype=dtype, seed=50 + k, lengths="random", **feats)
        w = be.prepare(p.params)
        for rev in (False, True):
            a = be.forward(p.x, p.params, p.h0, p.c0, lengths=p.lengths, reverse=rev, **opts)
            b = be.forward(p.x, w, p.h0, p.c0, lengths=p.lengths, reverse=rev, **opts)
            for u, v in zip(a, b):
                np.testing.assert_array_equal(u, v)
        y1, _, _, tape1 = be.forward_train(p.x, p.params, p.h0, p.c0, lengths=p.lengths, **opts)
        y2, _, _, tape2 = be.forward_train(p.x, w, p.h0, p.c0, lengths=p.lengths, **opts)
        np.testing.assert_array_equal(y1, y2)
        g1, g2 = be.backward(tape1, *p.output_grads()), be.backward(tape2, *p.output_grads())
        for u, v in zip(g1.dparams, g2.dparams):
            if u is not None:
                np.testing.assert_array_equal(u, v)


@pytest.mark.parametrize("workers", ["serial", "team"])
def test_a_streaming_cell_on_prepared_weights_takes_the_fast_path(monkeypatch, workers):
    """cell(x, h, c, prepared, out=(h, c)) is checked like plain params (a few microseconds, not
    the full validation) and runs the backend's private copies: the same bits as plain params; in a
    precision mode too (the same bits as the full path), unless the backend lacks the mode (then
    the full path refuses it)."""
    pytest.importorskip("numba")
    from lstm_backends.backends import _base
    from lstm_backends.backends.numba_backend import NumbaBackend

    be = NumbaBackend(kind=workers)
    p = random_problem(1, 3, 24, 64, seed=8)
    w = be.prepare(p.params)
    expected = be.cell(p.x[0], p.h0, p.c0, p.params)
    modes = {m: be.prepare(p.params, precision=m) for m in ("bf16", "bf16x3")}
    full = {m: be.cell(p.x[0], p.h0, p.c0, wm, clip=1e9) for m, wm in modes.items()}   # (clip: the full path)

    class NoModes(NumbaBackend):
        name = "numba-no-modes"
        capabilities = NumbaBackend.capabilities - {"bf16", "bf16x3"}

    def full_path(*args, **kwargs):
        raise AssertionError("the full validation ran")

    monkeypatch.setattr(_base, "validate_cell", full_path)
    h, c = p.h0.copy(), p.c0.copy()
    got = be.cell(p.x[0], h, c, w, out=(h, c))
    assert got[0] is h and got[1] is c
    for u, v in zip(got, expected):
        np.testing.assert_array_equal(u, v)
    for m, wm in modes.items():
        h, c = p.h0.copy(), p.c0.copy()
        be.cell(p.x[0], h, c, wm, out=(h, c))
        np.testing.assert_array_equal(h, full[m][0], err_msg=m)
        np.testing.assert_array_equal(c, full[m][1], err_msg=m)
    with pytest.raises(AssertionError, match="full validation"):   # a mode it lacks: the full path
        NoModes(kind=workers).cell(p.x[0], p.h0, p.c0, modes["bf16"])


def test_prepared_params_of_one_backend_run_on_another():
    pytest.importorskip("numba")
    p = random_problem(6, 3, 5, 20, seed=4)
    w = lb.get_backend("numpy").prepare(p.params)
    a = lb.get_backend("numba").forward(p.x, w, p.h0, p.c0)
    b = lb.get_backend("numba").forward(p.x, p.params, p.h0, p.c0)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)


def test_layer_prepares_reprepares_on_load_and_reports_the_mode():
    lstm = lb.LSTM(6, 12, num_layers=2, bidirectional=True, backend="numpy", seed=0, precision="bf16")
    assert "precision='bf16'" in repr(lstm)
    ref = lb.LSTM(6, 12, num_layers=2, bidirectional=True, backend="numpy", seed=0, dtype=np.float64)
    x = np.random.default_rng(5).standard_normal((7, 3, 6)).astype(np.float32)
    y, _ = lstm(x)
    y64, _ = ref(x.astype(np.float64))
    assert 1e-6 < np.abs(y - y64).max() <= 8e-3
    state = {k: -v for k, v in lstm.state_dict().items()}
    lstm.load_state_dict(state)
    ref.load_state_dict(state)
    y, _ = lstm(x)
    y64, _ = ref(x.astype(np.float64))
    assert np.abs(y - y64).max() <= 8e-3, "load_state_dict must re-prepare"
    lstm.params = [[p._replace(w_ih=np.zeros_like(p.w_ih)) for p in layer] for layer in lstm.params]
    y0, _ = lstm(x)
    assert np.abs(y0 - y).max() > 1e-3, "replacing params must re-prepare"
    with pytest.raises(ValueError, match="needs dtype=np.float32"):
        lb.LSTM(6, 12, backend="numpy", dtype=np.float64, precision="bf16")
    with pytest.raises(lb.UnsupportedFeatureError, match="cannot train"):
        lstm.forward_train(x)


def test_onnx_loaders_pass_the_mode_through(tmp_path):
    pytest.importorskip("onnx")
    import onnx
    from onnx import helper

    import lstm_backends.onnx as lbo
    from lstm_backends.layouts import to_onnx

    p = random_params(4, 6, rng=6)
    w, r, b = to_onnx([p])
    graph = helper.make_graph(
        [helper.make_node("LSTM", ["X", "W", "R", "B"], ["Y"], hidden_size=6, name="lstm")], "g",
        [helper.make_tensor_value_info("X", onnx.TensorProto.FLOAT, [5, 2, 4])],
        [helper.make_tensor_value_info("Y", onnx.TensorProto.FLOAT, [5, 1, 2, 6])],
        [onnx.numpy_helper.from_array(a, n) for a, n in ((w, "W"), (r, "R"), (b, "B"))])
    model = helper.make_model(graph)
    x = np.random.default_rng(7).standard_normal((5, 2, 4)).astype(np.float32)
    y32 = lbo.load(model, backend="numpy")(x)[0]
    node = lbo.load(model, backend="auto", precision="bf16")
    assert node.precision == "bf16" and "bf16" in node.backend.capabilities
    y16 = node(x)[0]
    assert 1e-6 < np.abs(y16 - y32).max() <= 8e-3
    (out,) = lbo.load_model(model, precision="bf16x3").run(None, {"X": x})
    assert np.abs(out - y32).max() <= 1e-5
    with pytest.raises(ValueError, match="precision must be None or one of"):
        lbo.load(model, precision="half")
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    from lstm_backends.__main__ import main

    assert main(["onnx", str(path), "--run", "--precision", "bf16"]) == 0


# ---------------------------------------------------------------------------- the checks fail on mutants

class RoundsNothing(NumpyBackend):
    """Claims bf16 but computes float32 products."""

    name = "mutant-bf16-exact"

    def _forward(self, args):
        args.precision = None
        super()._forward(args)


class Bf16ForBf16x3(NumpyBackend):
    """Claims bf16x3 but computes one bf16 product (drops the hi/lo terms)."""

    name = "mutant-bf16x3"

    def _forward(self, args):
        if args.precision == "bf16x3":
            args.precision = "bf16"
        super()._forward(args)


@pytest.mark.parametrize("mutant, check", [(RoundsNothing, "bf16"), (Bf16ForBf16x3, "bf16x3")])
def test_precision_mutants_fail_their_check(mutant, check):
    (result,) = run_conformance(mutant(), [check], raise_on_failure=False)
    assert not result.passed and not result.skipped, result
    assert check in result.message


def test_a_backend_whose_prepare_keeps_the_callers_arrays_fails():
    class KeepsArrays(NumpyBackend):
        name = "mutant-aliases"

        def _own_copy(self, a, ctx):
            return a

    (result,) = run_conformance(KeepsArrays(), ["prepared"], raise_on_failure=False)
    assert not result.passed and "after prepare" in result.message


@pytest.mark.cudasim
def test_cuda_prepares_device_copies_under_the_simulator():
    """cuda's prepared weights are device arrays of their own (moved once, not per call); the
    results equal the params themselves, and a host backend refuses them with a clear message."""
    import os
    import subprocess
    import sys
    import textwrap

    pytest.importorskip("numba_cuda")
    from lstm_backends.testing._cudasim_patch import SIMULATOR_PRELUDE

    code = SIMULATOR_PRELUDE + textwrap.dedent("""
        import numpy as np, lstm_backends as lb
        from lstm_backends.testing import random_problem
        be = lb.get_backend("cuda")
        p = random_problem(3, 2, 3, 5, seed=1, lengths="random")
        w = be.prepare(p.params)
        assert all(hasattr(a, "copy_to_host") for a in w.params[:4]), w.params
        for u, v in zip(be.forward(p.x, p.params, p.h0, p.c0, lengths=p.lengths),
                        be.forward(p.x, w, p.h0, p.c0, lengths=p.lengths)):
            assert np.array_equal(u, v)
        try:
            lb.get_backend("numpy").forward(p.x, w)
        except TypeError as exc:
            assert "device array" in str(exc)
        else:
            raise AssertionError("numpy accepted device-array params")
        try:
            be.prepare(p.params, precision="bf16")
        except lb.UnsupportedFeatureError as exc:
            assert "numpy" in str(exc)
        else:
            raise AssertionError("cuda accepted precision='bf16'")
        print("ok")
    """)
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-3000:]


def test_the_mode_path_shows_in_describe_path_and_info():
    pytest.importorskip("numba")
    from lstm_backends.backends.numba_backend import NumbaBackend, describe_threads

    text = NumbaBackend(kind="team").describe_path(16, 256, precision="bf16x3")
    assert text.startswith("bf16x3: team x") and "h split in three" in text and "this CPU has" in text
    assert NumbaBackend(kind="team").describe_path(16, 256, precision="bf16").startswith("bf16: team x")
    assert NumbaBackend().describe_path(1, 256, cell=True, precision="bf16").startswith("bf16: cell x")
    lines = describe_threads()
    assert any(line.startswith("precision modes bf16 / bf16x3: bf16 and bf16x3 on the float32 kernels")
               for line in lines)
