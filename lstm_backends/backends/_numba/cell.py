"""One step from the row-major weights, read in place (no packing: 16x16 in-register transposes
feed the same FMA chains as the packed kernels, so a cell is bitwise a one-step forward):
``cell_entry`` on one thread; ``cell_team_entry`` and ``_cell_worker`` with the hidden panels split
over a team in ``run_team``, the one parallel region of every kernel."""

# ruff: noqa: F405 (the argument-block names come from ``blocks``' star import)

from __future__ import annotations

import numpy as np
from numba import njit

from ._jit import _JIT
from .blocks import *  # noqa: F403 -- the C_* word offsets of the cell team's argument block, NARGS, W_*
from .intrinsics import _addr, _atomic_add, _gate, _lanes_of, _ldf, _ldw, _memcpy, _memzero, _mkt, _stf, _stw, _zero_of
from .microkernels import MRCELL
from .rows import _bias_panel, _peep_of
from .team import run_team


@njit(inline="always", **_JIT)
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


@njit(inline="always", **_JIT)
def _cell_bias(proto, b_ih, b_hh, bias, zero, H, NP, V):
    """bias[pp*NB + q*V + u] = b_ih + b_hh of unit pp*V + u of gate q (0 past H); zero the zero vector."""
    NB = 4 * V
    isz = 64 // V
    _memzero(zero, NB * isz)
    for pp in range(NP):
        _bias_panel(proto, _addr(b_ih), _addr(b_hh), bias + pp * NB * isz, H, pp, V)


@njit(inline="always", **_JIT)
def _cell_panels(proto, r0, mr, p0, p1, x, I, h, S, c, c_out, H, w_ih, w_hh, tiles, bias, LDT, split, ks, hdst,  # noqa: E741
                 ldh, flags, peep, pstep, ldpeep, clip):
    """Rows ``r0 .. r0+mr`` of a cell step for the hidden panels ``p0 .. p1``: the input and the
    recurrent products into the tile, then the gate update (c into ``c_out``, h — or, with a
    projection, m — into ``hdst``, row ``m`` at ``hdst + m * ldh`` elements).  Arrays by address:
    x (B, I), h (B, S), c and c_out (B, H), w_ih (4H, I), w_hh (4H, S), all C-contiguous."""
    V = _lanes_of(proto)
    NB = 4 * V
    isz = 64 // V
    xa = x + r0 * I * isz
    ha = h + r0 * S * isz
    for pp in range(p0, p1):
        nval = min(V, H - pp * V)
        tile = tiles + pp * NB * isz
        _mkt(proto, mr, xa, I, w_ih + pp * V * I * isz, I, H, nval, 4 * H, 0, I, bias + pp * NB * isz, 0,
             tile, LDT)
        ka0, ka1, kb0, kb1 = 0, ks, ks, S
        if pp >= split:
            ka0, ka1, kb0, kb1 = ks, S, 0, ks
        wrow = w_hh + pp * V * S * isz
        _mkt(proto, mr, ha, S, wrow, S, H, nval, 4 * H, ka0, ka1, tile, LDT, tile, LDT)
        _mkt(proto, mr, ha, S, wrow, S, H, nval, 4 * H, kb0, kb1, tile, LDT, tile, LDT)
    for m in range(mr):
        r = r0 + m
        for pp in range(p0, p1):
            nval = min(V, H - pp * V)
            cc = (r * H + pp * V) * isz
            _gate(proto, flags, tiles + (m * LDT + pp * NB) * isz, c + cc, c_out + cc,
                  hdst + (m * ldh + pp * V) * isz, 0, nval, peep + pp * pstep * isz, ldpeep, clip, 0, 0, 0, 0)


@njit(inline="always", **_JIT)
def _cell_prepare(proto, b_ih, b_hh, w_peep, tiles, o_bias, o_zero, H, NP, V):
    """Fill the bias and zero vectors of a cell call's scratch (at element offsets ``o_bias``,
    ``o_zero`` from ``tiles``); returns their addresses and the peephole weights' (address,
    panel step, row stride) — the zero vector without peepholes."""
    isz = 64 // V
    bias = tiles + o_bias * isz
    zero = tiles + o_zero * isz
    _cell_bias(proto, b_ih, b_hh, bias, zero, H, NP, V)
    peep, pstep, ldpeep = _peep_of(w_peep, zero, V)
    return bias, zero, peep, pstep, ldpeep


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
        hdst, ldh = _addr(h_out) + r0 * S * isz, S
        if NPP > 0:  # m into rbuf, then h = m @ W_hr.T
            hdst, ldh = rbuf, LDC
        _cell_panels(proto, r0, mr, 0, NP, _addr(x), x.shape[1], _addr(h), S, _addr(c), _addr(c_out), H, _addr(w_ih),
                     _addr(w_hh), tiles, bias, LDT, split, ks, hdst, ldh, flags, peep, pstep, ldpeep, clip)
        for jp in range(NPP):
            ncol = min(NB, S - jp * NB)
            _mkt(proto, mr, rbuf, LDC, _addr(w_hr) + jp * NB * H * isz, H, V, V, S - jp * NB, 0, H, zero, 0,
                 tiles, LDT)
            for m in range(mr):
                _memcpy(_addr(h_out) + ((r0 + m) * S + jp * NB) * isz, tiles + m * LDT * isz, ncol * isz)
    return 0


@njit(**_JIT)
def cell_team_entry(x, h, c, w_ih, w_hh, b_ih, b_hh, w_peep, h_out, c_out, flags, clip, scratch, words, n, fn):
    """:func:`cell_entry` (without a projection) on a team of ``n`` cell workers (the C callback at
    address ``fn``, ``cell_worker``) in ``run_team``: the bias in the scratch, the cell argument block
    (``C_*``) at the start of ``words`` (int64, at least ``NARGS + SYNC_LEN``) and its finish counter,
    then the region (one call from Python: the caller sets Numba's thread count).  Worker ``p`` takes hidden panels
    ``[p NP / n, (p+1) NP / n)`` (each core keeps its block of the W_ih / W_hh rows in its cache
    from call to call); every panel is the same FMA chains as in ``cell_entry``: bitwise equal.  h
    is gathered in the scratch and copied to ``h_out`` by the worker that finishes last (``h_out``
    may be ``h``, which every worker reads whole).  Nothing waits: the iterations may run on any
    number of threads.  Returns the scratch size needed (0: done; else nothing ran)."""
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
    bias, _zero, peep, pstep, ldpeep = _cell_prepare(proto, b_ih, b_hh, w_peep, tiles, o_bias, o_zero, H, NP, V)
    a = _addr(words)
    _stw(a, C_B, B)
    _stw(a, C_I, x.shape[1])
    _stw(a, C_H, H)
    _stw(a, C_S, S)
    _stw(a, C_NP, NP)
    _stw(a, C_SPLIT, split)
    _stw(a, C_KS, ks)
    _stw(a, C_LDT, LDT)
    _stw(a, C_LDC, LDC)
    _stw(a, C_FLAGS, flags)
    _stf(np.float64(0.0), a + 8 * C_CLIP, np.float64(clip))
    _stw(a, C_N, n)
    _stw(a, C_X, _addr(x))
    _stw(a, C_HIN, _addr(h))
    _stw(a, C_CIN, _addr(c))
    _stw(a, C_COUT, _addr(c_out))
    _stw(a, C_HOUT, _addr(h_out))
    _stw(a, C_WIH, _addr(w_ih))
    _stw(a, C_WHH, _addr(w_hh))
    _stw(a, C_TILES, tiles)
    _stw(a, C_BIAS, bias)
    _stw(a, C_HB, tiles + o_hb * isz)
    _stw(a, C_PEEP, peep)
    _stw(a, C_PSTEP, pstep)
    _stw(a, C_LDPEEP, ldpeep)
    _stw(a, NARGS + W_ARRIVED, 0)   # the finish counter
    run_team(fn, proto, a, n)
    return 0


def _cell_worker(proto, p, argp):
    """Cell worker ``p`` of a team (see ``cell_team_entry``), compiled as a C callback per dtype."""
    V = _lanes_of(proto)
    isz = 64 // V
    B = _ldw(argp, C_B)
    H = _ldw(argp, C_H)
    S = _ldw(argp, C_S)
    NP = _ldw(argp, C_NP)
    n = _ldw(argp, C_N)
    LDC = _ldw(argp, C_LDC)
    hb = _ldw(argp, C_HB)
    p0 = p * NP // n
    p1 = (p + 1) * NP // n
    for r0 in range(0, B, MRCELL):
        _cell_panels(proto, r0, min(MRCELL, B - r0), p0, p1, _ldw(argp, C_X), _ldw(argp, C_I), _ldw(argp, C_HIN), S,
                     _ldw(argp, C_CIN), _ldw(argp, C_COUT), H, _ldw(argp, C_WIH), _ldw(argp, C_WHH),
                     _ldw(argp, C_TILES), _ldw(argp, C_BIAS), _ldw(argp, C_LDT), _ldw(argp, C_SPLIT),
                     _ldw(argp, C_KS), hb + r0 * LDC * isz, LDC, _ldw(argp, C_FLAGS), _ldw(argp, C_PEEP),
                     _ldw(argp, C_PSTEP), _ldw(argp, C_LDPEEP), _ldf(np.float64(0.0), argp + 8 * C_CLIP))
    if _atomic_add(argp + 8 * (NARGS + W_ARRIVED), 1) == n - 1:  # the last to finish: every h is read
        h_out = _ldw(argp, C_HOUT)
        for r in range(B):
            _memcpy(h_out + r * S * isz, hb + r * LDC * isz, H * isz)
