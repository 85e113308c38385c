"""Comparison with per-dtype tolerances and failure reports that say where and by how much."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["TOLERANCES", "assert_close", "to_host", "worst_error"]

#: ``(rtol, atol)`` against the float64 reference, by the dtype computed in.
#: float32 rounding over a few dozen steps stays far inside; a wrong gate, a
#: transposed weight or a dropped bias misses by orders of magnitude.
TOLERANCES: dict[np.dtype, tuple[float, float]] = {
    np.dtype(np.float32): (2e-4, 2e-5),
    np.dtype(np.float64): (1e-10, 1e-12),
}


def _dtypes(backend: Any) -> list[np.dtype]:
    """The dtypes a backend computes in (the checks' loop over dtypes)."""
    return [np.dtype(d) for d in getattr(backend, "dtypes", (np.float32, np.float64))]


def _can(backend: Any, feature: str) -> bool:
    """Whether a backend declares the capability ``feature``."""
    return feature in getattr(backend, "capabilities", frozenset({"forward", "cell"}))


def to_host(a: Any) -> np.ndarray:
    """A NumPy copy of a host or device array (``copy_to_host``/``get``/``cpu`` when needed)."""
    if hasattr(a, "__cuda_array_interface__") and not isinstance(a, np.ndarray):
        for method in ("copy_to_host", "get"):
            if callable(getattr(a, method, None)):
                return np.asarray(getattr(a, method)())
        if callable(getattr(a, "cpu", None)):
            return a.cpu().numpy()
    return np.asarray(a)


def worst_error(actual: Any, expected: Any, dtype: Any) -> float:
    """Largest ``|actual - expected| / (atol + rtol * |expected|)``; <= 1 passes, NaN mismatch is inf."""
    rtol, atol = TOLERANCES[np.dtype(dtype)]
    a = to_host(actual).astype(np.float64)
    e = np.asarray(expected, dtype=np.float64)
    if a.shape != e.shape:
        return float("inf")
    if a.size == 0:
        return 0.0
    nan_a, nan_e = np.isnan(a), np.isnan(e)
    if (nan_a != nan_e).any():
        return float("inf")
    with np.errstate(invalid="ignore"):
        ratio = np.where(nan_e, 0.0, np.abs(a - e) / (atol + rtol * np.abs(e)))
    ratio = np.where(np.isinf(e) & (a == e), 0.0, ratio)
    return float(np.nan_to_num(ratio, nan=np.inf).max())


def assert_close(actual: Any, expected: Any, *, dtype: Any, name: str, context: str = "") -> float:
    """Assert ``actual`` matches ``expected`` within the tolerance of ``dtype``.

    Parameters
    ----------
    actual : array (host or device)
    expected : ndarray (float64 reference)
    dtype : numpy dtype the backend computed in (selects the tolerance)
    name : str
        What is compared (``"y"``, ``"h_n"``, …).
    context : str
        Problem description with its seed, included in the failure message.

    Returns
    -------
    float
        The worst error as a fraction of the tolerance (<= 1).

    Raises
    ------
    AssertionError
        Shape mismatch, NaN pattern mismatch, or values out of tolerance: the message
        gives the count, the worst index with both values, the first few mismatches
        and ``context``.
    """
    rtol, atol = TOLERANCES[np.dtype(dtype)]
    a = to_host(actual)
    e = np.asarray(expected)
    where = f" [{context}]" if context else ""
    if a.shape != e.shape:
        raise AssertionError(f"{name}: shape {a.shape}, expected {e.shape}{where}")
    if a.dtype != np.dtype(dtype):
        raise AssertionError(f"{name}: dtype {a.dtype}, expected {np.dtype(dtype)}{where}")
    worst = worst_error(a, e, dtype)
    if worst <= 1.0:
        return worst
    a64, e64 = a.astype(np.float64), e.astype(np.float64)
    with np.errstate(invalid="ignore"):
        bad = ~(np.isclose(a64, e64, rtol=rtol, atol=atol, equal_nan=True))
    idx = np.argwhere(bad)
    with np.errstate(invalid="ignore"):
        err = np.nan_to_num(np.abs(a64 - e64), nan=np.inf)
    worst_idx = tuple(int(i) for i in np.unravel_index(np.argmax(np.where(bad, err, -1)), a.shape))
    first = ", ".join(
        f"{tuple(int(i) for i in ix)}: {a64[tuple(ix)]:.8g} vs {e64[tuple(ix)]:.8g}" for ix in idx[:5]
    )
    raise AssertionError(
        f"{name}: {len(idx)} of {a.size} elements differ beyond atol={atol:g} + rtol={rtol:g}*|ref| "
        f"({np.dtype(dtype).name}); worst at {worst_idx}: got {a64[worst_idx]:.8g}, "
        f"expected {e64[worst_idx]:.8g} (|diff| {err[worst_idx]:.3g}, {worst:.3g}x tolerance); "
        f"first: {first}{where}"
    )
