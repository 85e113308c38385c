"""The conformance suite: the checks every backend (built-in or plugin) must pass.

Each check takes a backend instance, compares it with the float64 ``numpy``
reference on random problems (random weights: constant ones hide swapped gates)
and returns its worst error as a fraction of the tolerance; a failure raises
``AssertionError`` saying where, by how much, and the seed that reproduces it.

Run all of them with :func:`run_conformance`, or under pytest with
``pytest --pyargs lstm_backends.testing --lstm-backend NAME``.

Problem sizes stay tiny (a few thousand threads at most) so that simulated
GPU backends finish quickly; big sizes belong to benchmarks and GPU scripts.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import numpy as np

from .._params import LSTMParams
from ._compare import _can, _dtypes, assert_close, to_host
from ._njit_checks import check_njit_cell, check_njit_errors, check_njit_forward, check_njit_prange
from ._precision_checks import check_bf16, check_bf16x3, check_prepared
from ._problems import random_params, random_problem, reference_backward, reference_cell, reference_forward

__all__ = ["CHECKS", "CheckResult", "ConformanceError", "run_conformance"]

# (T, B, I, H): a single everything, odd sizes, I != H, H not a multiple of 4 or 8.
SHAPES = [(1, 1, 1, 1), (7, 3, 5, 4), (5, 4, 8, 16), (3, 2, 17, 9)]


def _requires(*features: str) -> Callable[[Callable[[Any], float]], Callable[[Any], float]]:
    """Mark a check as applying only to backends with these capabilities."""
    def mark(check: Callable[[Any], float]) -> Callable[[Any], float]:
        check.requires = frozenset(features)  # type: ignore[attr-defined]
        return check
    return mark


def requirements(check: Callable[[Any], float]) -> frozenset[str]:
    """The capabilities a check needs (it is skipped on backends that lack one)."""
    return getattr(check, "requires", frozenset())


def _compare_forward(backend: Any, problem: Any, label: str = "") -> float:
    got = problem.forward(backend)
    ref = reference_forward(problem)
    ctx = f"{label}{backend.name}: {problem.describe()}"
    return max(
        assert_close(g, r, dtype=problem.dtype, name=n, context=ctx)
        for g, r, n in zip(got, ref, ("y", "h_n", "c_n"))
    )


@_requires('forward')
def check_forward(backend: Any) -> float:
    """``forward`` equals the reference over shapes and dtypes, with random ``h0``/``c0``."""
    worst = 0.0
    for k, (t, b, i, h) in enumerate(SHAPES):
        for dtype in _dtypes(backend):
            p = random_problem(t, b, i, h, dtype=dtype, seed=1000 + k)
            worst = max(worst, _compare_forward(backend, p))
    return worst


@_requires('forward')
def check_reverse(backend: Any) -> float:
    """``reverse=True`` equals the reference."""
    worst = 0.0
    for k, (t, b, i, h) in enumerate(SHAPES[1:]):
        for dtype in _dtypes(backend):
            p = random_problem(t, b, i, h, dtype=dtype, seed=2000 + k, reverse=True)
            worst = max(worst, _compare_forward(backend, p))
    return worst


@_requires('forward')
def check_default_state(backend: Any) -> float:
    """Omitted ``h0``/``c0`` mean zeros, and equal passing zeros explicitly."""
    worst = 0.0
    for dtype in _dtypes(backend):
        p = random_problem(6, 3, 5, 7, dtype=dtype, seed=3000, state=False)
        worst = max(worst, _compare_forward(backend, p))
        zeros = np.zeros((3, 7), dtype)
        explicit = backend.forward(p.x, p.params, zeros, zeros)
        implicit = p.forward(backend)
        for a, b, n in zip(explicit, implicit, ("y", "h_n", "c_n")):
            np.testing.assert_array_equal(to_host(a), to_host(b), err_msg=f"{n}: h0=None differs from zeros")
    return worst


@_requires('forward')
def check_lengths(backend: Any) -> float:
    """Variable lengths (including 0 and T), both directions: outputs past a row's length are 0,
    the final state is taken at the row's last valid step."""
    worst = 0.0
    for reverse in (False, True):
        for dtype in _dtypes(backend):
            p = random_problem(6, 5, 4, 8, dtype=dtype, seed=4000 + reverse, lengths="random", reverse=reverse)
            worst = max(worst, _compare_forward(backend, p))
            y = to_host(p.forward(backend)[0])
            for b, n in enumerate(p.lengths):
                assert not y[n:, b].any(), f"y[{n}:, {b}] must be 0 past lengths[{b}]={n} [{p.describe()}]"
            # lengths = T everywhere is the same as no lengths, bit for bit
            p_full = random_problem(6, 5, 4, 8, dtype=dtype, seed=4000 + reverse, reverse=reverse)
            with_lengths = backend.forward(p_full.x, p_full.params, p_full.h0, p_full.c0,
                                           lengths=np.full(5, 6), reverse=reverse)
            for a, b_, n in zip(with_lengths, p_full.forward(backend), ("y", "h_n", "c_n")):
                np.testing.assert_array_equal(to_host(a), to_host(b_),
                                              err_msg=f"{n}: lengths=T differs from lengths=None")
    return worst


@_requires('forward')
def check_row_independence(backend: Any) -> float:
    """Each batch row is computed independently: a row alone gives the same result as in a batch."""
    worst = 0.0
    for dtype in _dtypes(backend):
        p = random_problem(5, 4, 3, 6, dtype=dtype, seed=5000, lengths=[5, 2, 0, 4])
        y, h_n, c_n = (to_host(a) for a in p.forward(backend))
        for b in range(4):
            y_b, h_b, c_b = (
                to_host(a)
                for a in backend.forward(p.x[:, b : b + 1], p.params, p.h0[b : b + 1], p.c0[b : b + 1],
                                         lengths=p.lengths[b : b + 1])
            )
            ctx = f"{backend.name}: row {b} alone vs in batch [{p.describe()}]"
            worst = max(worst, assert_close(y_b[:, 0], y[:, b].astype(np.float64), dtype=dtype, name="y", context=ctx))
            worst = max(worst, assert_close(h_b[0], h_n[b].astype(np.float64), dtype=dtype, name="h_n", context=ctx))
    return worst


@_requires('forward')
def check_empty(backend: Any) -> float:
    """``T = 0`` returns the initial state and an empty ``y``; ``B = 0`` returns empty arrays."""
    for dtype in _dtypes(backend):
        p = random_problem(0, 2, 3, 4, dtype=dtype, seed=6000)
        y, h_n, c_n = (to_host(a) for a in p.forward(backend))
        assert y.shape == (0, 2, 4), f"T=0: y shape {y.shape}, expected (0, 2, 4)"
        np.testing.assert_array_equal(h_n, p.h0, err_msg="T=0: h_n must equal h0")
        np.testing.assert_array_equal(c_n, p.c0, err_msg="T=0: c_n must equal c0")
        p = random_problem(3, 0, 3, 4, dtype=dtype, seed=6001)
        y, h_n, c_n = (to_host(a) for a in p.forward(backend))
        assert y.shape == (3, 0, 4) and h_n.shape == (0, 4), f"B=0: shapes {y.shape}, {h_n.shape}"
    return 0.0


@_requires('forward')
def check_out(backend: Any) -> float:
    """``forward(out=...)`` writes into and returns the given arrays (poisoned first)."""
    worst = 0.0
    for dtype in _dtypes(backend):
        p = random_problem(4, 3, 5, 6, dtype=dtype, seed=7000, lengths=[4, 1, 0])
        out = (np.full((4, 3, 6), np.nan, dtype), np.full((3, 6), np.nan, dtype), np.full((3, 6), np.nan, dtype))
        got = backend.forward(p.x, p.params, p.h0, p.c0, lengths=p.lengths, out=out)
        assert all(g is o for g, o in zip(got, out)), "forward(out=...) must return the arrays it was given"
        ref = reference_forward(p)
        ctx = f"{backend.name} out=: {p.describe()}"
        for g, r, n in zip(out, ref, ("y", "h_n", "c_n")):
            worst = max(worst, assert_close(g, r, dtype=dtype, name=n, context=ctx))
    return worst


@_requires('cell')
def check_cell(backend: Any) -> float:
    """``cell`` equals the reference step, equals ``forward`` with T=1, and honours ``out=``,
    including an in-place update ``out=(h, c)``."""
    worst = 0.0
    for dtype in _dtypes(backend):
        for k, (b, i, h) in enumerate([(1, 1, 1), (3, 5, 4), (4, 17, 9)]):
            seed = 8000 + k
            rng = np.random.default_rng(seed)
            params = random_params(i, h, dtype=dtype, rng=rng)
            x = rng.standard_normal((b, i)).astype(dtype)
            h0 = rng.uniform(-1, 1, (b, h)).astype(dtype)
            c0 = rng.standard_normal((b, h)).astype(dtype)
            ctx = f"{backend.name} cell B={b} I={i} H={h} {np.dtype(dtype).name} seed={seed}"
            ref_h, ref_c = reference_cell(x, h0, c0, params)
            h1, c1 = backend.cell(x, h0, c0, params)
            worst = max(worst, assert_close(h1, ref_h, dtype=dtype, name="h", context=ctx),
                        assert_close(c1, ref_c, dtype=dtype, name="c", context=ctx))
            if _can(backend, "forward"):
                _, fh, fc = backend.forward(x[None], params, h0, c0)
                rtol, atol = (1e-5, 1e-6) if dtype == np.float32 else (1e-12, 1e-14)
                for got_, ref_, n in ((h1, fh, "h"), (c1, fc, "c")):
                    np.testing.assert_allclose(to_host(got_), to_host(ref_), rtol=rtol, atol=atol,
                                               err_msg=f"cell {n} differs from forward with T=1 [{ctx}]")
            out = (np.full((b, h), np.nan, dtype), np.full((b, h), np.nan, dtype))
            got = backend.cell(x, h0, c0, params, out=out)
            assert got[0] is out[0] and got[1] is out[1], "cell(out=...) must return the arrays it was given"
            worst = max(worst, assert_close(out[0], ref_h, dtype=dtype, name="h (out=)", context=ctx),
                        assert_close(out[1], ref_c, dtype=dtype, name="c (out=)", context=ctx))
            hs, cs = h0.copy(), c0.copy()
            got = backend.cell(x, hs, cs, params, out=(hs, cs))
            assert got[0] is hs and got[1] is cs
            worst = max(worst, assert_close(hs, ref_h, dtype=dtype, name="h (in place)", context=ctx),
                        assert_close(cs, ref_c, dtype=dtype, name="c (in place)", context=ctx))
    return worst


@_requires('cell')
def check_cell_sequence(backend: Any) -> float:
    """Streaming ``cell`` over a sequence equals ``forward`` over it."""
    worst = 0.0
    for dtype in _dtypes(backend):
        p = random_problem(6, 2, 3, 5, dtype=dtype, seed=9000)
        ref_y, _, ref_c = reference_forward(p)
        h, c = p.h0.copy(), p.c0.copy()
        for t in range(6):
            backend.cell(p.x[t], h, c, p.params, out=(h, c))
            worst = max(worst, assert_close(h, ref_y[t], dtype=dtype, name=f"h at t={t}", context=p.describe()))
        worst = max(worst, assert_close(c, ref_c, dtype=dtype, name="c", context=p.describe()))
    return worst


@_requires('forward')
def check_layer(backend: Any) -> float:
    """The stacked, bidirectional ``LSTM`` layer with lengths and ``batch_first`` equals the
    same layer on the reference backend in float64."""
    worst = 0.0
    for dtype in _dtypes(backend):
        for batch_first in (False, True):
            worst = max(worst, _compare_layer(backend, dtype, 10000, batch_first=batch_first))
    return worst


def _compare_layer(backend: Any, dtype: Any, seed: int, *, batch_first: bool = False, proj_size: int = 0) -> float:
    """``LSTM(4, 6, num_layers=2, bidirectional=True)`` on ``backend`` against the same layer on the
    float64 reference: random x, h0, c0, lengths [5, 0, 3]; the worst error of y, h_n, c_n."""
    from ..layer import LSTM

    ours = LSTM(4, 6, num_layers=2, bidirectional=True, batch_first=batch_first, proj_size=proj_size, dtype=dtype,
                backend=backend, seed=seed)
    ref = LSTM(4, 6, num_layers=2, bidirectional=True, batch_first=batch_first, proj_size=proj_size,
               dtype=np.float64, backend="numpy")
    ref.load_state_dict(ours.state_dict())
    rng = np.random.default_rng(seed + 1)
    x = rng.standard_normal((3, 5, 4) if batch_first else (5, 3, 4)).astype(dtype)
    h0 = rng.uniform(-1, 1, (4, 3, proj_size or 6)).astype(dtype)
    c0 = rng.standard_normal((4, 3, 6)).astype(dtype)
    lengths = [5, 0, 3]
    y, (h_n, c_n) = ours(x, (h0, c0), lengths=lengths)
    ry, (rh, rc) = ref(x.astype(np.float64), (h0.astype(np.float64), c0.astype(np.float64)), lengths=lengths)
    proj = f", proj_size={proj_size}" if proj_size else ""
    ctx = f"{backend.name} LSTM(4, 6, layers=2, bidirectional, batch_first={batch_first}{proj}) seed={seed}"
    worst = 0.0
    for g, r, n in ((y, ry, "y"), (h_n, rh, "h_n"), (c_n, rc, "c_n")):
        worst = max(worst, assert_close(g, r, dtype=dtype, name=n, context=ctx))
    return worst


@_requires('forward')
def check_memory_layouts(backend: Any) -> float:
    """Fortran-ordered, strided and read-only inputs give the same result and are not modified."""
    worst = 0.0
    for dtype in _dtypes(backend):
        p = random_problem(5, 3, 6, 4, dtype=dtype, seed=11000, lengths=[5, 3, 1])
        ref = reference_forward(p)
        big = np.zeros((10, 3, 12), dtype)
        big[::2, :, ::2] = p.x
        strided = big[::2, :, ::2]
        fortran = np.asfortranarray(p.x)
        ro_params = LSTMParams(*(np.asfortranarray(a) if a.ndim == 2 else a.copy() for a in p.params[:4]))
        for a in ro_params[:4]:
            a.flags.writeable = False
        h0 = np.asfortranarray(p.h0)
        before = [np.array(a, copy=True) for a in (strided, fortran, h0, *ro_params[:4])]
        for name, x in (("strided x", strided), ("Fortran x", fortran)):
            got = backend.forward(x, ro_params, h0, p.c0, lengths=p.lengths)
            for g, r, n in zip(got, ref, ("y", "h_n", "c_n")):
                worst = max(worst, assert_close(g, r, dtype=dtype, name=f"{n} ({name})", context=p.describe()))
        for b, a in zip(before, (strided, fortran, h0, *ro_params[:4])):
            np.testing.assert_array_equal(b, a, err_msg="forward modified an input")
    return worst


def check_inputs_unchanged(backend: Any) -> float:
    """``forward`` and ``cell`` never write to their inputs."""
    for dtype in _dtypes(backend):
        p = random_problem(4, 2, 3, 5, dtype=dtype, seed=12000, lengths=[4, 2])
        copies = [a.copy() for a in (p.x, *p.params[:4], p.h0, p.c0, p.lengths)]
        if _can(backend, "forward"):
            p.forward(backend)
        if _can(backend, "cell"):
            backend.cell(p.x[0], p.h0, p.c0, p.params)
        for b, a in zip(copies, (p.x, *p.params[:4], p.h0, p.c0, p.lengths)):
            np.testing.assert_array_equal(b, a, err_msg="an input was modified")
    return 0.0


@_requires('forward')
def check_nan_stays_in_row(backend: Any) -> float:
    """A NaN in one batch row propagates through that row only, as in the reference."""
    worst = 0.0
    for dtype in _dtypes(backend):
        p = random_problem(4, 3, 3, 5, dtype=dtype, seed=13000)
        p.x[1, 1, 2] = np.nan
        y, h_n, _ = (to_host(a) for a in p.forward(backend))
        assert np.isnan(y[1:, 1]).all(), "NaN input must reach row 1's later outputs"
        assert not np.isnan(y[:, [0, 2]]).any() and not np.isnan(y[0, 1]).any(), "NaN leaked into other rows/steps"
        assert np.isnan(h_n[1]).all() and not np.isnan(h_n[[0, 2]]).any()
        worst = max(worst, _compare_forward(backend, p, "NaN in x: "))
    return worst


def check_extreme_inputs(backend: Any) -> float:
    """Inputs of magnitude 1e4 saturate the gates: finite results, no warnings, matching the reference."""
    worst = 0.0
    for dtype in _dtypes(backend):
        p = random_problem(3, 4, 3, 5, dtype=dtype, seed=14000)
        p.x[...] = np.sign(p.x) * 1e4
        outputs = []
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            if _can(backend, "forward"):
                outputs += p.forward(backend)
            if _can(backend, "cell"):
                outputs += backend.cell(p.x[0], p.h0, p.c0, p.params)
        for a in outputs:
            assert np.isfinite(to_host(a)).all(), "non-finite output for |x| = 1e4"
        if _can(backend, "forward"):
            worst = max(worst, _compare_forward(backend, p, "|x|=1e4: "))
        if _can(backend, "cell"):
            ref_h, ref_c = reference_cell(p.x[0], p.h0, p.c0, p.params)
            h1, c1 = backend.cell(p.x[0], p.h0, p.c0, p.params)
            worst = max(worst, assert_close(h1, ref_h, dtype=dtype, name="cell h (|x|=1e4)", context=p.describe()),
                        assert_close(c1, ref_c, dtype=dtype, name="cell c (|x|=1e4)", context=p.describe()))
    return worst


@_requires('forward')
def check_deterministic(backend: Any) -> float:
    """Repeated calls give bitwise identical results."""
    for dtype in _dtypes(backend):
        p = random_problem(6, 4, 5, 8, dtype=dtype, seed=15000, lengths=[6, 3, 0, 5])
        first = [to_host(a) for a in p.forward(backend)]
        for _ in range(2):
            again = [to_host(a) for a in p.forward(backend)]
            for a, b, n in zip(first, again, ("y", "h_n", "c_n")):
                np.testing.assert_array_equal(a, b, err_msg=f"{n} changed between identical calls")
    return 0.0


#: capability -> (random_problem keywords, call options, a word the refusal must name) of a call
#: that asks for the feature
_FEATURE_ASKS = {
    "projection": ({"proj_size": 2}, {}, "w_hr"),
    "peephole": ({"peephole": True}, {}, "w_peep"),
    "clip": ({}, {"clip": 1.0}, "clip"),
    "activations": ({}, {"activations": ("HardSigmoid", "Tanh", "Tanh")}, "HardSigmoid"),
}


def _raises(exc: type[BaseException], fn: Callable[[], Any], *words: str) -> None:
    try:
        fn()
    except exc as e:
        msg = str(e)
        missing = [w for w in words if w not in msg]
        assert not missing, f"{exc.__name__} message {msg!r} lacks {missing}"
        return
    except Exception as e:  # noqa: BLE001
        raise AssertionError(f"expected {exc.__name__}, got {type(e).__name__}: {e}") from e
    raise AssertionError(f"expected {exc.__name__}, nothing was raised")


def check_errors(backend: Any) -> float:
    """Bad inputs raise clear errors: shapes -> ValueError, dtypes -> TypeError, lengths -> ValueError.

    A dtype the backend does not support must be named in the error; with two supported
    dtypes, mixing them must be refused as "mixed".
    """
    supported = _dtypes(backend)
    dtype = supported[0]
    other = next((d for d in supported if d != dtype), None)
    foreign = np.float64 if dtype == np.float32 else np.float32  # another dtype: mixed, or unsupported
    foreign_words = ("mixed",) if other is not None else (np.dtype(foreign).name, "support")
    p = random_problem(4, 2, 3, 5, dtype=dtype, seed=16000)
    if _can(backend, "forward"):
        f = backend.forward
        _raises(ValueError, lambda: f(p.x[:, :, :2], p.params), "x", "(4, 2, 2)")
        _raises(ValueError, lambda: f(p.x[0], p.params), "x")
        _raises(ValueError, lambda: f(p.x, p.params, p.h0[:1]), "h0", "(1, 5)", "(2, 5)")
        _raises(ValueError, lambda: f(p.x, p.params, p.h0, p.c0[:, :3]), "c0")
        _raises(ValueError, lambda: f(p.x, (p.params.w_ih, p.params.w_hh[:, :4], *p.params[2:])), "w_hh")
        _raises(ValueError, lambda: f(p.x, (*p.params[:2], p.params.b_ih[:3], p.params.b_hh)), "b_ih")
        _raises(TypeError, lambda: f(p.x.astype(np.int64), p.params), "x", "int64")
        _raises(TypeError, lambda: f(p.x.astype(foreign), p.params), *foreign_words)
        _raises(TypeError, lambda: f(p.x, p.params, p.h0.astype(foreign)), "h0")
        _raises(TypeError, lambda: f(p.x, p.params[:3]), "params")
        _raises(ValueError, lambda: f(p.x, p.params, lengths=[1, 5]), "lengths")
        _raises(ValueError, lambda: f(p.x, p.params, lengths=[1, -1]), "lengths")
        _raises(ValueError, lambda: f(p.x, p.params, lengths=[1, 2, 3]), "lengths")
        _raises(ValueError, lambda: f(p.x, p.params, lengths=[1.5, 2.0]), "lengths")
    if _can(backend, "cell"):
        c = backend.cell
        _raises(ValueError, lambda: c(p.x[0, :, :2], p.h0, p.c0, p.params), "x")
        _raises(ValueError, lambda: c(p.x[0], p.h0.T, p.c0, p.params), "h")
        _raises(TypeError, lambda: c(p.x[0].astype(foreign), p.h0, p.c0, p.params), *foreign_words)
        _raises(TypeError, lambda: c(p.x[0], p.h0, p.c0, p.params, out=p.h0), "out")
    return 0.0


def check_aliasing(backend: Any) -> float:
    """The one aliasing rule, for ``cell(out=)`` and ``forward(out=)``: an output may be its own
    state input (the very array), for an in-place update, and overlap nothing else."""
    worst = 0.0
    for dtype in _dtypes(backend):
        p = random_problem(4, 3, 5, 5, dtype=dtype, seed=17000, lengths=[4, 2, 0])  # I == H: x can pose as h
        ctx = f"{backend.name} aliasing: {p.describe()}"
        if _can(backend, "cell"):
            ref_h, ref_c = reference_cell(p.x[0], p.h0, p.c0, p.params)
            for view in (False, True):  # the state arrays themselves, or full views of them
                h, c = p.h0.copy(), p.c0.copy()
                out = (h[...], c[...]) if view else (h, c)
                backend.cell(p.x[0], h, c, p.params, out=out)
                worst = max(worst, assert_close(h, ref_h, dtype=dtype, name=f"cell h in place (view={view})",
                                                context=ctx),
                            assert_close(c, ref_c, dtype=dtype, name=f"cell c in place (view={view})", context=ctx))
            h, c = p.h0.copy(), p.c0.copy()
            x = p.x[0].copy()
            _raises(ValueError, partial(backend.cell, x, h, c, p.params, out=(c, h)), "overlap")
            _raises(ValueError, partial(backend.cell, h, h, c, p.params, out=(h, c)), "h_out", "x")
            _raises(ValueError, partial(backend.cell, x, h, c, p.params, out=(x, c)), "h_out", "x")
            _raises(ValueError, partial(backend.cell, x, h, c, p.params, out=(h, h)), "overlap")
            both = np.empty((2 * 3, 5), dtype)
            _raises(ValueError, partial(backend.cell, x, h, c, p.params, out=(both[:3], both[2:5])), "overlap")
            np.testing.assert_array_equal(h, p.h0, err_msg="a refused cell call modified h")
            np.testing.assert_array_equal(c, p.c0, err_msg="a refused cell call modified c")
        if _can(backend, "forward"):
            ref = reference_forward(p)
            h0, c0 = p.h0.copy(), p.c0.copy()
            y = np.full(p.x.shape[:2] + (5,), np.nan, dtype)
            got = backend.forward(p.x, p.params, h0, c0, lengths=p.lengths, out=(y, h0, c0))
            assert got[1] is h0 and got[2] is c0, "forward(out=(y, h0, c0)) must return h0 and c0"
            for g, r, n in zip((y, h0, c0), ref, ("y", "h_n (in place)", "c_n (in place)")):
                worst = max(worst, assert_close(g, r, dtype=dtype, name=n, context=ctx))
            h0, c0 = p.h0.copy(), p.c0.copy()
            x = p.x.copy()
            y = np.empty_like(x)
            _raises(ValueError, partial(backend.forward, x, p.params, h0, c0, out=(x, *np.empty((2, 3, 5), dtype))),
                    "y", "x")
            _raises(ValueError, partial(backend.forward, x, p.params, h0, c0, out=(y, c0, h0)), "overlap")
            _raises(ValueError, partial(backend.forward, x, p.params, h0, c0, out=(y, h0, h0)), "overlap")
            np.testing.assert_array_equal(x, p.x, err_msg="a refused forward call modified x")
    return worst


# ---------------------------------------------------------------------------- optional features
def _compare_cell(backend: Any, p: Any, label: str) -> float:
    """``cell`` on the first step of problem ``p`` (with its options) against the reference."""
    x, h0 = p.x[0], p.h0
    ref_h, ref_c = reference_cell(x, h0, p.c0, p.params, **p.options)
    ctx = f"{label}{backend.name} cell: {p.describe()}"
    h1, c1 = backend.cell(x, h0, p.c0, p.params, **p.options)
    worst = max(assert_close(h1, ref_h, dtype=p.dtype, name="h", context=ctx),
                assert_close(c1, ref_c, dtype=p.dtype, name="c", context=ctx))
    hs, cs = h0.copy(), p.c0.copy()  # the in-place update, where h and h_out differ in width from c
    backend.cell(x, hs, cs, p.params, out=(hs, cs), **p.options)
    return max(worst, assert_close(hs, ref_h, dtype=p.dtype, name="h (in place)", context=ctx),
               assert_close(cs, ref_c, dtype=p.dtype, name="c (in place)", context=ctx))


def _feature_problems(backend: Any, seed: int, **kw: Any) -> list[Any]:
    """Problems with a feature switched on, per dtype: forward with random lengths (0 and T
    included), and reverse at sizes that divide no tile (I = 17, H = 9)."""
    problems = []
    for dtype in _dtypes(backend):
        problems.append(random_problem(5, 4, 3, 6, dtype=dtype, seed=seed, lengths="random", **kw))
        problems.append(random_problem(3, 2, 17, 9, dtype=dtype, seed=seed + 1, lengths=[3, 1], reverse=True, **kw))
    return problems


@_requires('projection')
def check_projection(backend: Any) -> float:
    """A projection ``w_hr`` (LSTMP): ``h = W_hr (o * tanh(c))`` has P columns, ``c`` keeps H; ``forward``,
    ``cell`` and the stacked bidirectional ``LSTM(proj_size=P)`` equal the reference."""
    worst = 0.0
    if _can(backend, "forward"):
        for p in _feature_problems(backend, 18000, proj_size=2):
            worst = max(worst, _compare_forward(backend, p, "projection: "))
        for dtype in _dtypes(backend):
            worst = max(worst, _compare_layer(backend, dtype, 18100, proj_size=3))
    if _can(backend, "cell"):
        for dtype in _dtypes(backend):
            worst = max(worst, _compare_cell(backend, random_problem(1, 3, 5, 7, dtype=dtype, seed=18200,
                                                                     proj_size=4), "projection: "))
    return worst


@_requires('peephole')
def check_peephole(backend: Any) -> float:
    """Peepholes ``w_peep`` (3, H), gates i, f, o: i and f see ``c_{t-1}``, o sees the new ``c_t``."""
    worst = 0.0
    if _can(backend, "forward"):
        for p in _feature_problems(backend, 19000, peephole=True):
            worst = max(worst, _compare_forward(backend, p, "peephole: "))
    if _can(backend, "cell"):
        for dtype in _dtypes(backend):
            worst = max(worst, _compare_cell(backend, random_problem(1, 3, 5, 7, dtype=dtype, seed=19200,
                                                                     peephole=True), "peephole: "))
    return worst


@_requires('clip')
def check_clip(backend: Any) -> float:
    """``clip=`` bounds every gate pre-activation (bias and peephole included) before its
    activation, and ``input_forget=True`` sets f = 1 - i: clip alone, then both with a peephole
    and a projection when the backend has them."""
    worst = 0.0
    extra = {"peephole": _can(backend, "peephole")}
    if _can(backend, "projection"):
        extra["proj_size"] = 3
    combos = [{"clip": 0.3}, {"clip": 0.3, "input_forget": True, **extra}]
    for k, options in enumerate(combos):
        if _can(backend, "forward"):
            for p in _feature_problems(backend, 20000 + 100 * k, **options):
                worst = max(worst, _compare_forward(backend, p, "clip: "))
        if _can(backend, "cell"):
            for dtype in _dtypes(backend):
                p = random_problem(1, 3, 5, 7, dtype=dtype, seed=20500 + k, **options)
                worst = max(worst, _compare_cell(backend, p, "clip: "))
    return worst


#: Every ONNX activation at least once in each role, with parameters other than the defaults.
ACTIVATION_SETS = [
    ("HardSigmoid", "Tanh", "Tanh"),
    (("HardSigmoid", 0.3, 0.4), ("ScaledTanh", 1.5, 0.7), ("Affine", 0.8, 0.1)),
    ("Sigmoid", ("LeakyRelu", 0.2), "Softsign"),
    ("Sigmoid", ("Elu", 0.7), "Softplus"),
    ("Sigmoid", ("ThresholdedRelu", 0.1), "Relu"),
    (("Affine", 0.25, 0.5), "Softsign", ("ScaledTanh", 0.9, 1.3)),
]


@_requires('activations')
def check_activations(backend: Any) -> float:
    """``activations=`` other than the defaults: each of ONNX's functions, with its own alpha/beta."""
    worst = 0.0
    for k, acts in enumerate(ACTIVATION_SETS):
        for dtype in _dtypes(backend):
            if _can(backend, "forward"):
                p = random_problem(4, 3, 3, 5, dtype=dtype, seed=21000 + k, lengths=[4, 2, 0], activations=acts)
                worst = max(worst, _compare_forward(backend, p, "activations: "))
            if _can(backend, "cell"):
                p = random_problem(1, 3, 3, 5, dtype=dtype, seed=21500 + k, activations=acts)
                worst = max(worst, _compare_cell(backend, p, "activations: "))
    return worst


def check_refuses_missing_features(backend: Any) -> float:
    """Every optional feature the backend does not declare (projection, peephole, clip,
    activations) is refused with ``UnsupportedFeatureError`` naming it — never silently ignored."""
    from .._errors import UnsupportedFeatureError

    dtype = _dtypes(backend)[0]
    for feature, (problem_kw, options, word) in _FEATURE_ASKS.items():
        if _can(backend, feature):
            continue
        p = random_problem(3, 2, 3, 4, dtype=dtype, seed=22000, **problem_kw)
        calls = []
        if _can(backend, "forward"):
            calls.append(("forward", partial(backend.forward, p.x, p.params, p.h0, p.c0, **options)))
        if _can(backend, "cell"):
            calls.append(("cell", partial(backend.cell, p.x[0], p.h0, p.c0, p.params, **options)))
        for what, call in calls:
            try:
                call()
            except UnsupportedFeatureError as exc:
                assert word in str(exc) and feature in str(exc), \
                    f"{what} refused {feature!r} with a message lacking {word!r} or {feature!r}: {exc}"
                continue
            raise AssertionError(f"{backend.name}.{what} lacks the capability {feature!r} but did not refuse "
                                 f"{word} with UnsupportedFeatureError (a silent fallback)")
    if _can(backend, "forward") and not _can(backend, "clip"):  # input_forget belongs to 'clip' too
        p = random_problem(3, 2, 3, 4, dtype=dtype, seed=22001)
        _raises(UnsupportedFeatureError, partial(backend.forward, p.x, p.params, input_forget=True), "input_forget")
    return 0.0


# ---------------------------------------------------------------------------- training
_GRAD_NAMES = ("dx", "dh0", "dc0")
_PARAM_NAMES = ("w_ih", "w_hh", "b_ih", "b_hh", "w_hr", "w_peep")


def _compare_grads(got: Any, ref: Any, dtype: Any, ctx: str) -> float:
    """Every gradient of an ``LSTMGrads`` against the float64 reference's; ``None`` exactly where it is."""
    worst = max(assert_close(g, r, dtype=dtype, name=n, context=ctx) for g, r, n in zip(got[:3], ref[:3], _GRAD_NAMES))
    for name, g, r in zip(_PARAM_NAMES, got.dparams, ref.dparams):
        assert (g is None) == (r is None), f"dparams.{name} is {'None' if g is None else 'an array'}, expected " \
                                          f"{'None' if r is None else 'an array'} [{ctx}]"
        if r is not None:
            worst = max(worst, assert_close(g, r, dtype=dtype, name=f"dparams.{name}", context=ctx))
    return worst


def _compare_backward(backend: Any, problem: Any, label: str = "") -> float:
    """``forward_train`` (outputs and, through ``backward`` with random output gradients, every
    gradient) against the reference."""
    ctx = f"{label}{backend.name} backward: {problem.describe()}"
    y, h_n, c_n, tape = problem.forward_train(backend)
    worst = max(assert_close(g, r, dtype=problem.dtype, name=f"forward_train {n}", context=ctx)
                for g, r, n in zip((y, h_n, c_n), reference_forward(problem), ("y", "h_n", "c_n")))
    grads = problem.output_grads()
    return max(worst, _compare_grads(backend.backward(tape, *grads), reference_backward(problem, *grads),
                                     problem.dtype, ctx))


def _grads_equal(a: Any, b: Any, what: str) -> None:
    for n, x, y in zip((*_GRAD_NAMES, *(f"dparams.{p}" for p in _PARAM_NAMES)), (*a[:3], *a.dparams),
                       (*b[:3], *b.dparams)):
        assert (x is None) == (y is None), f"{n}: {what}"
        if x is not None:
            np.testing.assert_array_equal(to_host(x), to_host(y), err_msg=f"{n}: {what}")


#: (T, B, I, H, lengths, reverse) of :func:`check_backward`: a single everything; random lengths
#: (0 and T included) in reverse; sizes that divide no tile.  Few and small: simulated GPU
#: backends run every step's kernels thread by thread.
BACKWARD_SHAPES = [(1, 1, 1, 1, None, False), (4, 4, 5, 4, "random", True), (3, 2, 17, 9, [3, 1], False)]


@_requires('backward')
def check_backward(backend: Any) -> float:
    """``forward_train`` equals ``forward``'s reference, and ``backward`` the reference's BPTT (dx,
    dh0, dc0 and every weight gradient), over shapes and dtypes, both directions, with random
    output gradients, random state and random lengths (0 and T included)."""
    worst = 0.0
    for k, (t, b, i, h, lengths, reverse) in enumerate(BACKWARD_SHAPES):
        for dtype in _dtypes(backend):
            p = random_problem(t, b, i, h, dtype=dtype, seed=23000 + k, reverse=reverse, lengths=lengths)
            worst = max(worst, _compare_backward(backend, p))
    return worst


@_requires('backward')
def check_backward_defaults(backend: Any) -> float:
    """``None`` output gradients are zeros; an omitted ``h0``/``c0`` still gets its gradient; a
    bias passed as ``None`` gets ``None``; one tape serves several ``backward`` calls; empty
    problems (``T = 0``, ``B = 0``, every length 0) give the right shapes: ``dh0 = dh_n``,
    ``dc0 = dc_n`` and zeros."""
    worst = 0.0
    dtypes = _dtypes(backend)
    for n_dtype, dtype in enumerate(dtypes):
        p = random_problem(3, 3, 4, 5, dtype=dtype, seed=24000, lengths=[3, 1, 2], state=False)
        if n_dtype == len(dtypes) - 1:  # no bias (and still no h0/c0)
            p.params = p.params._replace(b_ih=None, b_hh=None)
        grads = p.output_grads()
        tape = p.forward_train(backend)[3]
        for keep in range(3):  # one output gradient given, the other two None, all with one tape
            given = [g if j == keep else None for j, g in enumerate(grads)]
            ctx = f"{backend.name} backward with only {('dy', 'dh_n', 'dc_n')[keep]} given: {p.describe()}"
            worst = max(worst, _compare_grads(backend.backward(tape, *given), reference_backward(p, *given), dtype,
                                              ctx))
        for t, b, lengths in ((0, 2, None), (3, 0, None), (2, 2, [0, 0])):
            q = random_problem(t, b, 3, 4, dtype=dtype, seed=24100, lengths=lengths)
            dy_q, dh_q, dc_q = q.output_grads()
            y, h_n, c_n, tape = q.forward_train(backend)
            g = backend.backward(tape, dy_q, dh_q, dc_q)
            ctx = f"{backend.name} T={t} B={b} lengths={lengths}"
            assert to_host(y).shape == (t, b, 4) and to_host(g.dx).shape == (t, b, 3), f"shapes [{ctx}]"
            np.testing.assert_array_equal(to_host(g.dh0), dh_q, err_msg=f"dh0 must be dh_n [{ctx}]")
            np.testing.assert_array_equal(to_host(g.dc0), dc_q, err_msg=f"dc0 must be dc_n [{ctx}]")
            for n, a in zip(("dx", *_PARAM_NAMES), (g.dx, *g.dparams)):
                if a is not None:
                    assert not to_host(a).any(), f"{n} must be 0 [{ctx}]"
    return worst


@_requires('backward')
def check_backward_layer(backend: Any) -> float:
    """``LSTM.backward``: a stacked bidirectional layer — time-major with lengths, ``batch_first``
    with lengths, unbatched — against the same layer on the reference in float64, gradients
    under PyTorch's parameter names."""
    from ..layer import LSTM

    worst = 0.0
    dtypes = _dtypes(backend)
    for k, layout in enumerate(("TBI", "BTI", "TI")):
        dtype = dtypes[k % len(dtypes)]
        ours = LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=layout == "BTI", dtype=dtype, backend=backend,
                    seed=25000)
        ref = LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=layout == "BTI", dtype=np.float64,
                   backend="numpy")
        ref.load_state_dict(ours.state_dict())
        rng = np.random.default_rng(25001)
        shape = {"TBI": (4, 3, 3), "BTI": (3, 4, 3), "TI": (4, 3)}[layout]
        state = (4, 3, 4) if layout != "TI" else (4, 4)
        x = rng.standard_normal(shape).astype(dtype)
        hx = (rng.uniform(-1, 1, state).astype(dtype), rng.standard_normal(state).astype(dtype))
        lengths = None if layout == "TI" else [4, 0, 2]
        y, _, tape = ours.forward_train(x, hx, lengths=lengths)
        dy = rng.standard_normal(to_host(y).shape).astype(dtype)
        dhx = tuple(rng.standard_normal(state).astype(dtype) for _ in range(2))
        dx, (dh0, dc0), grads = ours.backward(tape, dy, dhx)
        _, _, ref_tape = ref.forward_train(x.astype(np.float64), tuple(a.astype(np.float64) for a in hx),
                                           lengths=lengths)
        rdx, (rdh0, rdc0), rgrads = ref.backward(ref_tape, dy.astype(np.float64),
                                                 tuple(a.astype(np.float64) for a in dhx))
        ctx = (f"{backend.name} LSTM(3, 4, layers=2, bidirectional) layout {layout}, lengths={lengths}, "
               f"{np.dtype(dtype).name} seed=25000")
        assert set(grads) == set(ours.state_dict()), f"grads keys {sorted(grads)} [{ctx}]"
        for g, r, n in ((dx, rdx, "dx"), (dh0, rdh0, "dh0"), (dc0, rdc0, "dc0"),
                        *((grads[key], rgrads[key], key) for key in sorted(grads))):
            worst = max(worst, assert_close(g, r, dtype=dtype, name=n, context=ctx))
    return worst


@_requires('backward')
def check_backward_deterministic(backend: Any) -> float:
    """``backward`` repeated on one tape, and ``forward_train`` + ``backward`` repeated, give bitwise
    identical gradients (no atomics, a fixed reduction order)."""
    for dtype in _dtypes(backend):
        p = random_problem(4, 4, 5, 6, dtype=dtype, seed=26000, lengths=[4, 2, 0, 3])
        grads = p.output_grads()
        tape = p.forward_train(backend)[3]
        first = backend.backward(tape, *grads)
        _grads_equal(first, backend.backward(tape, *grads), "changed in a second backward with the same tape")
        _grads_equal(first, backend.backward(p.forward_train(backend)[3], *grads),
                     "changed between identical forward_train + backward calls")
    return 0.0


#: feature of ``backward_features`` -> the problems that exercise it (``random_problem`` keywords)
_TRAINING_FEATURES = {
    "projection": [{"proj_size": 2}],
    "peephole": [{"peephole": True}],
    "clip": [{"clip": 0.3}, {"input_forget": True}],
}


@_requires('backward')
def check_backward_features(backend: Any) -> float:
    """Training with each optional feature the backend's backward supports (``backward_features``:
    projection, peepholes, clip, input_forget), and with all of them at once, equals the reference:
    forward with random lengths and reverse at sizes that divide no tile, dtypes in turn."""
    worst = 0.0
    features = getattr(backend, "backward_features", frozenset())
    combos = [kw for f, kws in _TRAINING_FEATURES.items() if f in features for kw in kws]
    if {"projection", "peephole", "clip"} <= set(features):
        combos.append({"proj_size": 2, "peephole": True, "clip": 0.3, "input_forget": True})
    dtypes = _dtypes(backend)
    for k, kw in enumerate(combos):
        dtype, seed = dtypes[k % len(dtypes)], 27000 + 100 * k
        if k % 2 == 0:
            p = random_problem(3, 4, 3, 5, dtype=dtype, seed=seed, lengths="random", **kw)
        else:
            p = random_problem(3, 2, 17, 9, dtype=dtype, seed=seed, lengths=[3, 1], reverse=True, **kw)
        worst = max(worst, _compare_backward(backend, p, "features: "))
    return worst


def _loss(outputs: Any, grads: Any) -> float:
    """``sum(dy * y) + sum(dh_n * h_n) + sum(dc_n * c_n)``, whose gradients are ``backward``'s."""
    return float(sum((to_host(o).astype(np.float64) * g).sum() for o, g in zip(outputs, grads)))


@_requires('backward')
def check_backward_gradcheck(backend: Any) -> float:
    """Central differences of ``forward`` in float64, independent of the reference: along a random
    direction in (x, h0, c0, every weight), the derivative of ``L = Σ dy·y + dh_n·h_n + dc_n·c_n``
    equals the direction's dot product with ``backward``'s gradients — with every training
    feature the backend supports, in reverse with lengths.  On a mismatch, each argument is
    checked alone to name the wrong gradient."""
    if np.dtype(np.float64) not in _dtypes(backend):
        return 0.0
    features = getattr(backend, "backward_features", frozenset())
    kw: dict[str, Any] = {}
    if "projection" in features:
        kw["proj_size"] = 2
    if "peephole" in features:
        kw["peephole"] = True
    if "clip" in features:
        kw["clip"] = 0.8
    p = random_problem(3, 3, 3, 4, dtype=np.float64, seed=28000, lengths=[3, 1, 2], reverse=True, **kw)
    grads = p.output_grads()
    g = backend.backward(p.forward_train(backend)[3], *grads)
    named = {"x": (p.x, g.dx), "h0": (p.h0, g.dh0), "c0": (p.c0, g.dc0),
             **{f"params.{n}": (a, d) for n, a, d in zip(_PARAM_NAMES, p.params, g.dparams) if a is not None}}
    rng = np.random.default_rng(28100)
    directions = {name: rng.standard_normal(value.shape) for name, (value, _) in named.items()}
    eps = 1e-6

    def derivative(names: list[str]) -> tuple[float, float]:
        losses = []
        for sign in (1, -1):
            originals = {n: named[n][0].copy() for n in names}
            for n in names:
                named[n][0][...] += sign * eps * directions[n]  # in place: the problem's own arrays
            try:
                losses.append(_loss(p.forward(backend), grads))
            finally:
                for n in names:
                    named[n][0][...] = originals[n]
        analytic = sum(float((to_host(named[n][1]) * directions[n]).sum()) for n in names)
        return (losses[0] - losses[1]) / (2 * eps), analytic

    numeric, analytic = derivative(list(named))
    err = abs(numeric - analytic) / (1e-7 + 1e-6 * abs(numeric))
    if err > 1:
        for name in named:
            numeric, analytic = derivative([name])
            assert abs(numeric - analytic) <= 1e-7 + 1e-6 * abs(numeric), (
                f"{name}: d/dε L(· + ε v) = {numeric:.10g} by central differences, {analytic:.10g} from backward "
                f"[{backend.name}: {p.describe()}]")
        raise AssertionError(f"the derivative along a random direction is {numeric:.10g} by central differences, "
                             f"{analytic:.10g} from backward [{backend.name}: {p.describe()}]")
    return err


@_requires('backward')
def check_backward_errors(backend: Any) -> float:
    """Bad ``backward`` input: not a tape -> ``TypeError``; another backend's tape, an output
    gradient of the wrong shape -> ``ValueError``; of the wrong dtype -> ``TypeError``, each naming
    the argument; a feature the backward pass lacks -> ``UnsupportedFeatureError`` naming it."""
    from dataclasses import replace

    from .._errors import UnsupportedFeatureError
    from .._registry import get_backend

    dtype = _dtypes(backend)[0]
    foreign = np.float64 if dtype == np.float32 else np.float32
    p = random_problem(2, 2, 3, 5, dtype=dtype, seed=29000)
    dy, dh_n, dc_n = p.output_grads()
    tape = p.forward_train(backend)[3]
    bw = backend.backward
    _raises(TypeError, lambda: bw((dy, dh_n)), "tape")
    _raises(ValueError, lambda: bw(replace(tape, backend="another"), dy), "tape", "another")
    _raises(ValueError, lambda: bw(tape, dy[:, :1]), "dy", "(2, 1, 5)", "(2, 2, 5)")
    _raises(ValueError, lambda: bw(tape, dy, dh_n.T), "dh_n")
    _raises(ValueError, lambda: bw(tape, dy, dh_n, dc_n[:, :2]), "dc_n")
    _raises(TypeError, lambda: bw(tape, dy.astype(foreign)), "dy", np.dtype(foreign).name)
    if backend.name != "numpy":  # a tape recorded by another backend
        _raises(ValueError, lambda: bw(p.astype(np.float64).forward_train(get_backend("numpy"))[3]), "tape", "numpy")
    layer_tape = backend.forward_layers_train(p.x[:, :1], [[p.params]])[3]
    _raises(TypeError, lambda: bw(layer_tape), "tape", "StackTape", "backward_layers")
    _raises(TypeError, lambda: backend.backward_layers(tape), "tape", "Tape")
    features = getattr(backend, "backward_features", frozenset())
    for feature, (problem_kw, options, word) in _FEATURE_ASKS.items():
        if feature in features:
            continue
        q = random_problem(3, 2, 3, 4, dtype=dtype, seed=29100, **problem_kw)
        _raises(UnsupportedFeatureError, partial(backend.forward_train, q.x, q.params, q.h0, q.c0, **options), word,
                feature)
    return 0.0


class CheckResult(NamedTuple):
    """Outcome of one conformance check.

    ``skipped`` checks did not run (the backend lacks a capability they need; ``message``
    says which) and are not ``passed``.
    """

    name: str
    passed: bool
    worst: float  # worst error / tolerance (NaN when the check raised or was skipped)
    seconds: float
    message: str
    skipped: bool = False


class ConformanceError(AssertionError):
    """Raised by :func:`run_conformance` when a check fails; ``results`` has them all."""

    def __init__(self, message: str, results: list[CheckResult]) -> None:
        super().__init__(message)
        self.results = results


#: name -> check; each takes a backend instance and returns its worst error / tolerance.
CHECKS: dict[str, Callable[[Any], float]] = {
    "forward": check_forward,
    "reverse": check_reverse,
    "default_state": check_default_state,
    "lengths": check_lengths,
    "row_independence": check_row_independence,
    "empty": check_empty,
    "out": check_out,
    "cell": check_cell,
    "cell_sequence": check_cell_sequence,
    "layer": check_layer,
    "memory_layouts": check_memory_layouts,
    "inputs_unchanged": check_inputs_unchanged,
    "nan_stays_in_row": check_nan_stays_in_row,
    "extreme_inputs": check_extreme_inputs,
    "deterministic": check_deterministic,
    "errors": check_errors,
    "aliasing": check_aliasing,
    "projection": check_projection,
    "peephole": check_peephole,
    "clip": check_clip,
    "activations": check_activations,
    "refuses_missing_features": check_refuses_missing_features,
    "backward": check_backward,
    "backward_defaults": check_backward_defaults,
    "backward_layer": check_backward_layer,
    "backward_deterministic": check_backward_deterministic,
    "backward_features": check_backward_features,
    "backward_gradcheck": check_backward_gradcheck,
    "backward_errors": check_backward_errors,
    "prepared": check_prepared,
    "bf16": check_bf16,
    "bf16x3": check_bf16x3,
    "njit_cell": check_njit_cell,
    "njit_forward": check_njit_forward,
    "njit_prange": check_njit_prange,
    "njit_errors": check_njit_errors,
}


def run_conformance(
    backend: Any,
    checks: list[str] | None = None,
    *,
    raise_on_failure: bool = True,
) -> list[CheckResult]:
    """Run the conformance checks against a backend.

    Parameters
    ----------
    backend : str or Backend
        A registered name or an instance (e.g. of your plugin's class).
    checks : list of str, optional
        Names from :data:`CHECKS`; all by default.  A check that needs a capability the
        backend lacks is reported as skipped (``skipped=True``, not passed).
    raise_on_failure : bool
        Raise :class:`ConformanceError` listing every failed check.

    Returns
    -------
    list of CheckResult

    Examples
    --------
    >>> from lstm_backends.testing import run_conformance
    >>> results = run_conformance("numpy", ["forward", "cell"])
    >>> all(r.passed for r in results)
    True
    """
    from .._registry import get_backend

    backend = get_backend(backend)
    names = list(CHECKS) if checks is None else list(checks)
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        raise ValueError(f"unknown checks {unknown}; known: {', '.join(CHECKS)}")
    results = []
    caps = getattr(backend, "capabilities", frozenset({"forward", "cell"}))
    for name in names:
        missing = sorted(requirements(CHECKS[name]) - set(caps))
        if missing:
            results.append(CheckResult(name, False, float("nan"), 0.0,
                                       f"not applicable: backend lacks {', '.join(missing)}", skipped=True))
            continue
        start = time.perf_counter()
        try:
            worst = float(CHECKS[name](backend))
            results.append(CheckResult(name, True, worst, time.perf_counter() - start, ""))
        except AssertionError as exc:
            results.append(CheckResult(name, False, float("nan"), time.perf_counter() - start, str(exc)))
        except Exception as exc:  # noqa: BLE001 - a crash is a failure to report, not to hide
            results.append(
                CheckResult(name, False, float("nan"), time.perf_counter() - start,
                            f"raised {type(exc).__name__}: {exc}")
            )
    failed = [r for r in results if not r.passed and not r.skipped]
    if failed and raise_on_failure:
        lines = "\n".join(f"  {r.name}: {r.message}" for r in failed)
        raise ConformanceError(
            f"backend {backend.name!r} failed {len(failed)} of {len(results)} conformance checks:\n{lines}",
            results,
        )
    return results
