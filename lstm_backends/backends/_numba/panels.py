"""The weights as the kernels' panels, packed by NumPy once (``Backend.prepare``, ``lstm_backends.jit``):
the layout the forward workers pack on every call otherwise (see the package docstring, "Layout")."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._memory import aligned_empty

__all__ = ["aligned", "panels"]


def aligned(a: Any) -> np.ndarray:
    """A C-contiguous copy of ``a`` on a cache-line boundary (the micro-kernels load whole 64-byte
    panel rows; NumPy aligns to 16 bytes only), huge-page advised from 2 MiB on, as the workspaces."""
    a = np.asarray(a)
    out = aligned_empty(a.size, a.dtype)[:a.size].reshape(a.shape)
    out[...] = a
    return out


def _panels(W: np.ndarray, H: int, V: int, NP: int) -> np.ndarray:
    """(4H, K) gate rows -> (NP, K, 4V) panels: ``out[p, k, q V + u] = W[q H + p V + u, k]`` (0 past H)."""
    K = W.shape[1]
    g = np.zeros((4, NP * V, K), W.dtype)
    g[:, :H] = W.reshape(4, H, K)
    return np.ascontiguousarray(g.reshape(4, NP, V, K).transpose(1, 3, 0, 2).reshape(NP, K, 4 * V))


def panels(w_ih: Any, w_hh: Any, b_ih: Any, b_hh: Any, w_hr: Any, dtype: Any) -> tuple[np.ndarray, ...]:
    """The weights as the kernels' panels (what the forward workers pack on every call), in ``dtype``.

    Returns
    -------
    w_ih : ndarray, shape (NP, I, 4V)
    w_hh : ndarray, shape (NP, S, 4V)
    bias : ndarray, shape (NP, 4V)
        ``b_ih + b_hh`` (zeros for a None), summed in ``dtype``.
    w_hr : ndarray, shape (NPP, H, 4V), or (0, 0, 4V) without a projection
        ``out[j, k, n] = W_hr[j 4V + n, k]`` (0 past P).
    """
    dt = np.dtype(dtype)
    w_ih, w_hh = np.asarray(w_ih, dt), np.asarray(w_hh, dt)
    H = w_hh.shape[0] // 4
    V = 16 if dt == np.float32 else 8
    NB = 4 * V
    NP = -(-H // V)
    b_ih = np.asarray(b_ih, dt) if b_ih is not None else np.zeros(4 * H, dt)
    b_hh = np.asarray(b_hh, dt) if b_hh is not None else np.zeros(4 * H, dt)
    bias = _panels((b_ih + b_hh).reshape(4 * H, 1), H, V, NP).reshape(NP, NB)
    if w_hr is not None:
        P, K = w_hr.shape   # (K = H, or more columns for a precision mode's split rows)
        NPP = -(-P // NB)
        hr = np.zeros((NPP * NB, K), dt)
        hr[:P] = np.asarray(w_hr, dt)
        hr_p = np.ascontiguousarray(hr.reshape(NPP, NB, K).transpose(0, 2, 1))
    else:
        hr_p = np.zeros((0, 0, NB), dt)
    return tuple(aligned(a) for a in (_panels(w_ih, H, V, NP), _panels(w_hh, H, V, NP), bias, hr_p))
