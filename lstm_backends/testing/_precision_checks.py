"""Conformance checks of prepared weights (``Backend.prepare``) and the precision modes.

``prepared`` applies to every backend with ``forward``; ``bf16`` / ``bf16x3`` to backends that
declare those capabilities.  A mode is checked two ways: one step against the NumPy oracle of the
same mode (float64 sums of the same bfloat16-rounded operands: only the summation order may
differ, ``ONE_STEP``), and whole sequences against the plain float64 reference within the mode's
stated accuracy (:data:`ACCURACY`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._errors import UnsupportedFeatureError
from .._prepared import ACCURACY
from ._compare import _can, _dtypes, assert_close, to_host
from ._problems import random_problem, reference_forward

__all__ = ["ACCURACY", "ONE_STEP", "check_bf16", "check_bf16x3", "check_prepared"]

#: max abs difference of one step from the NumPy oracle of the same mode (summation order only)
ONE_STEP = 5e-5


def check_prepared(backend: Any) -> float:
    """``prepare(params)`` is accepted by ``forward`` (and ``cell``) with the same results as the
    params themselves, holds its own copy (editing the arrays afterwards changes nothing), and an
    unknown precision is refused with the valid ones listed."""
    from .._prepared import PreparedParams

    worst = 0.0
    for dtype in _dtypes(backend):
        p = random_problem(7, 3, 5, 19, dtype=dtype, seed=40000, lengths="random")
        plain = [to_host(a).copy() for a in p.forward(backend)]
        params = p.params._replace(**{k: np.array(getattr(p.params, k)) for k in ("w_ih", "w_hh", "b_ih", "b_hh")})
        w = backend.prepare(params)
        assert isinstance(w, PreparedParams) and w.precision is None, f"{backend.name}: prepare returned {w!r}"
        ref = reference_forward(p)
        ctx = f"{backend.name} prepared params: {p.describe()}"
        got = [to_host(a).copy() for a in backend.forward(p.x, w, p.h0, p.c0, lengths=p.lengths)]
        for g, r, q, n in zip(got, ref, plain, ("y", "h_n", "c_n")):
            worst = max(worst, assert_close(g, r, dtype=dtype, name=n, context=ctx))
            rtol = 1e-5 if dtype == np.float32 else 1e-12
            np.testing.assert_allclose(g, q, rtol=rtol, atol=rtol, err_msg=f"{n}: prepared params differ from the "
                                                                            f"params themselves [{ctx}]")
        for a in params[:4]:
            a *= 2.0   # the caller edits its arrays afterwards ...
        again = [to_host(a) for a in backend.forward(p.x, w, p.h0, p.c0, lengths=p.lengths)]
        for g, a, n in zip(got, again, ("y", "h_n", "c_n")):
            np.testing.assert_array_equal(a, g, err_msg=f"{n}: an edit of the arrays after prepare() reached the "
                                                        f"prepared params [{ctx}]")
        if _can(backend, "cell"):
            h1, c1 = backend.cell(p.x[0], p.h0, p.c0, w)
            h2, c2 = backend.cell(p.x[0], p.h0, p.c0, p.params)
            for a, b, n in ((h1, h2, "h"), (c1, c2, "c")):
                np.testing.assert_allclose(to_host(a), to_host(b), rtol=1e-5, atol=1e-6,
                                           err_msg=f"cell {n} with prepared params [{ctx}]")
    try:
        backend.prepare(p.params, precision="bf8")
    except ValueError as exc:
        assert "bf16" in str(exc) and "bf16x3" in str(exc), f"{backend.name}: the refusal must list the modes: {exc}"
    else:
        raise AssertionError(f"{backend.name}: prepare(precision='bf8') was accepted")
    return worst


def _check_mode(backend: Any, mode: str, seed: int) -> float:
    from ..backends.numpy_backend import NumpyBackend

    oracle = NumpyBackend()
    worst = 0.0
    variants: list[dict] = [{}]
    if _can(backend, "projection"):
        variants.append({"proj_size": 5})
    for v, feats in enumerate(variants):
        for reverse in (False, True):
            # one step: the promised rounding, up to summation order
            p1 = random_problem(1, 4, 21, 37, dtype=np.float32, seed=seed + 10 * v + reverse, reverse=reverse,
                                **feats)
            w = backend.prepare(p1.params, precision=mode)
            one = [to_host(a) for a in backend.forward(p1.x, w, p1.h0, p1.c0, reverse=reverse)]
            p64 = p1.astype(np.float64)
            exact = oracle.forward(p64.x, oracle.prepare(p64.params, precision=mode), p64.h0, p64.c0,
                                   reverse=reverse)
            ctx = f"{backend.name} precision={mode}, one step: {p1.describe()}"
            for g, r, n in zip(one, exact, ("y", "h_n", "c_n")):
                err = float(np.max(np.abs(g.astype(np.float64) - r)))
                assert err <= ONE_STEP, (f"{n}: one step differs from the {mode} rounding by {err:.3g} > {ONE_STEP:g} "
                                         f"(more than a summation order can explain) [{ctx}]")
                worst = max(worst, err / ONE_STEP)
            # sequences: the stated accuracy against the float64 reference
            p = random_problem(20, 3, 9, 23, dtype=np.float32, seed=seed + 100 + 10 * v + reverse, lengths="random",
                               reverse=reverse, **feats)
            ref = reference_forward(p)
            got = [to_host(a) for a in backend.forward(p.x, backend.prepare(p.params, precision=mode), p.h0, p.c0,
                                                       lengths=p.lengths, reverse=reverse)]
            ctx = f"{backend.name} precision={mode}: {p.describe()}"
            for g, r, n in zip(got, ref, ("y", "h_n", "c_n")):
                err = float(np.max(np.abs(g.astype(np.float64) - r)))
                assert err <= ACCURACY[mode], (f"{n}: error {err:.3g} against the float64 reference exceeds the "
                                               f"{mode} bound {ACCURACY[mode]:g} [{ctx}]")
                worst = max(worst, err / ACCURACY[mode])
            if _can(backend, "cell"):
                h1, c1 = backend.cell(p1.x[0], p1.h0, p1.c0, w)
                assert_close(h1, one[1], dtype=np.float32, name="cell h vs forward T=1", context=ctx)
                assert_close(c1, one[2], dtype=np.float32, name="cell c vs forward T=1", context=ctx)
    if _can(backend, "backward") and mode not in getattr(backend, "backward_features", frozenset()):
        try:
            backend.forward_train(p.x, backend.prepare(p.params, precision=mode))
        except UnsupportedFeatureError:
            pass
        else:
            raise AssertionError(f"{backend.name}: forward_train accepted precision={mode!r} without training it")
    return worst


def check_bf16(backend: Any) -> float:
    """``prepare(params, precision="bf16")``: one step is the promised rounding (bfloat16 operands,
    float32 sums) up to summation order; sequences within 8e-3 of float64; ``cell`` equals
    ``forward`` with T=1; training refused unless the backend trains in the mode."""
    return _check_mode(backend, "bf16", 41000)


def check_bf16x3(backend: Any) -> float:
    """As ``bf16`` for ``precision="bf16x3"`` (hi/lo splits, three products): within 1e-5 of float64."""
    return _check_mode(backend, "bf16x3", 42000)


check_prepared.requires = frozenset({"forward"})  # type: ignore[attr-defined]
check_bf16.requires = frozenset({"forward", "bf16"})  # type: ignore[attr-defined]
check_bf16x3.requires = frozenset({"forward", "bf16x3"})  # type: ignore[attr-defined]
