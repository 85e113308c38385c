"""lstm_backends.jit: the kernels called from the user's own @njit code, exactly as a user would.

The conformance kit's ``njit_*`` checks compare with the float64 reference; here: bitwise equality
with the numba backend (the same FMA chains), an autoregressive loop against the same loop over
``be.cell`` in Python, typing and shape errors, immutability, and a user's ``cache=True`` function
across an upgrade of the kernels.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

numba = pytest.importorskip("numba")

import lstm_backends as lb  # noqa: E402
from lstm_backends import jit as lj  # noqa: E402
from lstm_backends.testing import random_params  # noqa: E402

BE = lb.get_backend("numba")


@numba.njit
def user_steps(w, xs, h, c, ys):
    """A user's loop: T in-place steps, h kept after each."""
    for t in range(xs.shape[0]):
        lj.cell(xs[t], h, c, w, h, c)
        ys[t] = h


@numba.njit
def user_decode(w, x0, h, c, steps, out):
    """Autoregressive: the next input is the user's own function of h (correctly rounded in both
    worlds, so the comparison below can be bitwise)."""
    x = x0.copy()
    for t in range(steps):
        lj.cell(x, h, c, w, h, c)
        out[t] = h[0]
        x[0, 0] = h[0, 3] - h[0, 7]
        x[0, 1] = 2 * h[0, 1]


@numba.njit
def user_forward(w, x, h0, c0, y, h_n, c_n):
    lj.forward(x, w, h0, c0, y, h_n, c_n)


@numba.njit
def user_forward_lengths(w, x, h0, c0, y, h_n, c_n, lengths, reverse):
    lj.forward(x, w, h0, c0, y, h_n, c_n, lengths, reverse)


@numba.njit(parallel=True)
def user_particles(w, xs, h, c):
    for b in numba.prange(h.shape[0]):
        for t in range(xs.shape[0]):
            lj.cell(xs[t, b:b + 1], h[b:b + 1], c[b:b + 1], w, h[b:b + 1], c[b:b + 1])


CASES = [  # (B, I, H, P, peephole+clip+input_forget)
    (1, 4, 9, 0, False),
    (7, 6, 21, 0, False),
    (3, 5, 40, 13, False),
    (8, 3, 17, 0, True),
]


def _problem(b, i, h, p, feats, dtype, seed, t=6):
    params = random_params(i, h, dtype=dtype, rng=seed, proj_size=p, peephole=feats)
    rng = np.random.default_rng(seed + 1)
    s = p or h
    x = rng.standard_normal((t, b, i)).astype(dtype)
    h0 = rng.uniform(-1, 1, (b, s)).astype(dtype)
    c0 = rng.standard_normal((b, h)).astype(dtype)
    opts = {"clip": 0.9, "input_forget": True} if feats else {}
    return params, x, h0, c0, opts


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "B{}-I{}-H{}-P{}-{}".format(*c))
def test_step_loop_is_bitwise_the_backend_forward(case, dtype):
    params, x, h0, c0, opts = _problem(*case, dtype, seed=11)
    y, h_n, c_n = BE.forward(x, params, h0, c0, **opts)
    w = lj.prepare(params, **opts)
    h, c = h0.copy(), c0.copy()
    ys = np.empty_like(y)
    user_steps(w, x, h, c, ys)
    np.testing.assert_array_equal(ys, y)
    np.testing.assert_array_equal(h, h_n)
    np.testing.assert_array_equal(c, c_n)
    y2, h2, c2 = (np.full_like(a, np.nan) for a in (y, h_n, c_n))
    user_forward(w, x, h0, c0, y2, h2, c2)
    for got, ref in ((y2, y), (h2, h_n), (c2, c_n)):
        np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_with_lengths_and_state_in_place(reverse, dtype):
    params, x, h0, c0, _ = _problem(6, 5, 19, 0, False, dtype, seed=21, t=7)
    lengths = np.array([7, 0, 3, 7, 1, 5])
    y, h_n, c_n = BE.forward(x, params, h0, c0, lengths=lengths, reverse=reverse)
    w = lj.prepare(params)
    ys = np.full_like(y, np.nan)
    h, c = h0.copy(), c0.copy()
    user_forward_lengths(w, x, h, c, ys, h, c, lengths.astype(np.int32), reverse)   # h_n is h0, c_n is c0
    np.testing.assert_array_equal(ys, y)
    np.testing.assert_array_equal(h, h_n)
    np.testing.assert_array_equal(c, c_n)
    out = (np.full_like(y, np.nan), np.empty_like(h_n), np.empty_like(c_n))
    lj.forward(x, w, h0, c0, *out, lengths=lengths, reverse=reverse)     # from Python
    for got, ref in zip(out, (y, h_n, c_n)):
        np.testing.assert_array_equal(got, ref)


def test_autoregressive_loop_equals_the_same_loop_over_be_cell():
    params, _, h0, c0, _ = _problem(1, 2, 24, 0, False, np.float32, seed=31)
    x0 = np.full((1, 2), 0.3, np.float32)
    out = np.empty((50, 24), np.float32)
    h, c = h0.copy(), c0.copy()
    user_decode(lj.prepare(params), x0, h, c, 50, out)
    x, hp, cp = x0.copy(), h0.copy(), c0.copy()
    for t in range(50):
        BE.cell(x, hp, cp, params, out=(hp, cp))
        np.testing.assert_array_equal(out[t], hp[0], err_msg=f"step {t}")
        x[0, 0] = hp[0, 3] - hp[0, 7]
        x[0, 1] = 2 * hp[0, 1]
    np.testing.assert_array_equal(c, cp)


def test_prange_over_independent_sequences_equals_serial():
    params, x, h0, c0, _ = _problem(33, 4, 12, 0, False, np.float32, seed=41, t=5)
    w = lj.prepare(params)
    h, c = h0.copy(), c0.copy()
    user_particles(w, x, h, c)
    _, h_n, c_n = BE.forward(x, params, h0, c0)
    np.testing.assert_array_equal(h, h_n)
    np.testing.assert_array_equal(c, c_n)


def test_prepared_weights_are_a_read_only_copy():
    params = random_params(3, 8, rng=51)
    w = lj.prepare(params)
    assert isinstance(w, lj.JitWeights) and isinstance(w, tuple)
    assert all(not a.flags.writeable for a in w)
    with pytest.raises(ValueError, match="read-only"):
        w.w_hh[0, 0, 0] = 1.0
    x, h, c = np.ones((1, 3), np.float32), np.zeros((1, 8), np.float32), np.zeros((1, 8), np.float32)
    before = [np.empty_like(h), np.empty_like(c)]
    lj.cell(x, h, c, w, *before)
    for a in params[:4]:
        a *= 3.0                                   # the user edits the arrays afterwards ...
    after = [np.empty_like(h), np.empty_like(c)]
    lj.cell(x, h, c, w, *after)                    # ... and the prepared weights did not change
    np.testing.assert_array_equal(after[0], before[0])
    assert lj.prepare(params, dtype=np.float64).w_ih.dtype == np.float64


def test_float64_and_float32_are_separate_specialisations():
    p32 = random_params(3, 8, rng=52)
    w32, w64 = lj.prepare(p32), lj.prepare(p32, dtype=np.float64)
    xs = np.ones((2, 1, 3))
    h, c, ys = np.zeros((1, 8)), np.zeros((1, 8)), np.zeros((2, 1, 8))
    user_steps(w64, xs, h, c, ys)
    user_steps(w32, xs.astype(np.float32), h.astype(np.float32), c.astype(np.float32), ys.astype(np.float32))
    assert len(user_steps.signatures) >= 2


# ---------------------------------------------------------------------------- errors

def test_compiled_code_refuses_another_dtype_at_compile_time():
    w = lj.prepare(random_params(3, 8, rng=53))
    with pytest.raises(numba.core.errors.TypingError, match=r"float64 but the weights were prepared as float32"):
        user_steps(w, np.ones((2, 1, 3)), np.zeros((1, 8)), np.zeros((1, 8)), np.zeros((2, 1, 8)))


def test_compiled_code_refuses_other_weights_at_compile_time():
    p = random_params(3, 8, rng=54)
    with pytest.raises(numba.core.errors.TypingError, match=r"JitWeights"):
        user_steps(tuple(p[:4]), np.ones((2, 1, 3), np.float32), np.zeros((1, 8), np.float32),
                   np.zeros((1, 8), np.float32), np.zeros((2, 1, 8), np.float32))


@pytest.mark.parametrize("bad", ["x", "h", "c", "batch"])
def test_compiled_code_refuses_wrong_shapes_without_touching_memory(bad):
    w = lj.prepare(random_params(4, 9, rng=55))
    shapes = {"x": (2, 3, 4), "h": (3, 9), "c": (3, 9)}
    if bad == "batch":
        shapes["h"] = (2, 9)
    else:
        shapes[bad] = shapes[bad][:-1] + (shapes[bad][-1] + 1,)
    xs = np.ones(shapes["x"], np.float32)
    h, c = np.full(shapes["h"], 5, np.float32), np.full(shapes["c"], 5, np.float32)
    ys = np.full((2,) + shapes["h"], 5, np.float32)
    with pytest.raises(ValueError, match=r"lstm_backends\.jit\.cell: "):
        user_steps(w, xs, h, c, ys)
    assert (h == 5).all() and (c == 5).all() and (ys == 5).all()


def test_compiled_forward_refuses_bad_lengths():
    w = lj.prepare(random_params(4, 9, rng=56))
    x = np.ones((3, 2, 4), np.float32)
    h, c, y = np.zeros((2, 9), np.float32), np.zeros((2, 9), np.float32), np.zeros((3, 2, 9), np.float32)
    with pytest.raises(ValueError, match=r"every length must be in \[0, T\]"):
        user_forward_lengths(w, x, h, c, y, h, c, np.array([4, 1]), False)
    with pytest.raises(ValueError, match=r"lengths must have shape \(B,\)"):
        user_forward_lengths(w, x, h, c, y, h, c, np.array([3]), False)


def test_python_calls_validate_fully():
    p = random_params(4, 9, rng=57)
    w = lj.prepare(p)
    x, h, c = np.ones((2, 4), np.float32), np.zeros((2, 9), np.float32), np.zeros((2, 9), np.float32)
    with pytest.raises(TypeError, match=r"x is float64 but the weights were prepared as float32: use x.astype"):
        lj.cell(x.astype(np.float64), h, c, w, h, c)
    with pytest.raises(ValueError, match=r"h must have shape \(2, 9\); got \(2, 8\)"):
        lj.cell(x, h[:, :8].copy(), c, w, h, c)
    with pytest.raises(ValueError, match="overlaps input x"):
        buf = np.zeros(18, np.float32)
        lj.cell(buf[:8].reshape(2, 4), h, c, w, buf.reshape(2, 9), c)
    with pytest.raises(TypeError, match="JitWeights"):
        lj.cell(x, h, c, p, h, c)
    with pytest.raises(ValueError, match="C-contiguous"):
        lj.cell(np.asfortranarray(np.ones((2, 4), np.float32)), h, c, w, h, c)
    with pytest.raises(ValueError, match="lengths"):
        lj.forward(np.ones((3, 2, 4), np.float32), w, h, c, np.zeros((3, 2, 9), np.float32), h, c,
                   lengths=[1, 5])


def test_prepare_errors():
    p = random_params(4, 9, rng=58)
    with pytest.raises(ValueError, match="clip must be a positive number"):
        lj.prepare(p, clip=-1.0)
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        lj.prepare(p, dtype=np.float16)
    with pytest.raises(ValueError, match=r"params.w_hh must have shape"):
        lj.prepare(p._replace(w_hh=p.w_hh[:, :5]))
    with pytest.raises(ValueError, match="use Backend.forward"):
        _too_large()


def _too_large():
    """A layer whose one-row block does not fit the stack buffer (H + S > 16,000 float64 units), built
    without allocating its (4H, H) recurrent weights: a projection to P = 1."""
    h = 16500
    params = (np.zeros((4 * h, 1)), np.zeros((4 * h, 1)), None, None, np.zeros((1, h)))
    lj.prepare(params)


def test_weights_of_another_version_are_refused():
    w = lj.prepare(random_params(3, 8, rng=59))
    meta = np.zeros(1, [(n, np.int64) for n in ("I", "H", "S", "P", "NP", "NPP", "split", "ks", "mr", "flags")]
                    + [("clip", np.float64), ("v_0000000000000000", np.int64)])
    old = w._replace(meta=meta)
    x, h = np.ones((1, 3), np.float32), np.zeros((1, 8), np.float32)
    with pytest.raises(ValueError, match="another version"):
        lj.cell(x, h, h.copy(), old, h, h.copy())
    with pytest.raises(numba.core.errors.TypingError, match="another version"):
        user_steps(old, x[None], h, h.copy(), h[None].copy())
    import pickle

    with pytest.raises(ValueError, match="another version"):   # unpickled: refused when used, not before
        lj.cell(x, h, h.copy(), pickle.loads(pickle.dumps(old)), h, h.copy())


def test_a_users_function_calls_the_step_and_holds_none_of_it():
    """Compiling a user's function compiles only the wrappers: its code reaches the step of the
    weights' kind through the process-wide word named after the package stamp, and holds neither the
    micro-kernel nor the gate update (they are compiled once, in ``prepare``)."""
    from lstm_backends.backends._numba import jitstep

    w = lj.prepare(random_params(3, 8, rng=61))
    xs, h = np.ones((2, 1, 3), np.float32), np.zeros((1, 8), np.float32)
    user_steps(w, xs, h, h.copy(), np.empty((2, 1, 8), np.float32))
    code = "\n".join(user_steps.inspect_llvm().values())
    assert jitstep._symbol("plain", 32) in code
    assert "lstmb_mk_f" not in code and "lstmb_gate_f" not in code


PICKLED = """
import pickle, sys, numpy as np
import lstm_backends as lb
from lstm_backends import jit as lj
from lstm_backends.backends._numba import jitstep
assert not any(jitstep._ADDRESSES), "no step loaded before the weights are unpickled"
w, x, h0, c0, want = pickle.loads(sys.stdin.buffer.read())
assert all(a.ctypes.data % 64 == 0 and not a.flags.writeable for a in w), "aligned read-only copies"
y, h_n, c_n = np.empty_like(want), np.empty_like(h0), np.empty_like(c0)
lj.forward(x, w, h0, c0, y, h_n, c_n)
np.testing.assert_array_equal(y, want)
print("OK")
"""


def test_pickled_weights_work_in_a_fresh_process():
    """Unpickling ``JitWeights`` (a process of a dask or multiprocessing pool, say) gives aligned,
    read-only copies and loads their step kernel there: the same bits as the backend."""
    import pickle

    params, x, h0, c0, _ = _problem(3, 5, 19, 0, False, np.float64, seed=62, t=4)
    want = BE.forward(x, params, h0, c0)[0]
    blob = pickle.dumps((lj.prepare(params), x, h0, c0, want))
    out = subprocess.run([sys.executable, "-c", PICKLED], input=blob, capture_output=True, timeout=600)
    assert out.returncode == 0 and out.stdout.strip() == b"OK", out.stderr.decode()[-3000:]


def test_weights_whose_step_is_not_loaded_are_refused_not_called():
    """Weights built by hand (never through ``prepare`` or unpickling) in a process where their kind's
    step was never loaded: a ``ValueError``, never a call through a null address."""
    code = textwrap.dedent("""
        import numpy as np
        from lstm_backends import jit as lj
        from lstm_backends.backends._numba import embed
        from lstm_backends.testing import random_params
        w32 = lj.prepare(random_params(3, 8, rng=0))                 # loads the float32 step only
        w64 = embed.JitWeights(*(np.asarray(a, np.float64) if a.dtype == np.float32 else a for a in w32))
        h = np.zeros((1, 8))
        try:
            lj.cell(np.ones((1, 3)), h, h.copy(), w64, h, h.copy())
        except ValueError as exc:
            print("REFUSED", exc)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.startswith("REFUSED") and "not loaded in this process" in out.stdout, out.stdout


# ---------------------------------------------------------------------------- a user's cache=True function

USER_MODULE = '''
import numba, numpy as np
from lstm_backends import jit as lj

@numba.njit(cache=True)
def run(w, xs, h, c):
    for t in range(xs.shape[0]):
        lj.cell(xs[t], h, c, w, h, c)
    return h
'''

USER_CODE = """
import json, numpy as np
import lstm_backends, user_code
assert lstm_backends.__file__.startswith({root!r}), lstm_backends.__file__
from lstm_backends import jit as lj
from lstm_backends.testing import random_params
p = random_params(3, 9, dtype=np.float64, rng=7)
xs = np.random.default_rng(8).standard_normal((4, 2, 3))
h = user_code.run(lj.prepare(p), xs, np.zeros((2, 9)), np.zeros((2, 9)))
print(json.dumps({{"h": h.tolist(), "hits": sum(user_code.run.stats.cache_hits.values())}}))
"""


def test_a_users_cached_function_recompiles_after_an_upgrade(tmp_path):
    """A user's ``cache=True`` function holds our kernels' code; after an upgrade of the kernels
    (here an edit of the float64 tanh in nonlinear.py) it must not load that stale code: the new
    JitWeights type no longer matches its cache entry, so it recompiles with the new kernels."""
    src = Path(lb.__file__).parent
    site, cache = tmp_path / "site", tmp_path / "cache"

    def install():
        if site.exists():
            shutil.rmtree(site)
        shutil.copytree(src, site / "lstm_backends", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        (site / "user_code.py").write_text(USER_MODULE)

    def run():
        env = {**os.environ, "PYTHONPATH": str(site), "NUMBA_CACHE_DIR": str(cache)}
        env.pop("NUMBA_DISABLE_JIT", None)
        out = subprocess.run([sys.executable, "-c", textwrap.dedent(USER_CODE.format(root=str(site)))],
                             capture_output=True, text=True, env=env, timeout=600, cwd=str(site))
        assert out.returncode == 0, out.stderr[-4000:]
        return json.loads(out.stdout.strip().splitlines()[-1])

    install()
    first = run()
    p = random_params(3, 9, dtype=np.float64, rng=7)
    xs = np.random.default_rng(8).standard_normal((4, 2, 3))
    _, h_ref, _ = BE.forward(xs, p)
    np.testing.assert_array_equal(first["h"], h_ref)
    again = run()
    assert again["hits"] == 1, "an unchanged package: the user's function loads from its cache"
    assert again["h"] == first["h"]

    install()   # the upgrade: same place, same user file, the kernels' tanh changed
    nonlinear = site / "lstm_backends/backends/_numba/nonlinear.py"
    old = "def _ir_tanh64(vb, x):\n    b = vb.b\n    k = vb.const\n"
    assert nonlinear.read_text().count(old) == 1, "the test's edit needs updating"
    nonlinear.write_text(nonlinear.read_text().replace(old, old + "    x = b.fadd(x, k(1.0))  # edited\n"))
    upgraded = run()
    assert upgraded["hits"] == 0, "the user's cached entry holds the old kernels: it must not be used"
    assert np.abs(np.asarray(upgraded["h"]) - h_ref).max() > 1e-3, "the new kernels' result"
    assert run()["hits"] == 1, "and the recompiled function is cached in turn"


@pytest.mark.parametrize("kernel", ["pairs", "amx"])
def test_precision_modes_follow_the_backend_onto_its_pair_kernels(monkeypatch, kernel):
    """Where the backend multiplies the modes on bfloat16 pairs (``vdpbf16ps``, or AMX tiles; each
    emulated where the CPU lacks it, as forced here), ``lj.prepare`` holds the same pair panels
    (uint32 words for ``vdpbf16ps``, int32 for tiles) and the user's loop is bitwise the backend."""
    from lstm_backends.backends._numba import amx, bf16

    monkeypatch.setattr(bf16, "BF16_PAIRS", kernel == "pairs")
    monkeypatch.setattr(amx, "BF16_AMX", kernel == "amx")
    if kernel == "amx" and amx.HAS_AMX and not amx.permission():
        pytest.skip("this CPU has AMX but the OS refused this process the tile data")
    assert amx.bf16_kernel() == kernel
    for mode in ("bf16", "bf16x3"):
        params, x, h0, c0, opts = _problem(7, 37, 21, 0, True, np.float32, seed=90, t=4)
        y = BE.forward(x, BE.prepare(params, mode), h0, c0, **opts)[0]
        w = lj.prepare(params, precision=mode, **opts)
        assert w.w_ih.dtype == (np.uint32 if kernel == "pairs" else np.int32)
        ys = np.empty_like(y)
        user_steps(w, x, h0.copy(), c0.copy(), ys)
        np.testing.assert_array_equal(ys, y, err_msg=mode)


@pytest.mark.parametrize("mode", ["bf16", "bf16x3"])
def test_precision_modes_are_bitwise_the_backend_in_the_mode(mode):
    for k, (b, i, h, p, feats) in enumerate(CASES):
        params, x, h0, c0, opts = _problem(b, i, h, p, feats, np.float32, seed=70 + k)
        y, h_n, c_n = BE.forward(x, BE.prepare(params, mode), h0, c0, **opts)
        w = lj.prepare(params, precision=mode, **opts)
        hh, cc = h0.copy(), c0.copy()
        ys = np.empty_like(y)
        user_steps(w, x, hh, cc, ys)
        np.testing.assert_array_equal(ys, y)
        np.testing.assert_array_equal(cc, c_n)
        out = (np.empty_like(y), np.empty_like(h_n), np.empty_like(c_n))
        user_forward(w, x, h0, c0, *out)
        for got, ref in zip(out, (y, h_n, c_n)):
            np.testing.assert_array_equal(got, ref)
        h1, c1, c_in = np.empty_like(h0), np.empty_like(c0), c0.copy()
        lj.cell(x[0], h0, c_in, w, h1, c1)     # c_out distinct from c: c is left as it was
        np.testing.assert_array_equal(h1, ys[0])
        np.testing.assert_array_equal(c_in, c0)
    with pytest.raises(ValueError, match="takes float32 weights"):
        lj.prepare(random_params(3, 4, dtype=np.float64, rng=0), precision=mode)
    if mode == "bf16x3":   # a wider layer, its last panel partly empty (H = 200)
        params, x, h0, c0, opts = _problem(2, 30, 200, 0, True, np.float32, seed=77, t=3)
        y = BE.forward(x, BE.prepare(params, mode), h0, c0, **opts)[0]
        ys = np.empty_like(y)
        user_steps(lj.prepare(params, precision=mode, **opts), x, h0.copy(), c0.copy(), ys)
        np.testing.assert_array_equal(ys, y)
    with pytest.raises(ValueError, match="precision must be None or one of"):
        lj.prepare(random_params(3, 4, rng=0), precision="bf8")
