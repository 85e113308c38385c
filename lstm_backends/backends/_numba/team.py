"""The team protocol: the handshake that forms a team inside one parallel region (never
deadlocks), the step counters and waits, the full barrier, and ``run_team`` (the one parallel
region of every kind and dtype: it calls a worker C callback by address)."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ._jit import _JIT, CACHE
from .blocks import W_ARRIVED, W_DONE0, W_TEAM
from .intrinsics import _atomic_add, _call_worker, _load_acq, _pause, _store_rel, _ticks, _wait_ge, _yield


@njit(inline="always", **_JIT)
def _handshake(sync, nlaunch, wait_ticks):
    """Form the team (see ``_worker``): (this worker's index, team size); an index >= the team size
    means: leave."""
    index = _atomic_add(sync + 8 * W_ARRIVED, 1)
    if index == 0:
        t0 = _ticks()
        while _load_acq(sync + 8 * W_ARRIVED) < nlaunch:
            dt = _ticks() - t0
            if dt > wait_ticks:
                break
            if dt > (wait_ticks >> 3):
                _yield()
            else:
                _pause()
        n = _load_acq(sync + 8 * W_ARRIVED)
        _store_rel(sync + 8 * W_TEAM, n)
    else:
        _wait_ge(sync + 8 * W_TEAM, 1)
        n = _load_acq(sync + 8 * W_TEAM)
    return index, n


@njit(inline="always", **_JIT)
def _share(w, n, total):
    """Worker ``w`` of ``n``'s contiguous share [lo, hi) of ``total`` items: [ceil(w total / n),
    ceil((w+1) total / n))."""
    return (w * total + n - 1) // n, ((w + 1) * total + n - 1) // n


@njit(inline="always", **_JIT)
def _wait_others(done, w, v0, v1, k):
    """Wait until the step counters of workers ``v0 .. v1-1`` other than ``w`` reach ``k``; worker
    v's counter is at ``done + 128 v`` (``done``: the address of worker 0's DONE or RDONE word)."""
    for v in range(v0, v1):
        if v != w:
            _wait_ge(done + 8 * 16 * v, k)


@njit(inline="always", **_JIT)
def _barrier(sync, w, n, k):
    """Barrier number ``k`` (1, 2, ... in order) of a team of ``n``: publish, wait for the others."""
    _store_rel(sync + 8 * (W_DONE0 + 16 * w), k)
    _wait_others(sync + 8 * W_DONE0, w, 0, n, k)


@njit(parallel=True, cache=CACHE, nogil=True)
def run_team(fn, proto, argp, n):
    """The parallel region of every kind: ``n`` iterations, each calls the worker C callback at
    address ``fn`` with ``proto`` (a zero of the dtype), its iteration index and the argument
    block ``argp``.  Nothing else runs in it (Numba's parfor passes analyse the whole function)."""
    for p in prange(n):
        _call_worker(fn, proto, np.int64(p), argp)
