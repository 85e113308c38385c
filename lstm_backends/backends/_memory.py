"""Aligned host memory for the kernels' workspaces and packed weights (NumPy only)."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["aligned_empty"]

_HUGE = 2 << 20


def aligned_empty(n: int, dtype: Any) -> np.ndarray:
    """``n`` elements, 64-byte aligned; from 2 MiB on, 2 MiB aligned and ``madvise(MADV_HUGEPAGE)``d
    before the first touch (Linux, THP in "madvise" mode; harmless elsewhere): the packed weights
    fill most of a core's L2, which is physically indexed, and with 4 KiB pages some processes
    got conflict misses (the same kernel 0.78 ms in one process, 1.3 ms in others)."""
    dtype = np.dtype(dtype)
    nbytes = max(n, 1) * dtype.itemsize
    if nbytes < _HUGE:
        raw = np.empty(nbytes + 64, np.uint8)
        shift = -raw.ctypes.data % 64
        return raw[shift:shift + nbytes].view(dtype)
    raw = np.empty(nbytes + _HUGE, np.uint8)
    shift = -raw.ctypes.data % _HUGE
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        size = (nbytes + _HUGE - 1) // _HUGE * _HUGE
        libc.madvise(ctypes.c_void_p(raw.ctypes.data + shift), ctypes.c_size_t(size), 14)  # MADV_HUGEPAGE
    except Exception:  # pragma: no cover - not Linux
        pass
    return raw[shift:shift + nbytes].view(dtype)
