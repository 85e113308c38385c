"""The forward pass: ``forward_entry`` (lays out the workspace and the argument block, runs the
worker itself when serial) and ``_worker`` (one worker of a team, compiled as a C callback per
dtype: packing, the bulk input projection, the time loop with its two phases and the gate
update, the projection, the final state)."""

# ruff: noqa: F405 (the argument-block names come from ``blocks``' star import)

from __future__ import annotations

import numpy as np
from numba import njit

from ._jit import _JIT
from .amx import MARK as AMX_MARK
from .amx import MR as AMX_ROWS
from .blocks import *  # noqa: F403 -- the A_* word offsets and W_* sync words of the argument block
from .gates import SPLIT3
from .intrinsics import (
    _addr,
    _call_worker,
    _gate,
    _lanes_of,
    _ld,
    _ldf,
    _ldw,
    _memcpy,
    _memzero,
    _mkx,
    _pack,
    _st,
    _stf,
    _store_rel,
    _stw,
    _zero_of,
)
from .microkernels import MRMAX
from .rows import (
    _bias_panel,
    _block_rows,
    _carry_rows,
    _final_state,
    _pack_proj,
    _project_rows,
    _record,
    _rows_left,
    _sort_rows,
    _t_of,
)
from .team import _handshake, _share, _wait_others


def _make_worker(mark):
    """The forward worker, ``mark`` fixed at compile time (a closure constant): None, products on
    ``mk``; 1, the ``bf16`` mode's products on bfloat16 pair panels (``_mkx``, ``bf16.py``);
    ``amx.MARK`` (an int16), the same panels on AMX tiles (``amx.py``).  Three compiled workers, so
    the float32 one carries no pair kernel; Numba's cache keys each on its closure's value.  The
    products' row blocks: up to ``MRMAX`` rows, on AMX tiles up to 16 (a tile's rows)."""
    rb = AMX_ROWS if isinstance(mark, np.int16) else MRMAX

    def _worker(proto, p, argp):
        """Worker ``p`` of a forward call (the only one when serial); ``proto`` is a zero of the
        dtype; ``mark`` (the closure's) picks the micro-kernel.

        The argument block ``argp`` (see ``forward_entry``) holds every size and address.  The
        worker forms the team (handshake), packs its panels, computes its part of every step and
        writes y at valid steps and its own units / columns of h_n, c_n.

        Handshake (exactly once per call; never deadlocks): every worker increments ARRIVED; its
        old value is its index.  The first (index 0) waits until all launched workers arrived or
        ``wait_ticks`` passed, then publishes TEAM = arrivals so far.  The others wait for TEAM and
        run if their index is below it: a worker that arrives after the decision (the region ran
        its iterations one after the other: 1 thread, a nested region, a busy pool) leaves, and
        the team that formed does all the work.

        Team split: worker w of n owns gate panels [ceil(w NP / n), ceil((w+1) NP / n)) (and the
        same share of the projection panels).  Per step: wait for the producers of the h range its
        panels sum first (none with two workers), phase A, wait for all producers of h (step s-1),
        phase B + gate update, publish.  h alternates between two buffers; a worker writes h_{s+1}
        only after every worker finished reading h_{s-1} from that buffer (the phase B wait).  With
        a projection, the gate update writes r = o tanh(c), then a second barrier (all of r is
        needed), then the worker's columns of h = r W_hr^T.
        """
        V = _lanes_of(proto)
        NB = 4 * V
        isz = 64 // V
        T = _ldw(argp, A_T)
        B = _ldw(argp, A_B)
        I = _ldw(argp, A_I)  # noqa: E741
        H = _ldw(argp, A_H)
        S = _ldw(argp, A_S)
        nsteps = _ldw(argp, A_NSTEPS)
        rev = _ldw(argp, A_REV) != 0
        NP = _ldw(argp, A_NP)
        NPP = _ldw(argp, A_NPP)
        ks = _ldw(argp, A_KS)
        flags = _ldw(argp, A_FLAGS)
        clip = _ldf(np.float64(0.0), argp + 8 * A_CLIP)
        bulk = _ldw(argp, A_BULK) != 0
        direct = _ldw(argp, A_DIRECT) != 0
        sync = _ldw(argp, A_SYNC)
        index, n = _handshake(sync, _ldw(argp, A_NLAUNCH), _ldw(argp, A_WAIT))
        if index >= n:
            return
        w = index
        x = _ldw(argp, A_X)
        w_ih = _ldw(argp, A_WIH)
        w_hh = _ldw(argp, A_WHH)
        b_ih = _ldw(argp, A_BIH)
        b_hh = _ldw(argp, A_BHH)
        w_hr = _ldw(argp, A_WHR)
        peep = _ldw(argp, A_PEEP)
        pstep = _ldw(argp, A_PSTEP)
        ldpeep = _ldw(argp, A_LDPEEP)
        order = _ldw(argp, A_ORDER)
        lens = _ldw(argp, A_LENS)
        y = _ldw(argp, A_Y)
        ys0 = _ldw(argp, A_YS0)
        ys1 = _ldw(argp, A_YS1)
        wip = _ldw(argp, A_WIP)
        whp = _ldw(argp, A_WHP)
        whrp = _ldw(argp, A_WHRP)
        bp = _ldw(argp, A_BP)
        xp = _ldw(argp, A_XP)
        LD = _ldw(argp, A_LD)
        acc = _ldw(argp, A_ACC)
        hb = _ldw(argp, A_HB)
        LDH = _ldw(argp, A_LDH)
        c = _ldw(argp, A_C)
        LDC = _ldw(argp, A_LDC)
        rbuf = _ldw(argp, A_R)
        xarows = _ldw(argp, A_XAROWS)
        xa = _ldw(argp, A_XA) + w * xarows * I * isz
        tof = _ldw(argp, A_TOF) + w * B * 8
        zero = _ldw(argp, A_ZERO)
        RC = _ldw(argp, A_RC)
        tape_g = _ldw(argp, A_TG)
        tape_c = _ldw(argp, A_TC)
        tape_k = _ldw(argp, A_TK)
        lay = _ldw(argp, A_LAYOUT)   # per panel: offset A, ka0, ka1, offset B, kb0, kb1
        proj = NPP > 0
        split = (NP + 1) // 2
        # this worker's gate panels [g0, g1) (units [u0, u1)) and projection panels [j0, j1)
        g0, g1 = _share(w, n, NP)
        j0, j1 = _share(w, n, NPP)
        u0 = min(g0 * V, H)
        u1 = min(g1 * V, H)
        hc0 = u0
        hc1 = u1
        total = NP
        width = V
        m3 = 1
        if flags & SPLIT3:  # bf16x3: h as three V-blocks per panel, [hi | hi | lo] (see forward_entry)
            m3 = 3
            hc0 = g0 * 3 * V
            hc1 = g1 * 3 * V
            width = 3 * V
        if proj:  # own columns of h, and who produces h
            hc0 = min(j0 * NB, S)
            hc1 = min(j1 * NB, S)
            total = NPP
            width = NB
        # producers (worker w' owns panel k iff w' = k n // total) of the h range this worker's
        # panels sum first [lo, hi), and of all of h
        lo = 0 if g0 < split else ks
        hi = S if g1 > split else ks
        wa_a = 0
        wb_a = 0
        if hi > lo:
            wa_a = (lo // width) * n // total
            wb_a = ((hi - 1) // width) * n // total + 1
        wb_all = ((S - 1) // width) * n // total + 1

        # ---- pack this worker's panels (on every call: the weights may have changed in place), unless
        # the caller's prepared weights are packed already
        for pp in range(g0, g1 if _ldw(argp, A_PACKED) == 0 else g0):
            nval = min(V, H - pp * V)
            _pack(proto, w_ih + pp * V * I * isz, I, H, nval, 4 * H, 0, I, wip + pp * I * NB * isz)
            t6 = lay + pp * 48
            base = w_hh + pp * V * S * isz
            _pack(proto, base, S, H, nval, 4 * H, _ld(t6 + 8), _ld(t6 + 16), whp + _ld(t6) * isz)
            _pack(proto, base, S, H, nval, 4 * H, _ld(t6 + 32), _ld(t6 + 40), whp + _ld(t6 + 24) * isz)
            _bias_panel(proto, b_ih, b_hh, bp + pp * NB * isz, H, pp, V)
        for jp in range(j0, j1 if _ldw(argp, A_PACKED) == 0 else j0):
            _pack_proj(proto, w_hr, whrp, jp, H, S)

        # ---- bulk input projection: xp rows of every step, this worker's panel columns
        if bulk:
            nrows = (T if direct else nsteps) * B
            for r_lo in range(0, nrows, RC):
                cnt = min(RC, nrows - r_lo)
                src = x + r_lo * I * isz
                if not direct:
                    src = xa
                    for q in range(r_lo, r_lo + cnt):
                        s = q // B
                        rr = q - s * B
                        dst = xa + (q - r_lo) * I * isz
                        ln = _ld(lens + 8 * rr)
                        if ln > s:
                            t = s
                            if rev:
                                t = ln - 1 - s
                            _memcpy(dst, x + (t * B + _ld(order + 8 * rr)) * I * isz, I * isz)
                        else:
                            _memzero(dst, I * isz)
                nblk = (cnt + rb - 1) // rb
                for pp in range(g0, g1):
                    r0 = 0
                    for blk in range(nblk):
                        mr = _block_rows(cnt, nblk, blk)
                        _mkx(proto, mark, mr, src + r0 * I * isz, I, wip + pp * I * NB * isz, I, bp + pp * NB * isz, 0,
                            xp + ((r_lo + r0) * LD + pp * NB) * isz, LD)
                        r0 += mr

        # ---- the time loop
        me_done = sync + 8 * (W_DONE0 + 16 * w)
        m = B
        prev = B
        for s in range(nsteps):
            m = _rows_left(lens, m, s)
            cur = s & 1
            hcur = hb + cur * B * LDH * isz
            hnxt = hb + (1 - cur) * B * LDH * isz
            tt = s
            if rev:
                tt = T - 1 - s
            for rr in range(m):
                _st(tof + 8 * rr, _t_of(lens, rr, s, rev))
            xsrc = x + tt * B * I * isz
            if not bulk and not direct:
                xsrc = xa
                for rr in range(m):
                    _memcpy(xa + rr * I * isz, x + (_ld(tof + 8 * rr) * B + _ld(order + 8 * rr)) * I * isz, I * isz)
            xrow = s * B
            if direct:
                xrow = tt * B
            nblk = (m + rb - 1) // rb
            # phase A: the input product (or the bulk rows) + the h range the panel sums first
            if s > 0:
                _wait_others(sync + 8 * W_DONE0, w, wa_a, wb_a, s)
            for pp in range(g0, g1):
                t6 = lay + pp * 48
                ka0 = _ld(t6 + 8)
                whA = whp + _ld(t6) * isz
                kn = _ld(t6 + 16) - ka0
                r0 = 0
                for blk in range(nblk):
                    mr = _block_rows(m, nblk, blk)
                    dst = acc + (r0 * LD + pp * NB) * isz
                    cin = dst
                    if bulk:
                        cin = xp + ((xrow + r0) * LD + pp * NB) * isz
                    else:
                        _mkx(proto, mark, mr, xsrc + r0 * I * isz, I, wip + pp * I * NB * isz, I, bp + pp * NB * isz, 0,
                              dst,
                            LD)
                    _mkx(proto, mark, mr, hcur + (r0 * LDH + ka0) * isz, LDH, whA, kn, cin, LD, dst, LD)
                    r0 += mr
            # phase B: the rest of h (written by the team in step s-1), then the gate update
            if s > 0:
                _wait_others(sync + 8 * W_DONE0, w, 0, wb_all, s)
            if not proj:  # rows that just finished keep their state in both h buffers
                _carry_rows(hnxt, hcur, m, prev, LDH, hc0, hc1, isz)
            for pp in range(g0, g1):
                t6 = lay + pp * 48
                kb0 = _ld(t6 + 32)
                whB = whp + _ld(t6 + 24) * isz
                kn = _ld(t6 + 40) - kb0
                r0 = 0
                for blk in range(nblk):
                    mr = _block_rows(m, nblk, blk)
                    dst = acc + (r0 * LD + pp * NB) * isz
                    _mkx(proto, mark, mr, hcur + (r0 * LDH + kb0) * isz, LDH, whB, kn, dst, LD, dst, LD)
                    r0 += mr
                nval = min(V, H - pp * V)
                for rr in range(m):
                    cc = c + (rr * LDC + pp * V) * isz
                    if proj:
                        hh = rbuf + (rr * LDC + pp * V) * isz
                        yy = 0
                    else:
                        hh = hnxt + (rr * LDH + pp * V * m3) * isz
                        yy = y + (_ld(tof + 8 * rr) * ys0 + _ld(order + 8 * rr) * ys1 + pp * V) * isz
                    tg, tc, tk = _record(tape_g, tape_c, tape_k, _ld(tof + 8 * rr) * B + _ld(order + 8 * rr), H, pp * V,
                                         isz)
                    _gate(proto, flags, acc + (rr * LD + pp * NB) * isz, cc, cc, hh, yy, nval, peep + pp * pstep * isz,
                          ldpeep, clip, tg, H, tc, tk)
            if proj:
                # h = r W_hr^T needs all of r: a second barrier, then this worker's columns of h
                _store_rel(me_done + 64, s + 1)
                _wait_others(sync + 8 * W_DONE0 + 64, w, 0, n, s + 1)
                _carry_rows(hnxt, hcur, m, prev, LDH, hc0, hc1, isz)
                _project_rows(proto, m, (m + MRMAX - 1) // MRMAX, j0, j1, H, S, rbuf, LDC, whrp, zero, hnxt, LDH, y,
                              ys0, ys1, tof, order, isz)
            _store_rel(me_done, s + 1)
            prev = m
        # ---- final state of this worker's units / columns
        _final_state(argp, hb + (nsteps & 1) * B * LDH * isz, c, order, B, S, H, LDH, LDC, hc0, hc1, u0, u1, isz)

    return _worker


_worker = _make_worker(None)
_worker_pairs = _make_worker(1)
_worker_amx = _make_worker(AMX_MARK)


@njit(**_JIT)
def forward_entry(x, w_ih, w_hh, b_ih, b_hh, w_hr, w_peep, h0, c0, lengths, h_n, c_n, y, ys0, ys1, reverse, flags,
                  clip, bulk, nlaunch, wait_ticks, wsf, wsi, fn, serial, tape_g, tape_c, tape_k, pw_ih, pw_hh, pbias,
                  pw_hr, packed):
    """Prepare a forward call and, when ``serial``, run it.

    Parameters (T steps, B rows, I inputs, H hidden units, S = P or H the width of h)
    ----------
    x : (T, B, I); w_ih : (4H, I); w_hh : (4H, S); b_ih, b_hh : (4H,)
    w_hr : (P, H) or (0, 0) without a projection; w_peep : (3, H) or (0, 0) without peepholes
    h0 : (B, S), c0 : (B, H) -- may be the very arrays h_n, c_n (copied to the workspace first)
    lengths : (B,) int64 in [0, T]
    h_n : (B, S), c_n : (B, H) -- written (each worker its own units)
    y : int, address of y (T, B, S) with element strides ys0, ys1 along T and B (last axis
        contiguous; may be a view inside a wider array); written at valid steps only
    flags : gate feature bits (PEEP | CLIP | IFORGET, ROUNDH, SPLIT3); clip : float, the bound when CLIP
        SPLIT3 (``bf16x3``, no projection, prepared panels): h is the next step's operand in three
        blocks per gate panel, ``[bf16(h) | bf16(h) | bf16(h - bf16(h))]`` of V units each, so S is
        3 NP V: h0 (B, 3 NP V) in that layout (units past H zero), h_n (B, 3 NP V) gets the split
        final h (the caller takes the unrounded one from y), w_hh's panels have K = 3 NP V (rows
        ``3 p V + j V + u`` of W_hi, W_lo, W_hi for unit ``p V + u``); every k range of the team
        split stays whole panels' blocks
    bulk : bool, the input product of every step first; nlaunch : workers launched (1: serial)
    wait_ticks : how long the first worker waits for the team
    wsf : float scratch (64-byte aligned), wsi : int64 scratch -- reused across calls, holding
        nothing between calls (weights are packed on every call)
    fn : address of the worker C callback; serial : run it here, else the caller launches
        ``run_team(fn, zero, address of wsi, nlaunch)``
    tape_g, tape_c, tape_k : addresses of forward_train's tape (0: a plain forward): gates
        (T, B, 4H), cells (T, B, H) of the dtype, clipped (T, B, 4H) bytes (0 without clip);
        written at valid steps by the gate update (see ``_define_gate``)
    pw_ih (NP, I, 4V), pw_hh (NP, S, 4V), pbias (NP, 4V), pw_hr (NPP, H, 4V): with ``packed``, the
        weights packed once by the caller (``embed.panels``; unit ``p V + u`` of gate ``q`` at panel
        ``p`` column ``q V + u``, k in natural order), read in place: the workers pack nothing

    Every array is C-contiguous.  Returns (floats, ints) of workspace needed: when either is
    more than given, nothing ran; call again with larger ones.  (0, 0) when prepared / done.
    """
    T, B, I = x.shape  # noqa: E741
    H = c0.shape[1]
    S = h0.shape[1]
    proto = _zero_of(x)
    V = _lanes_of(proto)
    NB = 4 * V
    isz = 64 // V
    NP = (H + V - 1) // V
    NPP = 0
    if w_hr.shape[0] > 0:
        NPP = (S + NB - 1) // NB
    split = (NP + 1) // 2
    ks = min(split * V, H)
    if NPP > 0:
        ks = min((NPP + 1) // 2 * NB, S)
    elif flags & SPLIT3:   # h0 (B, 3 NP V), w_hh's panels (NP, 3 NP V, 4V): three k per unit
        ks = 3 * split * V
    nsteps = 0
    direct = True
    for r in range(B):  # (lengths.max() would compile numpy's max: slow to compile)
        nsteps = max(nsteps, lengths[r])
        if lengths[r] != T:
            direct = False
    LD = NP * NB
    if (LD * isz) % 4096 == 0:
        LD += V  # the rows of a tile must not all map to the same L1 sets
    LDH = (S + NB - 1) // NB * NB
    if (LDH * isz) % 4096 == 0:
        LDH += NB
    LDC = (H + V - 1) // V * V
    RC = max(MRMAX, (262144 // max(1, I * isz)) // MRMAX * MRMAX)
    xarows = B
    xprows = 0
    if bulk:
        xarows = max(B, RC)
        xprows = nsteps * B
        if direct:
            xprows = T * B
    # float workspace, every piece 64-byte aligned (sizes rounded up to 16 elements)
    npk = 0 if packed else 1   # the packed weights' room in the workspace (none when prepared)
    o_wip = 0
    o_whp = o_wip + npk * (NP * I * NB + 15) // 16 * 16
    o_whrp = o_whp + npk * (NP * S * NB + 15) // 16 * 16
    o_bp = o_whrp + npk * (NPP * H * NB + 15) // 16 * 16
    o_acc = o_bp + npk * NP * NB
    o_hb = o_acc + (B * LD + 15) // 16 * 16
    o_c = o_hb + 2 * B * LDH
    o_r = o_c + (B * LDC + 15) // 16 * 16
    o_xa = o_r + ((B * LDC + 15) // 16 * 16 if NPP > 0 else 0)
    o_zero = o_xa + (nlaunch * xarows * I + 15) // 16 * 16
    o_xp = o_zero + NB
    n_f = o_xp + xprows * LD
    i_sync = NARGS
    i_order = i_sync + SYNC_LEN
    i_lens = i_order + B
    i_tof = i_lens + B
    i_lay = i_tof + nlaunch * B
    i_cnt = i_lay + 6 * NP
    n_i = i_cnt + T + 2
    if n_f > wsf.shape[0] or n_i > wsi.shape[0]:
        return n_f, n_i
    ib = _addr(wsi)
    fb = _addr(wsf)
    order = ib + 8 * i_order
    lens = ib + 8 * i_lens
    _sort_rows(lengths, T, B, ib + 8 * i_cnt, order, lens)
    for r in range(B):
        if _ld(order + 8 * r) != r:
            direct = False
    # the canonical k order of each panel (see the module docstring) and its place in whp
    n0 = ks
    n1 = S - ks
    for p in range(NP):
        t6 = ib + 8 * (i_lay + 6 * p)
        if packed:  # natural k order per panel: each half starts at its first k
            ka0 = 0 if p < split else ks
            kb0 = ks if p < split else 0
            _st(t6, (p * S + ka0) * NB)
            _st(t6 + 8, ka0)
            _st(t6 + 16, ks if p < split else S)
            _st(t6 + 24, (p * S + kb0) * NB)
            _st(t6 + 32, kb0)
            _st(t6 + 40, S if p < split else ks)
        elif p < split:
            _st(t6, p * n0 * NB)
            _st(t6 + 8, 0)
            _st(t6 + 16, ks)
            _st(t6 + 24, split * n0 * NB + p * n1 * NB)
            _st(t6 + 32, ks)
            _st(t6 + 40, S)
        else:
            j = p - split
            base = split * S * NB
            _st(t6, base + j * n1 * NB)
            _st(t6 + 8, ks)
            _st(t6 + 16, S)
            _st(t6 + 24, base + (NP - split) * n1 * NB + j * n0 * NB)
            _st(t6 + 32, 0)
            _st(t6 + 40, ks)
    zero = fb + o_zero * isz
    _memzero(zero, NB * isz)
    hb = fb + o_hb * isz
    cb = fb + o_c * isz
    for r in range(B):  # the state, in sorted row order (h0/c0 may be h_n/c_n: copied first)
        o = _ld(order + 8 * r)
        _memcpy(hb + r * LDH * isz, _addr(h0) + o * S * isz, S * isz)
        _memcpy(cb + r * LDC * isz, _addr(c0) + o * H * isz, H * isz)
        if flags & SPLIT3:   # the second h buffer too: the products read its zeros past H (never written)
            _memcpy(hb + (B + r) * LDH * isz, hb + r * LDH * isz, S * isz)
    _memzero(ib + 8 * i_sync, 8 * SYNC_LEN)
    a = ib
    _stw(a, A_T, T)
    _stw(a, A_B, B)
    _stw(a, A_I, I)
    _stw(a, A_H, H)
    _stw(a, A_S, S)
    _stw(a, A_NSTEPS, nsteps)
    _stw(a, A_REV, 1 if reverse else 0)
    _stw(a, A_NP, NP)
    _stw(a, A_NPP, NPP)
    _stw(a, A_KS, ks)
    _stw(a, A_FLAGS, flags)
    _stf(np.float64(0.0), a + 8 * A_CLIP, np.float64(clip))
    _stw(a, A_BULK, 1 if bulk else 0)
    _stw(a, A_NLAUNCH, nlaunch)
    _stw(a, A_WAIT, wait_ticks)
    _stw(a, A_DIRECT, 1 if direct else 0)
    _stw(a, A_SYNC, ib + 8 * i_sync)
    _stw(a, A_X, _addr(x))
    _stw(a, A_WIH, _addr(w_ih))
    _stw(a, A_WHH, _addr(w_hh))
    _stw(a, A_BIH, _addr(b_ih))
    _stw(a, A_BHH, _addr(b_hh))
    _stw(a, A_WHR, _addr(w_hr))
    if w_peep.shape[0] > 0:
        _stw(a, A_PEEP, _addr(w_peep))
        _stw(a, A_PSTEP, V)
        _stw(a, A_LDPEEP, H)
    else:  # the gate reads zeros (and never uses them: flags has no PEEP)
        _stw(a, A_PEEP, zero)
        _stw(a, A_PSTEP, 0)
        _stw(a, A_LDPEEP, 0)
    _stw(a, A_ORDER, order)
    _stw(a, A_LENS, lens)
    _stw(a, A_Y, y)
    _stw(a, A_YS0, ys0)
    _stw(a, A_YS1, ys1)
    _stw(a, A_HN, _addr(h_n))
    _stw(a, A_CN, _addr(c_n))
    _stw(a, A_PACKED, 1 if packed else 0)
    if packed:
        _stw(a, A_WIP, _addr(pw_ih))
        _stw(a, A_WHP, _addr(pw_hh))
        _stw(a, A_WHRP, _addr(pw_hr))
        _stw(a, A_BP, _addr(pbias))
    else:
        _stw(a, A_WIP, fb + o_wip * isz)
        _stw(a, A_WHP, fb + o_whp * isz)
        _stw(a, A_WHRP, fb + o_whrp * isz)
        _stw(a, A_BP, fb + o_bp * isz)
    _stw(a, A_XP, fb + o_xp * isz)
    _stw(a, A_LD, LD)
    _stw(a, A_ACC, fb + o_acc * isz)
    _stw(a, A_HB, hb)
    _stw(a, A_LDH, LDH)
    _stw(a, A_C, cb)
    _stw(a, A_LDC, LDC)
    _stw(a, A_R, fb + o_r * isz)
    _stw(a, A_XA, fb + o_xa * isz)
    _stw(a, A_XAROWS, xarows)
    _stw(a, A_TOF, ib + 8 * i_tof)
    _stw(a, A_ZERO, zero)
    _stw(a, A_RC, RC)
    _stw(a, A_LAYOUT, ib + 8 * i_lay)
    _stw(a, A_TG, tape_g)
    _stw(a, A_TC, tape_c)
    _stw(a, A_TK, tape_k)
    if serial:
        _call_worker(fn, proto, 0, ib)
    return 0, 0
