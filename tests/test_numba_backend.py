"""numba backend specifics: every kernel path, bitwise agreement between them, thread counts and
threading layers, stale weights, caching and cold start, the float64 math, the cell, MKL, and the
training pass (forward_train + backward) on every path."""

import os
import subprocess
import sys
import textwrap
import tracemalloc

import numpy as np
import pytest

import lstm_backends as lb
from lstm_backends.testing import assert_close, random_params, random_problem, reference_cell
from lstm_backends.testing._problems import reference_backward

pytest.importorskip("numba")
from lstm_backends.backends import numba_backend as nbb  # noqa: E402
from lstm_backends.backends.numba_backend import KINDS, NumbaBackend, warmup  # noqa: E402

DTYPES = [np.float32, np.float64]
FORCED = [k for k in KINDS if k != "auto"]


def _run(code, timeout=600, **env):
    full = {**os.environ, **env}
    full["PYTHONPATH"] = os.pathsep.join(p for p in (os.path.dirname(os.path.dirname(lb.__file__)),
                                                     full.get("PYTHONPATH")) if p)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=full, timeout=timeout)


def _full_params(p, proj_size=0, peephole=False, seed=0):
    """p.params plus a projection (w_hh resized to (4H, P)) and/or peepholes, random."""
    rng = np.random.default_rng(seed)
    w_ih, w_hh, b_ih, b_hh = p.params[:4]
    hidden = w_hh.shape[1]
    dtype = w_ih.dtype
    w_hr = None
    if proj_size:
        w_hh = rng.uniform(-0.3, 0.3, (4 * hidden, proj_size)).astype(dtype)
        w_hr = rng.uniform(-0.3, 0.3, (proj_size, hidden)).astype(dtype)
    w_peep = rng.uniform(-0.5, 0.5, (3, hidden)).astype(dtype) if peephole else None
    return lb.LSTMParams(w_ih, w_hh, b_ih, b_hh, w_hr, w_peep)


def _reference(p, params, h0, **options):
    be = lb.get_backend("numpy")
    f64 = lb.LSTMParams(*(None if a is None else a.astype(np.float64) for a in params))
    return be.forward(p.x.astype(np.float64), f64, h0.astype(np.float64), p.c0.astype(np.float64),
                      lengths=p.lengths, reverse=p.reverse, **options)


# ---------------------------------------------------------------------------------------- import, cache
def test_get_backend_compiles_and_imports_nothing():
    out = _run(
        """
        import sys, lstm_backends as lb
        be = lb.get_backend("numba")
        be.describe_path  # the instance exists; nothing heavy is imported until a call
        print(sorted(m for m in sys.modules if m.startswith("numba") or m.startswith("lstm_backends.backends._numba")))
        """
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_every_kernel_is_cached():
    from numba.core.registry import CPUDispatcher

    from lstm_backends.backends import _numba as k

    dispatchers = {n: v for n, v in vars(k).items() if isinstance(v, CPUDispatcher)}
    assert {"forward_entry", "backward_entry", "cell_entry", "cell_team_entry", "run_team",
            "math64_apply"} <= set(dispatchers)
    for name, d in dispatchers.items():
        assert d.targetoptions.get("cache") or type(d._cache).__name__ != "NullCache", f"{name} is not cache=True"
        assert type(d._cache).__name__ != "NullCache", name
    for dtype in DTYPES:
        assert type(k.worker(dtype)._cache).__name__ != "NullCache"
        assert type(k.bwd_worker(dtype)._cache).__name__ != "NullCache"


COLD_CODE = """
import sys, time, json
t0 = time.perf_counter()
import numpy as np
import lstm_backends as lb
from lstm_backends.backends import _numba as k
be = lb.get_backend("numba")
rng = np.random.default_rng(0)
x = rng.standard_normal((20, 4, 16)).astype(np.float32)
params = lb.testing.random_params(16, 64, rng=0)
t1 = time.perf_counter()
y = be.forward(x, params)[0]
t2 = time.perf_counter()
w = k.worker(np.float32)
print(json.dumps({"import": t1 - t0, "first": t2 - t1, "worker_hits": w.cache_hits,
                  "entry_hits": sum(k.forward_entry.stats.cache_hits.values()),
                  "entry_misses": sum(k.forward_entry.stats.cache_misses.values()),
                  "region_hits": sum(k.run_team.stats.cache_hits.values()), "y": float(np.abs(y).sum())}))
"""


def test_cold_then_warm_cache_in_fresh_processes(tmp_path):
    """A fresh process with an empty cache compiles; the next one loads everything from the cache
    (the figures of docs/performance come from scripts/compare_cpu.py, not from this test)."""
    import json

    env = {"NUMBA_CACHE_DIR": str(tmp_path / "cache"), "LSTM_BACKENDS_NUMBA_KIND": "team"}
    cold = _run(COLD_CODE, **env)
    assert cold.returncode == 0, cold.stderr[-3000:]
    warm = _run(COLD_CODE, **env)
    assert warm.returncode == 0, warm.stderr[-3000:]
    c, w = (json.loads(r.stdout.strip().splitlines()[-1]) for r in (cold, warm))
    assert c["worker_hits"] == 0 and c["entry_hits"] == 0 and c["entry_misses"] == 1
    assert w["worker_hits"] == 1 and w["entry_hits"] == 1 and w["entry_misses"] == 0
    assert w["region_hits"] == 1
    assert c["y"] == w["y"]
    assert w["first"] < c["first"]


def test_warmup_compiles_every_dtype():
    from lstm_backends.backends import _numba as k

    warmup()
    assert {str(sig[0].dtype) for sig in k.cell_entry.signatures} >= {"float32", "float64"}
    assert {str(sig[0].dtype) for sig in k.forward_entry.signatures} >= {"float32", "float64"}
    if NumbaBackend().budget >= 2:
        assert {str(sig[0].dtype) for sig in k.cell_team_entry.signatures} >= {"float32", "float64"}


def test_auto_picks_numba_without_gpu():
    rows = {b.name: b for b in lb.list_backends()}
    if rows.get("cuda") and rows["cuda"].available and "simulat" not in rows["cuda"].reason:
        pytest.skip("a real GPU is present: auto picks cuda")
    assert lb.get_backend("auto").name == "numba"


# ---------------------------------------------------------------------------------------- options
def test_constructor_validation_and_env(monkeypatch):
    with pytest.raises(ValueError, match="positive"):
        NumbaBackend(num_threads=0)
    with pytest.raises(ValueError, match="kind must be one of"):
        NumbaBackend(kind="fast")
    with pytest.raises(ValueError, match="gemm must be one of"):
        NumbaBackend(gemm="blas")
    be = NumbaBackend(num_threads=2)
    be.set_num_threads(None)
    assert be.num_threads is None
    monkeypatch.setenv("LSTM_BACKENDS_NUMBA_KIND", "serial")
    monkeypatch.setenv("LSTM_BACKENDS_NUM_THREADS", "1")
    be = NumbaBackend()
    assert be.kind == "serial" and be.num_threads == 1 and be.budget == 1
    assert be.describe_path(64, 512).startswith("serial x1")


def test_describe_path_follows_the_dispatch_rule():
    import numba

    be = NumbaBackend(num_threads=2)
    two = numba.config.NUMBA_NUM_THREADS >= 2
    assert be.describe_path(1, 32).startswith("serial+bulk x1")      # tiny H: serial
    assert be.describe_path(16, 64).startswith("serial x1")
    if two:
        assert be.describe_path(1, 256).startswith("team+bulk x2")   # small B: bulk input product
        assert be.describe_path(16, 256).startswith("team x2")
        assert be.describe_path(16, 1024).startswith("team+bulk x2")
        assert be.describe_path(64, 512, np.float64).startswith("team x2")
    assert "own micro-kernel" in be.describe_path(4, 256)
    assert NumbaBackend(num_threads=1).describe_path(64, 512).startswith("serial x1")
    # short sequences run as cell steps; the cell's own path
    assert be.describe_path(1, 256, steps=2, input_size=128).startswith("cell steps x")
    assert be.describe_path(1, 256, steps=3, input_size=128).startswith("team+bulk x" if two else "serial+bulk x")
    assert be.describe_path(1, 256, input_size=128, cell=True) == f"cell x{2 if two else 1}, own micro-kernel"
    assert be.describe_path(1, 64, input_size=16, cell=True) == "cell x1, own micro-kernel"
    on_mkl = NumbaBackend()
    on_mkl.gemm = "mkl"   # (whether MKL is installed or not: only the path's name is asked)
    assert on_mkl.describe_path(1, 64, input_size=16, cell=True) == \
        "cell x1, own micro-kernel (gemm='mkl' has no cell kernel)"
    assert on_mkl.describe_path(16, 256, steps=2).endswith("MKL packed GEMM")   # no cell steps on MKL


# ---------------------------------------------------------------------------------------- every path
# sizes that give real teams (several panels: U = 16 float32 / 8 float64 units each), more rows than
# one micro-kernel call takes (6), ragged lengths including 0 and T, both directions
PATH_CASES = [
    dict(size=(7, 9, 5, 40), lengths="random", reverse=False),
    dict(size=(6, 3, 8, 33), lengths="random", reverse=True),
    dict(size=(5, 2, 1, 70), lengths=None, reverse=True, proj_size=20),
    dict(size=(6, 7, 6, 48), lengths="random", reverse=False, proj_size=70, peephole=True),
    dict(size=(4, 3, 9, 24), lengths="random", reverse=True, peephole=True, clip=0.7, input_forget=True),
]


def _case(case, dtype, seed):
    t, b, i, h = case["size"]
    p = random_problem(t, b, i, h, dtype=dtype, seed=seed, lengths=case["lengths"], reverse=case["reverse"])
    params = _full_params(p, case.get("proj_size", 0), case.get("peephole", False), seed=seed)
    s = case.get("proj_size") or h
    h0 = np.random.default_rng(seed).uniform(-1, 1, (b, s)).astype(dtype)
    options = {k: case[k] for k in ("clip", "input_forget") if k in case}
    return p, params, h0, options


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", range(len(PATH_CASES)))
def test_every_path_matches_the_reference_and_the_others_bit_for_bit(case, dtype):
    """Each forced kind (and 1, 2 or the default number of threads) equals the float64 reference,
    and all of them give exactly the same bits; so does the cell, step by step."""
    case = PATH_CASES[case]
    p, params, h0, options = _case(case, dtype, seed=11)
    ref = _reference(p, params, h0, **options)
    results = {}
    for kind in FORCED:
        for threads in (None, 1, 2):
            be = NumbaBackend(num_threads=threads, kind=kind)
            got = be.forward(p.x, params, h0, p.c0, lengths=p.lengths, reverse=p.reverse, **options)
            label = f"{kind} threads={threads}"
            for g, r, n in zip(got, ref, ("y", "h_n", "c_n")):
                assert_close(g, r, dtype=dtype, name=n, context=f"{label} {case}")
            results[label] = [a.copy() for a in got]
    first = next(iter(results.values()))
    for label, got in results.items():
        for a, b, n in zip(got, first, ("y", "h_n", "c_n")):
            np.testing.assert_array_equal(a, b, err_msg=f"{n}: {label} differs from {next(iter(results))}")
    if not p.reverse and case["lengths"] is None:  # the cell, step by step, equals the sequence
        be = NumbaBackend()
        h, c = h0.copy(), p.c0.copy()
        for t in range(p.x.shape[0]):
            be.cell(p.x[t], h, c, params, out=(h, c), **options)
        np.testing.assert_array_equal(h, first[1])
        np.testing.assert_array_equal(c, first[2])


@pytest.mark.parametrize("dtype", DTYPES)
def test_cell_equals_a_one_step_forward_bit_for_bit(dtype):
    for k, (b, i, h, proj, peep) in enumerate([(1, 7, 40, 0, False), (6, 3, 33, 0, True), (5, 4, 24, 70, True)]):
        p = random_problem(1, b, i, h, dtype=dtype, seed=k)
        params = _full_params(p, proj, peep, seed=k)
        h0 = np.random.default_rng(k).uniform(-1, 1, (b, proj or h)).astype(dtype)
        options = {"clip": 0.9} if peep else {}
        cell = NumbaBackend().cell(p.x[0], h0, p.c0, params, **options)
        for kind in FORCED:
            _, h_n, c_n = NumbaBackend(kind=kind).forward(p.x, params, h0, p.c0, **options)
            np.testing.assert_array_equal(cell[0], h_n, err_msg=f"h: cell vs forward {kind}")
            np.testing.assert_array_equal(cell[1], c_n, err_msg=f"c: cell vs forward {kind}")
        ref = reference_cell(p.x[0], h0, p.c0, params, **options)
        assert_close(cell[0], ref[0], dtype=dtype, name="h")


@pytest.mark.parametrize("dtype", DTYPES)
def test_team_cell_equals_the_serial_cell_bit_for_bit(dtype):
    """The cell's hidden split over a team (``cell_team_entry``) gives the serial cell's bits,
    with fresh outputs and in place (``out=(h, c)``: every worker reads all of h), with
    peepholes and clip, over several row blocks and a partial last panel."""
    if NumbaBackend().budget < 2:
        pytest.skip("needs a thread budget of 2 (NUMBA_NUM_THREADS >= 2) for the team cell")
    for k, (b, i, h, peep) in enumerate([(1, 128, 256, False), (6, 20, 72, True), (9, 3, 100, False)]):
        p = random_problem(1, b, i, h, dtype=dtype, seed=40 + k)
        params = _full_params(p, 0, peep, seed=k)
        options = {"clip": 0.7} if peep else {}
        team, serial = NumbaBackend(kind="team"), NumbaBackend(kind="serial")
        assert team._cell_workers(b, i, h, np.dtype(dtype), False) == 2
        assert serial._cell_workers(b, i, h, np.dtype(dtype), False) == 1
        expected = serial.cell(p.x[0], p.h0, p.c0, params, **options)
        got = team.cell(p.x[0], p.h0, p.c0, params, **options)
        hh, cc = p.h0.copy(), p.c0.copy()
        team.cell(p.x[0], hh, cc, params, out=(hh, cc), **options)
        for name, a, e in (("h", got[0], expected[0]), ("c", got[1], expected[1]), ("h in place", hh, expected[0]),
                           ("c in place", cc, expected[1])):
            np.testing.assert_array_equal(a, e, err_msg=name)
        assert_close(got[0], reference_cell(p.x[0], p.h0, p.c0, params, **options)[0], dtype=dtype, name="h")
    auto = NumbaBackend()
    assert auto._cell_workers(1, 128, 256, np.dtype(np.float32), False) == 2  # streaming at H=256: the team
    assert auto._cell_workers(1, 16, 64, np.dtype(np.float32), False) == 1  # too little work to split
    assert auto._cell_workers(1, 128, 256, np.dtype(np.float32), True) == 1  # a projection: one worker


@pytest.mark.parametrize("dtype", DTYPES)
def test_short_sequences_run_as_cells_with_the_packed_paths_bits(dtype):
    """``auto`` runs T <= SHORT_STEPS as cell steps (no packing): bitwise the packed serial path,
    forwards and reversed, with a projection and with peepholes + clip, h_n given as h0."""
    from lstm_backends.backends.numba_backend import SHORT_STEPS

    for k, (t, b, i, h, proj, peep) in enumerate([(1, 1, 128, 256, 0, False), (2, 5, 7, 72, 0, True),
                                                   (SHORT_STEPS, 3, 4, 40, 24, True)]):
        p = random_problem(t, b, i, h, dtype=dtype, seed=60 + k)
        params = _full_params(p, proj, peep, seed=k)
        h0 = np.random.default_rng(k).uniform(-1, 1, (b, proj or h)).astype(dtype)
        options = {"clip": 0.8} if peep else {}
        for reverse in (False, True):
            expected = NumbaBackend(kind="serial").forward(p.x, params, h0, p.c0, reverse=reverse, **options)
            got = NumbaBackend().forward(p.x, params, h0, p.c0, reverse=reverse, **options)
            for name, a, e in zip(("y", "h_n", "c_n"), got, expected):
                np.testing.assert_array_equal(a, e, err_msg=f"{name} T={t} reverse={reverse}")
            hh, cc = h0.copy(), p.c0.copy()  # the state updated in place
            y = np.empty_like(expected[0])
            NumbaBackend().forward(p.x, params, hh, cc, reverse=reverse, out=(y, hh, cc), **options)
            np.testing.assert_array_equal(hh, expected[1])
            np.testing.assert_array_equal(y, expected[0])


def test_teams_of_one_two_and_three_workers_agree_bit_for_bit():
    """Team sizes 1, 2, 3 (NUMBA_NUM_THREADS=3 in a fresh process; on 2 cores the third worker
    shares one): identical bits, and the team really formed."""
    out = _run(
        """
        import numpy as np
        from lstm_backends.backends.numba_backend import NumbaBackend, last_team_size
        from lstm_backends.testing import random_problem
        for dtype in (np.float32, np.float64):
            p = random_problem(9, 7, 6, 72, dtype=dtype, seed=5, lengths="random", reverse=True)
            first = None
            for kind in ("team", "team+bulk"):
                for threads in (1, 2, 3):
                    be = NumbaBackend(num_threads=threads, kind=kind)
                    for attempt in range(50):  # a busy machine may keep the team from forming
                        got = [a.copy() for a in p.forward(be)]
                        be._solo_until = 0.0
                        if last_team_size() == threads:
                            break
                    assert last_team_size() == threads, (kind, threads, last_team_size())
                    first = first or got
                    for a, b in zip(got, first):
                        assert np.array_equal(a, b), (dtype, kind, threads)
        print("ok")
        """, NUMBA_NUM_THREADS="3")
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]
    assert out.stdout.strip().endswith("ok")


def test_a_team_that_does_not_form_runs_solo_with_the_same_bits():
    """Both iterations of the region on one thread (numba threads = 1): the first worker gives
    up waiting, does everything alone, the second leaves; the results do not change."""
    import numba

    from lstm_backends.backends import _numba as k

    p = random_problem(6, 3, 5, 40, dtype=np.float32, seed=2, lengths="random")
    expected = [a.copy() for a in p.forward(NumbaBackend(kind="serial"))]
    y, h_n, c_n = np.zeros_like(p.x[:, :, :1].repeat(40, 2)), np.empty((3, 40), np.float32), \
        np.empty((3, 40), np.float32)
    dummy = np.zeros((0, 0), np.float32)
    wsf, wsi = nbb._aligned_empty(1 << 16, np.float32), np.zeros(1 << 14, np.int64)
    fn = k.worker(np.float32).address
    w_ih, w_hh, b_ih, b_hh = p.params[:4]
    assert k.forward_entry(p.x, w_ih, w_hh, b_ih, b_hh, dummy, dummy, p.h0, p.c0, p.lengths, h_n, c_n,
                           y.ctypes.data, 3 * 40, 40, False, 0, 0.0, False, 2, 20_000, wsf, wsi, fn, False, 0, 0,
                           0, *nbb._NO_PANELS[np.dtype(np.float32)], False) == (0, 0)
    old = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        k.run_team(fn, np.float32(0), wsi.ctypes.data, 2)
    finally:
        numba.set_num_threads(old)
    assert wsi[k.NARGS + k.W_TEAM] == 1
    for a, b in zip((y, h_n, c_n), expected):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("peephole", [False, True])
def test_team_cell_on_any_number_of_threads_is_the_serial_cell(peephole):
    """The team cell's workers never wait for each other: its region run on one thread (every
    iteration in turn), or on more, gives the one-thread cell bit for bit, h_out aliasing h
    included (the last worker to finish copies h)."""
    import numba

    from lstm_backends.backends import _numba as k

    p = random_problem(1, 6, 24, 70, dtype=np.float32, seed=5, peephole=peephole)
    w_ih, w_hh, b_ih, b_hh = p.params[:4]
    dummy = np.zeros((0, 0), np.float32)
    w_peep = dummy if p.params.w_peep is None else p.params.w_peep
    x = p.x[0]
    h_ref, c_ref = np.empty_like(p.h0), np.empty_like(p.c0)
    scratch = nbb._aligned_empty(1 << 16, np.float32)
    assert k.cell_entry(x, p.h0, p.c0, w_ih, w_hh, b_ih, b_hh, dummy, w_peep, h_ref, c_ref, 1 if peephole else 0,
                        0.0, scratch) == 0
    fn = k.cell_worker(np.float32).address
    old = numba.get_num_threads()
    try:
        for threads, n in ((1, 3), (min(2, old), 2), (min(2, old), 5)):
            h, c = p.h0.copy(), p.c0.copy()
            words = np.zeros(k.NARGS + k.SYNC_LEN, np.int64)
            numba.set_num_threads(threads)
            assert k.cell_team_entry(x, h, c, w_ih, w_hh, b_ih, b_hh, w_peep, h, c, 1 if peephole else 0, 0.0,
                                     scratch, words, n, fn) == 0
            numba.set_num_threads(old)
            assert words[k.NARGS] == n  # every worker ran, once
            np.testing.assert_array_equal(h, h_ref)
            np.testing.assert_array_equal(c, c_ref)
    finally:
        numba.set_num_threads(old)


@pytest.mark.parametrize("kind", FORCED)
def test_weights_changed_in_place_are_used(kind):
    """Packing happens on every call: an in-place change of any weight shows in the next call."""
    p = random_problem(5, 3, 6, 40, dtype=np.float32, seed=4)
    params = _full_params(p, 24, True, seed=4)
    be = NumbaBackend(kind=kind)
    h0 = np.ascontiguousarray(p.h0[:, :24])
    before = [a.copy() for a in be.forward(p.x, params, h0, p.c0)]
    for w in (params.w_ih, params.w_hh, params.b_ih, params.w_hr, params.w_peep):
        w *= np.float32(1.25)
        got = be.forward(p.x, params, h0, p.c0)
        ref = _reference(p, params, h0)
        assert not np.array_equal(got[0], before[0])
        assert_close(got[0], ref[0], dtype=np.float32, name="y", context=kind)
        before = [a.copy() for a in got]


def test_y_inside_a_wider_array_and_in_place_state():
    """forward_layers writes each direction into its part of the layer output; h_n/c_n may be h0/c0."""
    p = random_problem(6, 4, 5, 40, dtype=np.float32, seed=8, lengths="random")
    be = NumbaBackend()
    layers = [[p.params, random_params(5, 40, rng=9)]]
    y, h_n, c_n = be.forward_layers(p.x, layers, lengths=p.lengths)
    ref = lb.get_backend("numpy").forward_layers(p.x.astype(np.float64),
                                                  [[lb.LSTMParams(*(a.astype(np.float64) for a in q[:4]))
                                                    for q in layers[0]]], lengths=p.lengths)
    for g, r, n in zip((y, h_n, c_n), ref, ("y", "h_n", "c_n")):
        assert_close(g, r, dtype=np.float32, name=n)
    h, c = p.h0.copy(), p.c0.copy()
    expected = be.forward(p.x, p.params, p.h0, p.c0)
    got = be.forward(p.x, p.params, h, c, out=(np.empty_like(expected[0]), h, c))
    np.testing.assert_array_equal(got[1], expected[1])
    np.testing.assert_array_equal(h, expected[1])


# ---------------------------------------------------------------------------------------- cell
def test_cell_with_out_allocates_no_arrays():
    be = NumbaBackend()
    hidden = 1024
    params = random_params(64, hidden, rng=0)
    x = np.ones((2, 64), np.float32)
    h, c = np.zeros((2, hidden), np.float32), np.zeros((2, hidden), np.float32)
    be.cell(x, h, c, params, out=(h, c))  # compile and create the per-thread scratch
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    for _ in range(50):
        be.cell(x, h, c, params, out=(h, c))
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    # one (B, H) float32 array is 8 KiB, (B, 4H) 32 KiB; NumPy reports its buffers to
    # tracemalloc, so any array allocated per call would show (small Python objects do not)
    assert peak < 4096, f"cell(out=...) allocated {peak} bytes"


# ---------------------------------------------------------------------------------------- threads
THREADS_CODE = """
import os, sys, threading
import numpy as np
import numba
import lstm_backends as lb
from lstm_backends.backends.numba_backend import NumbaBackend, _Threads
from lstm_backends.testing import random_problem
problems = [random_problem(12, b, 8, h, seed=s, lengths="random") for s, (b, h) in
            enumerate([(1, 40), (3, 72), (20, 40), (40, 33)] * 2)]
backends = [NumbaBackend(kind=k) for k in ("team", "team+bulk", "auto")]
serial = NumbaBackend(kind="serial")
expected = [[a.copy() for a in p.forward(serial)] for p in problems]
cell_p = problems[2]
cell_expected = serial.cell(cell_p.x[0], cell_p.h0, cell_p.c0, cell_p.params)
errors = []
def work(k):
    try:
        for r in range(12):
            j = (k + r) % len(problems)
            got = problems[j].forward(backends[(k + r) % 3])
            for a, b in zip(got, expected[j]):
                if not np.array_equal(a, b):
                    errors.append(f"thread {k}: forward differs")
            h, c = backends[0].cell(cell_p.x[0], cell_p.h0, cell_p.c0, cell_p.params)
            if not (np.array_equal(h, cell_expected[0]) and np.array_equal(c, cell_expected[1])):
                errors.append(f"thread {k}: cell differs")
    except Exception as exc:
        errors.append(repr(exc))
threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
[t.start() for t in threads]
[t.join() for t in threads]
print("layer", numba.threading_layer(), _Threads.layer, "errors", len(errors), errors[:3])
sys.exit(1 if errors else 0)
"""


def _tbb_env():
    env = {"NUMBA_THREADING_LAYER": "tbb"}
    lib = os.path.join(sys.prefix, "lib")
    if os.path.isdir(lib):
        env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (lib, os.environ.get("LD_LIBRARY_PATH")) if p)
    return env


@pytest.mark.parametrize("layer", ["omp", "tbb", "workqueue"])
def test_eight_python_threads_never_abort_and_agree_with_serial_calls(layer):
    env = _tbb_env() if layer == "tbb" else {"NUMBA_THREADING_LAYER": layer}
    if layer != "workqueue":
        probe = _run("""
            import numpy as np
            from numba import njit, prange, threading_layer
            @njit(parallel=True)
            def f(a):
                for i in prange(a.shape[0]):
                    a[i] += 1
            f(np.zeros(4))
            print(threading_layer())
            """, **env)
        if probe.returncode != 0:
            pytest.skip(f"numba cannot load the {layer} threading layer here: {probe.stderr.strip()[-300:]}")
    out = _run(THREADS_CODE, **env)
    assert out.returncode == 0, f"rc={out.returncode}\nstdout={out.stdout}\nstderr={out.stderr[-2000:]}"
    assert f"layer {layer} {layer} errors 0" in out.stdout, out.stdout


# ---------------------------------------------------------------------------------------- float64 math
def _ref64(which, x):
    xl = x.astype(np.longdouble)
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        if which == 0:
            return np.tanh(xl)
        if which == 1:
            return 1 / (1 + np.exp(-xl))
        return np.exp(xl)


@pytest.mark.skipif(np.finfo(np.longdouble).eps >= 1e-18, reason="needs an extended-precision longdouble reference")
@pytest.mark.parametrize("which, name", [(0, "tanh64"), (1, "sigmoid64"), (2, "exp64")])
def test_float64_math_is_accurate_over_the_whole_range(which, name):
    """tanh64 / sigmoid64 / exp64 of the float64 gate update: <= 1e-15 relative error wherever the
    result is a normal number (one subnormal ulp where it is subnormal), exact special values."""
    from lstm_backends.backends import _numba as k

    rng = np.random.default_rng(which)
    mags = np.geomspace(1e-310, 800, 200_000)
    bits = rng.integers(0, 0x7FF0000000000000, 100_000, dtype=np.int64).view(np.float64)   # all finite
    x = np.concatenate([mags, -mags, rng.uniform(-40, 40, 100_000), bits, -bits,
                        np.float64([0.1740, 0.4102, -13.86, 709.78, -708.4, -745.2])])
    out = np.empty_like(x)
    k.math64_apply(which, x, out)
    ref = _ref64(which, x)
    tiny = np.finfo(np.float64).tiny
    normal = np.abs(ref) >= tiny
    finite = np.isfinite(ref) & (np.abs(ref) <= np.finfo(np.float64).max)
    rel = np.abs(out[normal & finite].astype(np.longdouble) - ref[normal & finite]) / np.abs(ref[normal & finite])
    assert rel.max() <= 1e-15, f"{name}: max rel error {float(rel.max()):.3g} at x={x[normal & finite][rel.argmax()]!r}"
    sub = ~normal
    assert np.all(np.abs(out[sub].astype(np.longdouble) - ref[sub]) <= 2.0 ** -1074), name
    over = ~finite & np.isfinite(x)
    assert np.all(np.isinf(out[over])), name
    special = np.float64([np.inf, -np.inf, np.nan, -np.nan, 0.0, -0.0, 5e-324, -5e-324])
    got = np.empty_like(special)
    k.math64_apply(which, special, got)
    expected = {0: [1.0, -1.0, np.nan, np.nan, 0.0, -0.0, 5e-324, -5e-324],
                1: [1.0, 0.0, np.nan, np.nan, 0.5, 0.5, 0.5, 0.5],
                2: [np.inf, 0.0, np.nan, np.nan, 1.0, 1.0, 1.0, 1.0]}[which]
    np.testing.assert_array_equal(got, expected)
    assert np.array_equal(np.signbit(got[4:6]), np.signbit(np.float64(expected[4:6])))


# ---------------------------------------------------------------------------------------- MKL
def _mkl_or_skip():
    from lstm_backends.backends import _mkl

    if not _mkl.available():
        pytest.skip(f"MKL: {_mkl.info()}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_mkl_gemm_matches_the_reference_and_is_deterministic(dtype):
    _mkl_or_skip()
    for case in PATH_CASES:
        p, params, h0, options = _case(case, dtype, seed=3)
        ref = _reference(p, params, h0, **options)
        be = NumbaBackend(gemm="mkl")
        first = [a.copy() for a in be.forward(p.x, params, h0, p.c0, lengths=p.lengths, reverse=p.reverse,
                                              **options)]
        again = be.forward(p.x, params, h0, p.c0, lengths=p.lengths, reverse=p.reverse, **options)
        for g, a, r, n in zip(first, again, ref, ("y", "h_n", "c_n")):
            assert_close(g, r, dtype=dtype, name=n, context=f"gemm=mkl {case}")
            np.testing.assert_array_equal(g, a)
    assert "MKL packed GEMM" in NumbaBackend(gemm="mkl").describe_path(16, 256)


def test_mkl_refused_when_already_initialised_threaded():
    """Another library loaded this MKL first with a threaded layer: gemm='mkl' is refused, never
    run with MKL threads inside the team's threads."""
    _mkl_or_skip()
    from lstm_backends.backends import _mkl

    out = _run(f"""
        import ctypes, os
        lib = ctypes.CDLL({_mkl.load().path!r}, mode=os.RTLD_LOCAL)
        lib.MKL_Set_Threading_Layer.argtypes = [ctypes.c_int]
        lib.MKL_Set_Threading_Layer(0)     # INTEL
        lib.MKL_Get_Max_Threads()          # initialises MKL
        import lstm_backends as lb
        from lstm_backends.backends.numba_backend import NumbaBackend
        try:
            NumbaBackend(gemm="mkl")
        except lb.BackendUnavailableError as exc:
            print("refused:", exc)
        """)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "refused:" in out.stdout and "threaded layer" in out.stdout


# ---------------------------------------------------------------------------------------- training
# (the conformance kit's backward checks run on every forced kind too: NAME[kind])
TRAIN_CASES = [
    dict(size=(7, 9, 5, 40), lengths="random"),
    dict(size=(6, 3, 8, 33), lengths="random", reverse=True),
    dict(size=(5, 8, 6, 70), lengths=None),
    dict(size=(6, 7, 6, 48), lengths="random", peephole=True),
    dict(size=(4, 3, 9, 24), lengths="random", reverse=True, peephole=True, clip=0.7, input_forget=True),
    dict(size=(5, 4, 3, 20), lengths=None, reverse=True, clip=0.5),
    dict(size=(5, 2, 1, 70), lengths=None, reverse=True, proj_size=20),
    dict(size=(6, 7, 6, 48), lengths="random", proj_size=70, peephole=True),
    dict(size=(4, 9, 5, 33), lengths="random", reverse=True, proj_size=5, peephole=True, clip=0.6,
         input_forget=True),
]
GRAD_NAMES = ("dx", "dh0", "dc0", *(f"d{n}" for n in lb.LSTMParams._fields))


def _flat_grads(g):
    return [a for a in (g.dx, g.dh0, g.dc0, *g.dparams)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", range(len(TRAIN_CASES)))
def test_training_on_every_path_matches_the_reference_and_the_others_bit_for_bit(case, dtype):
    """forward_train's outputs are forward's, bit for bit, on each forced kind and thread count;
    backward equals the float64 reference, and gives the same bits on every kind and thread count,
    twice on one tape, and again after a second forward_train."""
    t, b, i, h = TRAIN_CASES[case]["size"]
    kw = {k: v for k, v in TRAIN_CASES[case].items() if k != "size"}
    p = random_problem(t, b, i, h, dtype=dtype, seed=31 + case, **kw)
    grads = p.output_grads()
    ref = reference_backward(p, *grads)
    results = {}
    for kind in FORCED:
        for threads in (None, 1, 2):
            be = NumbaBackend(num_threads=threads, kind=kind)
            label = f"{kind} threads={threads}"
            y, h_n, c_n, tape = p.forward_train(be)
            for a, e, n in zip((y, h_n, c_n), p.forward(be), ("y", "h_n", "c_n")):
                np.testing.assert_array_equal(a, e, err_msg=f"forward_train's {n} is not forward's [{label}]")
            g = _flat_grads(be.backward(tape, *grads))
            for a, e, n in zip(g, _flat_grads(ref), GRAD_NAMES):
                if e is not None:
                    assert_close(a, e, dtype=dtype, name=n, context=f"{label} {TRAIN_CASES[case]}")
            again = _flat_grads(be.backward(tape, *grads))
            fresh = _flat_grads(be.backward(p.forward_train(be)[3], *grads))
            for a, a2, a3, n in zip(g, again, fresh, GRAD_NAMES):
                if a is not None:
                    np.testing.assert_array_equal(a, a2, err_msg=f"{n}: second backward on one tape [{label}]")
                    np.testing.assert_array_equal(a, a3, err_msg=f"{n}: after a second forward_train [{label}]")
            results[label] = g
    first_label, first = next(iter(results.items()))
    for label, g in results.items():
        for a, e, n in zip(g, first, GRAD_NAMES):
            if a is not None:
                np.testing.assert_array_equal(a, e, err_msg=f"{n}: {label} differs from {first_label}")


def test_backward_teams_of_one_two_and_three_workers_agree_bit_for_bit():
    """Backward on teams of 1, 2 and 3 (NUMBA_NUM_THREADS=3 in a fresh process), with and without a
    projection: the same bits, and the team really formed."""
    out = _run(
        """
        import numpy as np
        from lstm_backends.backends.numba_backend import NumbaBackend, last_team_size
        from lstm_backends.testing import random_problem
        for dtype in (np.float32, np.float64):
            for proj in (0, 80):
                p = random_problem(9, 7, 6, 150, dtype=dtype, seed=5, lengths="random", reverse=True,
                                   peephole=True, proj_size=proj)
                grads = p.output_grads()
                tape = p.forward_train(NumbaBackend(kind="serial"))[3]
                first = None
                for threads in (1, 2, 3):
                    be = NumbaBackend(num_threads=threads, kind="team")
                    for attempt in range(50):  # a busy machine may keep the team from forming
                        g = be.backward(tape, *grads)
                        got = [a.copy() for a in (g.dx, g.dh0, g.dc0, *g.dparams) if a is not None]
                        be._solo_until = 0.0
                        if last_team_size() == threads:
                            break
                    assert last_team_size() == threads, (threads, last_team_size())
                    first = first or got
                    for a, b in zip(got, first):
                        assert np.array_equal(a, b), (dtype, proj, threads)
        print("ok")
        """, NUMBA_NUM_THREADS="3")
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]
    assert out.stdout.strip().endswith("ok")


def test_backward_memory_does_not_grow_with_steps_beyond_its_outputs():
    """tracemalloc: once the workspace holds the longer call's scratch (dz of every step: allocated
    once per call size, reused), a backward's peak grows with T only by dx, which the base class
    allocates; nothing is allocated per step."""
    be = NumbaBackend()
    problems = {steps: random_problem(steps, 4, 16, 32, dtype=np.float64, seed=19) for steps in (40, 80)}
    tapes = {steps: (p.forward_train(be)[3], p.output_grads()) for steps, p in problems.items()}
    be.backward(tapes[80][0], *tapes[80][1])  # compiles, and grows the workspace for T=80
    peaks = {}
    for steps in (40, 80):
        tracemalloc.start()
        try:
            be.backward(tapes[steps][0], *tapes[steps][1])
            peaks[steps] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    dx_growth = 40 * 4 * 16 * 8
    assert peaks[80] - peaks[40] <= dx_growth + 16 * 1024, (peaks, dx_growth)
    assert peaks[80] <= 80 * 4 * 16 * 8 + 64 * 1024, peaks  # dx and the small outputs: no scratch



@pytest.mark.parametrize("dtype", DTYPES)
def test_forward_train_of_short_sequences_equals_their_cell_step_forward(dtype):
    """auto runs T <= 2 as cell steps; forward_train always takes a packed path (its gate update
    stores the tape): the outputs are bitwise the same."""
    be = NumbaBackend()
    for steps, batch in ((1, 1), (2, 3), (2, 16)):
        for kw in ({}, dict(proj_size=5, peephole=True, clip=0.8)):
            p = random_problem(steps, batch, 20, 40, dtype=dtype, seed=3, **kw)
            assert be.describe_path(batch, 40, dtype, steps=steps).startswith("cell steps")
            for a, b, n in zip(p.forward_train(be)[:3], p.forward(be), ("y", "h_n", "c_n")):
                np.testing.assert_array_equal(a, b, err_msg=f"{n}: T={steps} B={batch} {kw}")
