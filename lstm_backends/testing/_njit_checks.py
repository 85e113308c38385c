"""Conformance checks of a backend's njit-callable kernels (capability ``njit``).

A backend that declares ``njit`` has an attribute ``jit``: a module or object with
``prepare(params, *, clip=None, input_forget=False)``, ``cell(x, h, c, w, h_out, c_out)`` and
``forward(x, w, h0, c0, y, h_n, c_n, lengths=None, reverse=False)``, the last two callable from
the user's own ``@numba.njit`` functions (see :mod:`lstm_backends.jit`, the numba backend's).
Each check calls them exactly as a user would: from jitted functions written here, as closures
over ``jit.cell`` / ``jit.forward``, compared with the float64 reference.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._compare import _can, _dtypes, assert_close
from ._problems import random_params, random_problem, reference_cell, reference_forward

__all__ = ["check_njit_cell", "check_njit_errors", "check_njit_forward", "check_njit_prange"]


_USER: dict = {}   # (id of the jit module, what) -> the user-style jitted function (compiled once per process)


def _user_functions(jm: Any) -> Any:
    """User-style @njit functions over ``jm.cell`` / ``jm.forward`` (built once per jit module)."""
    key = id(jm)
    if key not in _USER or _USER[key][0] is not jm:
        import numba

        cell, forward = jm.cell, jm.forward

        @numba.njit
        def steps(w, xs, h, c, hs):   # T in-place steps, h after each step into hs
            for t in range(xs.shape[0]):
                cell(xs[t], h, c, w, h, c)
                hs[t] = h

        @numba.njit
        def sequence(w, x, h0, c0, y, h_n, c_n, lengths, reverse):
            forward(x, w, h0, c0, y, h_n, c_n, lengths, reverse)

        @numba.njit(parallel=True)
        def rows_apart(w, xs, h, c):   # every row its own sequence, in parallel
            for b in numba.prange(h.shape[0]):
                for t in range(xs.shape[0]):
                    cell(xs[t, b:b + 1], h[b:b + 1], c[b:b + 1], w, h[b:b + 1], c[b:b + 1])

        @numba.njit
        def rows_serial(w, xs, h, c):
            for b in range(h.shape[0]):
                for t in range(xs.shape[0]):
                    cell(xs[t, b:b + 1], h[b:b + 1], c[b:b + 1], w, h[b:b + 1], c[b:b + 1])

        _USER[key] = (jm, (steps, sequence, rows_apart, rows_serial))   # (jm kept: its id stays its own)
    return _USER[key][1]


def _variants(backend: Any) -> list[dict]:
    """The feature variants the backend declares: plain, projection, peepholes + clip + input_forget."""
    out: list[dict] = [{}]
    if _can(backend, "projection"):
        out.append({"proj_size": 3})
    if _can(backend, "peephole") and _can(backend, "clip"):
        out.append({"peephole": True, "clip": 0.8, "input_forget": True})
    return out


def check_njit_cell(backend: Any) -> float:
    """``jit.cell`` stepped in place from a user's @njit loop equals the reference after every step
    (B = 1 and B > 1, H not a multiple of the vector width, each feature variant), and from Python."""
    jm = backend.jit
    steps = _user_functions(jm)[0]
    worst = 0.0
    for dtype in _dtypes(backend):
        for k, (t, b, i, h) in enumerate([(5, 1, 4, 9), (4, 7, 6, 21)]):
            for v, feats in enumerate(_variants(backend)):
                opts = {o: feats[o] for o in ("clip", "input_forget") if o in feats}
                p = random_problem(t, b, i, h, dtype=dtype, seed=30000 + 10 * k + v,
                                   proj_size=feats.get("proj_size", 0), peephole=feats.get("peephole", False),
                                   **opts)
                ref_y, _, ref_c = reference_forward(p)
                w = jm.prepare(p.params, **opts)
                hh, cc = p.h0.copy(), p.c0.copy()
                hs = np.empty((t,) + hh.shape, dtype)
                steps(w, p.x, hh, cc, hs)
                ctx = f"{backend.name} jit.cell from @njit: {p.describe()}"
                worst = max(worst, assert_close(hs, ref_y, dtype=dtype, name="h at every step", context=ctx),
                            assert_close(cc, ref_c, dtype=dtype, name="c", context=ctx))
                h1, c1 = np.empty_like(p.h0), np.empty_like(p.c0)
                jm.cell(p.x[0], p.h0, p.c0, w, h1, c1)
                ref_h1, ref_c1 = reference_cell(p.x[0], p.h0, p.c0, p.params, **opts)
                ctx = f"{backend.name} jit.cell from Python: {p.describe()}"
                worst = max(worst, assert_close(h1, ref_h1, dtype=dtype, name="h", context=ctx),
                            assert_close(c1, ref_c1, dtype=dtype, name="c", context=ctx))
    return worst


def check_njit_forward(backend: Any) -> float:
    """``jit.forward`` from a user's @njit function and from Python equals the reference: lengths
    (0 and T included), both directions, ``h_n``/``c_n`` updated in place of ``h0``/``c0``."""
    jm = backend.jit
    sequence = _user_functions(jm)[1]
    worst = 0.0
    for dtype in _dtypes(backend):
        for reverse in (False, True):
            for v, feats in enumerate(_variants(backend)):
                opts = {o: feats[o] for o in ("clip", "input_forget") if o in feats}
                p = random_problem(6, 5, 4, 11, dtype=dtype, seed=31000 + 10 * reverse + v, lengths="random",
                                   reverse=reverse, proj_size=feats.get("proj_size", 0),
                                   peephole=feats.get("peephole", False), **opts)
                ref = reference_forward(p)
                w = jm.prepare(p.params, **opts)
                y = np.full(ref[0].shape, np.nan, dtype)
                h_n, c_n = p.h0.copy(), p.c0.copy()   # in place of h0, c0
                sequence(w, p.x, h_n, c_n, y, h_n, c_n, p.lengths, reverse)
                ctx = f"{backend.name} jit.forward from @njit: {p.describe()}"
                worst = max([worst] + [assert_close(g, r, dtype=dtype, name=n, context=ctx)
                                       for g, r, n in zip((y, h_n, c_n), ref, ("y", "h_n", "c_n"))])
                out = (np.full(ref[0].shape, np.nan, dtype), np.empty_like(p.h0), np.empty_like(p.c0))
                jm.forward(p.x, w, p.h0, p.c0, *out, lengths=p.lengths, reverse=reverse)
                ctx = f"{backend.name} jit.forward from Python: {p.describe()}"
                worst = max([worst] + [assert_close(g, r, dtype=dtype, name=n, context=ctx)
                                       for g, r, n in zip(out, ref, ("y", "h_n", "c_n"))])
    return worst


def check_njit_prange(backend: Any) -> float:
    """``jit.cell`` inside a user's ``prange`` loop (every iteration its own row) equals the same
    loop run serially, bitwise, and the reference."""
    jm = backend.jit
    _, _, rows_apart, rows_serial = _user_functions(jm)
    worst = 0.0
    for dtype in _dtypes(backend):
        p = random_problem(5, 9, 3, 10, dtype=dtype, seed=32000)
        w = jm.prepare(p.params)
        h_a, c_a = p.h0.copy(), p.c0.copy()
        rows_apart(w, p.x, h_a, c_a)
        h_s, c_s = p.h0.copy(), p.c0.copy()
        rows_serial(w, p.x, h_s, c_s)
        np.testing.assert_array_equal(h_a, h_s, err_msg=f"{backend.name}: jit.cell in prange differs from serial")
        np.testing.assert_array_equal(c_a, c_s, err_msg=f"{backend.name}: jit.cell in prange differs from serial")
        _, ref_h, ref_c = reference_forward(p)
        ctx = f"{backend.name} jit.cell in prange: {p.describe()}"
        worst = max(worst, assert_close(h_a, ref_h, dtype=dtype, name="h_n", context=ctx),
                    assert_close(c_a, ref_c, dtype=dtype, name="c_n", context=ctx))
    return worst


def check_njit_errors(backend: Any) -> float:
    """Wrong shapes raise ``ValueError`` inside compiled code (no out-of-bounds access: the outputs
    stay untouched) and from Python; a dtype other than the weights' is refused."""
    jm = backend.jit
    steps, sequence = _user_functions(jm)[:2]
    dtype = _dtypes(backend)[0]
    p = random_params(4, 9, dtype=dtype, rng=33000)
    w = jm.prepare(p)
    xs = np.ones((2, 3, 5), dtype)                       # I = 5, prepared I = 4
    h, c, hs = np.zeros((3, 9), dtype), np.zeros((3, 9), dtype), np.full((2, 3, 9), 7, dtype)
    for call in (lambda: steps(w, xs, h, c, hs), lambda: jm.cell(xs[0], h, c, w, h, c)):
        try:
            call()
        except ValueError:
            pass
        else:
            raise AssertionError(f"{backend.name}: jit.cell with x of the wrong width did not raise ValueError")
    assert (hs == 7).all() and not h.any(), f"{backend.name}: a refused jit.cell call wrote its outputs"
    y = np.full((2, 4, 9), 7, dtype)                     # B = 4, x has B = 3
    x = np.ones((2, 3, 4), dtype)
    try:
        sequence(w, x, h, c, y, h, c, None, False)
    except ValueError:
        pass
    else:
        raise AssertionError(f"{backend.name}: jit.forward with y of the wrong shape did not raise ValueError")
    assert (y == 7).all(), f"{backend.name}: a refused jit.forward call wrote y"
    other = np.float64 if dtype == np.float32 else np.float32
    try:
        jm.cell(x[0].astype(other), h.astype(other), c.astype(other), w, h.astype(other), c.astype(other))
    except (TypeError, ValueError):
        pass
    else:
        raise AssertionError(f"{backend.name}: jit.cell accepted arrays of another dtype than the weights")
    return 0.0


for _check in (check_njit_cell, check_njit_forward, check_njit_prange, check_njit_errors):
    _check.requires = frozenset({"njit"})  # type: ignore[attr-defined]
