"""One step from the row-major weights, read in place (no packing: 16x16 in-register transposes
feed the same FMA chains as the packed kernels, so a cell is bitwise a one-step forward):
``cell_entry`` on one thread, ``cell_team_entry`` with the hidden panels split over a team in one
``prange`` region."""

from __future__ import annotations

from numba import njit, prange

from ._jit import _JIT, CACHE
from .intrinsics import _addr, _gate, _lanes_of, _memcpy, _memzero, _mkt, _zero_of
from .microkernels import MRCELL
from .rows import _bias_panel


@njit(**_JIT)
def _cell_layout(B, H, S, nproj, V, team):
    """Scratch layout of a cell call, in elements: (NP, NPP, split, ks, LDT, LDC, o_bias, o_r,
    o_zero, o_hb, need).  ``team``: room for the (B, LDC) h buffer of the team cell."""
    NB = 4 * V
    NP = (H + V - 1) // V
    NPP = 0
    if nproj > 0:
        NPP = (S + NB - 1) // NB
    split = (NP + 1) // 2
    ks = min(split * V, H)
    if NPP > 0:
        ks = min((NPP + 1) // 2 * NB, S)
    LDT = NP * NB
    LDC = (H + V - 1) // V * V
    o_bias = (MRCELL * LDT + 15) // 16 * 16
    o_r = o_bias + LDT
    o_zero = o_r + (MRCELL * LDC + 15) // 16 * 16
    o_hb = o_zero + NB
    need = o_hb
    if team:
        need = o_hb + B * LDC
    return NP, NPP, split, ks, LDT, LDC, o_bias, o_r, o_zero, o_hb, need


@njit(**_JIT)
def _cell_bias(proto, b_ih, b_hh, bias, zero, H, NP, V):
    """bias[pp*NB + q*V + u] = b_ih + b_hh of unit pp*V + u of gate q (0 past H); zero the zero vector."""
    NB = 4 * V
    isz = 64 // V
    _memzero(zero, NB * isz)
    for pp in range(NP):
        _bias_panel(proto, _addr(b_ih), _addr(b_hh), bias + pp * NB * isz, H, pp, V)


@njit(**_JIT)
def _cell_panels(proto, r0, mr, p0, p1, x, h, c, c_out, w_ih, w_hh, tiles, bias, LDT, split, ks, hdst, ldh,
                 flags, peep, pstep, ldpeep, clip):
    """Rows ``r0 .. r0+mr`` of a cell step for the hidden panels ``p0 .. p1``: the input and the
    recurrent products into the tile, then the gate update (c into ``c_out``, h — or, with a
    projection, m — into ``hdst``, row ``m`` at ``hdst + m * ldh`` elements)."""
    I = x.shape[1]  # noqa: E741
    H = c.shape[1]
    S = h.shape[1]
    V = _lanes_of(proto)
    NB = 4 * V
    isz = 64 // V
    xa = _addr(x) + r0 * I * isz
    ha = _addr(h) + r0 * S * isz
    for pp in range(p0, p1):
        nval = min(V, H - pp * V)
        tile = tiles + pp * NB * isz
        _mkt(proto, mr, xa, I, _addr(w_ih) + pp * V * I * isz, I, H, nval, 4 * H, 0, I, bias + pp * NB * isz, 0,
             tile, LDT)
        ka0, ka1, kb0, kb1 = 0, ks, ks, S
        if pp >= split:
            ka0, ka1, kb0, kb1 = ks, S, 0, ks
        wrow = _addr(w_hh) + pp * V * S * isz
        _mkt(proto, mr, ha, S, wrow, S, H, nval, 4 * H, ka0, ka1, tile, LDT, tile, LDT)
        _mkt(proto, mr, ha, S, wrow, S, H, nval, 4 * H, kb0, kb1, tile, LDT, tile, LDT)
    for m in range(mr):
        r = r0 + m
        for pp in range(p0, p1):
            nval = min(V, H - pp * V)
            cc = (r * H + pp * V) * isz
            _gate(proto, flags, tiles + (m * LDT + pp * NB) * isz, _addr(c) + cc, _addr(c_out) + cc,
                  hdst + (m * ldh + pp * V) * isz, 0, nval, peep + pp * pstep * isz, ldpeep, clip, 0, 0, 0, 0)


@njit(**_JIT)
def _cell_prepare(proto, b_ih, b_hh, w_peep, tiles, o_bias, o_zero, H, NP, V):
    """Fill the bias and zero vectors of a cell call's scratch (at element offsets ``o_bias``,
    ``o_zero`` from ``tiles``); returns their addresses and the peephole weights' (address,
    panel step, row stride) — the zero vector without peepholes."""
    isz = 64 // V
    bias = tiles + o_bias * isz
    zero = tiles + o_zero * isz
    _cell_bias(proto, b_ih, b_hh, bias, zero, H, NP, V)
    if w_peep.shape[0] > 0:
        return bias, zero, _addr(w_peep), V, w_peep.shape[1]
    return bias, zero, zero, 0, 0


@njit(**_JIT)
def cell_entry(x, h, c, w_ih, w_hh, b_ih, b_hh, w_hr, w_peep, h_out, c_out, flags, clip, scratch):
    """One step for B rows, from the row-major weights read in place (no packing), on one thread.

    x : (B, I); h : (B, S); c : (B, H); w_ih : (4H, I); w_hh : (4H, S); b_ih, b_hh : (4H,);
    w_hr : (P, H) or (0, 0); w_peep : (3, H) or (0, 0); h_out : (B, S), c_out : (B, H) written;
    ``h_out`` may be ``h`` and ``c_out`` may be ``c`` (every product of a block of rows is done
    before its state is written).  flags / clip as in ``forward_entry``.  scratch : float
    array, reused, nothing kept between calls.  The same FMA chains as the forward kernels:
    bitwise equal to a one-step forward.  Returns the scratch size needed (0: done; else
    nothing ran).
    """
    B = x.shape[0]
    H = c.shape[1]
    S = h.shape[1]
    proto = _zero_of(x)
    V = _lanes_of(proto)
    NB = 4 * V
    isz = 64 // V
    NP, NPP, split, ks, LDT, LDC, o_bias, o_r, o_zero, _o_hb, need = _cell_layout(B, H, S, w_hr.shape[0], V, False)
    if scratch.shape[0] < need:
        return need
    tiles = _addr(scratch)
    rbuf = tiles + o_r * isz
    bias, zero, peep, pstep, ldpeep = _cell_prepare(proto, b_ih, b_hh, w_peep, tiles, o_bias, o_zero, H, NP, V)
    for r0 in range(0, B, MRCELL):
        mr = min(MRCELL, B - r0)
        if NPP > 0:  # m into rbuf, then h = m @ W_hr.T
            _cell_panels(proto, r0, mr, 0, NP, x, h, c, c_out, w_ih, w_hh, tiles, bias, LDT, split, ks, rbuf, LDC,
                         flags, peep, pstep, ldpeep, clip)
        else:
            _cell_panels(proto, r0, mr, 0, NP, x, h, c, c_out, w_ih, w_hh, tiles, bias, LDT, split, ks,
                         _addr(h_out) + r0 * S * isz, S, flags, peep, pstep, ldpeep, clip)
        for jp in range(NPP):
            ncol = min(NB, S - jp * NB)
            _mkt(proto, mr, rbuf, LDC, _addr(w_hr) + jp * NB * H * isz, H, V, V, S - jp * NB, 0, H, zero, 0,
                 tiles, LDT)
            for m in range(mr):
                _memcpy(_addr(h_out) + ((r0 + m) * S + jp * NB) * isz, tiles + m * LDT * isz, ncol * isz)
    return 0


@njit(parallel=True, cache=CACHE, nogil=True, error_model="numpy")
def cell_team_entry(x, h, c, w_ih, w_hh, b_ih, b_hh, w_peep, h_out, c_out, flags, clip, scratch, n):
    """:func:`cell_entry` (without a projection) with the hidden panels split over ``n`` workers
    in one parallel region: each worker's block of W_ih / W_hh rows stays in its core's cache
    from call to call.  Every panel is the same FMA chains as in ``cell_entry``: bitwise equal.
    h is gathered in a scratch buffer and copied to ``h_out`` after the region (``h_out`` may be
    ``h``, which every worker reads whole).  Returns the scratch size needed (0: done)."""
    B = x.shape[0]
    H = c.shape[1]
    S = h.shape[1]
    proto = _zero_of(x)
    V = _lanes_of(proto)
    isz = 64 // V
    NP, _npp, split, ks, LDT, LDC, o_bias, _o_r, o_zero, o_hb, need = _cell_layout(B, H, S, 0, V, True)
    if scratch.shape[0] < need:
        return need
    tiles = _addr(scratch)
    hb = tiles + o_hb * isz
    bias, _zero, peep, pstep, ldpeep = _cell_prepare(proto, b_ih, b_hh, w_peep, tiles, o_bias, o_zero, H, NP, V)
    for w in prange(n):
        p0 = w * NP // n
        p1 = (w + 1) * NP // n
        for r0 in range(0, B, MRCELL):
            _cell_panels(proto, r0, min(MRCELL, B - r0), p0, p1, x, h, c, c_out, w_ih, w_hh, tiles, bias, LDT,
                         split, ks, hb + r0 * LDC * isz, LDC, flags, peep, pstep, ldpeep, clip)
    for r in range(B):
        _memcpy(_addr(h_out) + r * S * isz, hb + r * LDC * isz, H * isz)
    return 0
