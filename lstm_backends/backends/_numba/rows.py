"""Row and panel helpers shared by the workers and entries: sorting rows by length, the time
index of a row, the tape addresses, bias panels, projection packing, carrying finished rows,
the projection product, and the final state."""

from __future__ import annotations

from numba import njit

from ._jit import _JIT
from .blocks import A_CN, A_HN
from .intrinsics import _addr, _lanes_of, _ld, _ldf, _ldw, _memcpy, _mk, _pack, _st, _stf


@njit(inline="always", **_JIT)
def _record(tape_g, tape_c, tape_k, row, H, u, isz):
    """The tape addresses of ``row = t B + b``, units from ``u`` (0s without a tape)."""
    if tape_g == 0:
        return 0, 0, 0
    tk = 0
    if tape_k != 0:
        tk = tape_k + row * 4 * H + u
    return tape_g + (row * 4 * H + u) * isz, tape_c + (row * H + u) * isz, tk


@njit(inline="always", **_JIT)
def _block_rows(m, nblk, blk):
    """Rows of block ``blk`` when ``m`` rows are split into ``nblk`` blocks (the first ``m % nblk``
    one row longer)."""
    return m // nblk + (1 if blk < m % nblk else 0)


@njit(inline="always", **_JIT)
def _t_of(lens, r, s, rev):
    """The time index of sorted row ``r`` at processing step ``s`` (reversed: from its own end)."""
    if rev:
        return _ld(lens + 8 * r) - 1 - s
    return s


@njit(inline="always", **_JIT)
def _bias_panel(proto, b_ih, b_hh, dst, H, pp, V):
    """``dst[q*V + u] = b_ih + b_hh`` of unit pp*V + u of gate q (0 past H); b_ih, b_hh addresses."""
    nval = min(V, H - pp * V)
    isz = 64 // V
    for q in range(4):
        for u in range(V):
            at = dst + (q * V + u) * isz
            if u < nval:
                src = (q * H + pp * V + u) * isz
                _stf(proto, at, _ldf(proto, b_ih + src) + _ldf(proto, b_hh + src))
            else:
                _stf(proto, at, proto)


@njit(inline="always", **_JIT)
def _pack_proj(proto, w_hr, whrp, jp, H, S):
    """Pack projection panel ``jp`` (rows jp NB .. of W_hr (P, H)) for ``mk``: H rows of NB."""
    V = _lanes_of(proto)
    NB = 4 * V
    isz = 64 // V
    _pack(proto, w_hr + jp * NB * H * isz, H, V, V, S - jp * NB, 0, H, whrp + jp * H * NB * isz)


@njit(inline="always", **_JIT)
def _carry_rows(hnxt, hcur, m, prev, LDH, k0, k1, isz):
    """Rows ``m .. prev`` (they just finished) keep their h columns [k0, k1) in both h buffers."""
    for rr in range(m, prev):
        _memcpy(hnxt + (rr * LDH + k0) * isz, hcur + (rr * LDH + k0) * isz, (k1 - k0) * isz)


@njit(inline="always", **_JIT)
def _rows_left(lens, m, s):
    """Of the first ``m`` rows (sorted longest first), those still running at step ``s``."""
    while m > 0 and _ld(lens + 8 * (m - 1)) <= s:
        m -= 1
    return m


@njit(inline="always", **_JIT)
def _project_rows(proto, m, nblk, j0, j1, H, S, rbuf, LDC, whrp, zero, hnxt, LDH, y, ys0, ys1, tof, order, isz):
    """h = r W_hr^T of rows 0 .. m (``nblk`` row blocks) for the projection panels [j0, j1) into
    ``hnxt``, and those columns of y."""
    NB = 4 * _lanes_of(proto)
    for jp in range(j0, j1):
        ncol = min(NB, S - jp * NB)
        r0 = 0
        for blk in range(nblk):
            mr = _block_rows(m, nblk, blk)
            _mk(proto, mr, rbuf + r0 * LDC * isz, LDC, whrp + jp * H * NB * isz, H, zero, 0,
                hnxt + (r0 * LDH + jp * NB) * isz, LDH)
            r0 += mr
        for rr in range(m):
            _memcpy(y + (_ld(tof + 8 * rr) * ys0 + _ld(order + 8 * rr) * ys1 + jp * NB) * isz,
                    hnxt + (rr * LDH + jp * NB) * isz, ncol * isz)


@njit(inline="always", **_JIT)
def _final_state(argp, fin, c, order, B, S, H, LDH, LDC, hc0, hc1, u0, u1, isz):
    """h_n (columns [hc0, hc1) of the last h buffer ``fin``) and c_n (units [u0, u1)) in the caller's
    row order."""
    hn = _ldw(argp, A_HN)
    cn = _ldw(argp, A_CN)
    for rr in range(B):
        b = _ld(order + 8 * rr)
        _memcpy(hn + (b * S + hc0) * isz, fin + (rr * LDH + hc0) * isz, (hc1 - hc0) * isz)
        _memcpy(cn + (b * H + u0) * isz, c + (rr * LDC + u0) * isz, (u1 - u0) * isz)


@njit(inline="always", **_JIT)
def _sort_rows(lengths, T, B, cnt, order, lens):
    """Rows sorted by length, longest first (a stable counting sort; ``cnt`` scratch of T + 2 words):
    ``order[r]`` the row at sorted place r, ``lens[r]`` its length."""
    for k in range(T + 2):
        _st(cnt + 8 * k, 0)
    for r in range(B):
        _st(cnt + 8 * lengths[r], _ld(cnt + 8 * lengths[r]) + 1)
    run = 0
    for L in range(T, -1, -1):
        k = _ld(cnt + 8 * L)
        _st(cnt + 8 * L, run)
        run += k
    for r in range(B):
        at = cnt + 8 * lengths[r]
        _st(order + 8 * _ld(at), r)
        _st(at, _ld(at) + 1)
    for r in range(B):
        _st(lens + 8 * r, lengths[_ld(order + 8 * r)])


@njit(inline="always", **_JIT)
def _peep_of(w_peep, zero, V):
    """(address, panel step, row stride) of the peephole weights the gate update reads: ``w_peep``
    (3, H) when it has rows, else the zero vector ``zero`` (address) with steps 0 (the gate never uses
    it: flags has no PEEP)."""
    if w_peep.shape[0] > 0:
        return _addr(w_peep), V, w_peep.shape[1]
    return zero, 0, 0
