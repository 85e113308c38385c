"""The training pass backward: ``backward_entry`` (workspace and argument block) and
``_bwd_worker`` (a team worker, C callback per dtype): per step the fused pointwise backward
(``gate_bwd``), a barrier, ``dh = dz W_hh`` on ``mk``; after the loop ``dx = dz W_ih`` and the
weight gradients as products over the rows of all steps.  Bitwise the same for every kind and
team size (work split over outputs, never over a sum)."""

# ruff: noqa: F405 (the argument-block names come from ``blocks``' star import)

from __future__ import annotations

from numba import njit

from ._jit import _JIT
from .blocks import *  # noqa: F403 -- the G_* word offsets and W_* sync words of the argument block
from .intrinsics import (
    _addr,
    _call_worker,
    _gate_bwd,
    _lanes_of,
    _ld,
    _ldf,
    _ldw,
    _memcpy,
    _memzero,
    _mk,
    _one_of,
    _prefetch,
    _stf,
    _stw,
    _zero_of,
)
from .microkernels import MRMAX
from .rows import _block_rows, _pack_proj, _rows_left, _sort_rows, _t_of
from .team import _barrier, _handshake, _share

KC = 128   # k block (rows of all steps) of the weight-gradient GEMMs: a dz panel slice (32 KiB float32) stays in L1


@njit(inline="always", **_JIT)
def _dz_at(dzp, q, Hp, u, TB, row, NB, isz):
    """Address of dz of gate ``q``, unit ``u`` (a multiple of V), at ``row`` of all steps: column
    ``q Hp + u`` of the padded gate axis, stored in panels of NB columns (``TB`` rows each)."""
    col = q * Hp + u
    return dzp + (((col // NB) * TB + row) * NB + col % NB) * isz


@njit(inline="always", **_JIT)
def _pack_cols(proto, src, groups, ld, H, Hp, ncol0, ncols, dst):
    """Column panel of a (groups H, ld) row-major matrix for ``mk``, over a padded row axis:
    ``dst[q Hp + u, c] = src[q H + u, ncol0 + c]`` for c < NB (0 for u >= H or ncol0 + c >= ncols)."""
    NB = 4 * _lanes_of(proto)
    isz = 256 // NB
    n = min(NB, ncols - ncol0)
    for q in range(groups):
        for u in range(Hp):
            d = dst + ((q * Hp + u) * NB) * isz
            if u < H:
                _memcpy(d, src + ((q * H + u) * ld + ncol0) * isz, n * isz)
                _memzero(d + n * isz, (NB - n) * isz)
            else:
                _memzero(d, NB * isz)


@njit(inline="always", **_JIT)
def _kloop(proto, rows, K, kb, a, rs, ks, panel, c, ldc, zero):
    """``c[0:rows, 0:NB] = A[0:rows, 0:K] @ panel`` from zero (``panel``: K rows of NB contiguous
    numbers), k in blocks of ``kb`` with the row blocks inside (a block of ``panel`` is read once,
    from L1), each block continuing the FMA chains of the previous one: the bits of one chain over
    k = 0..K-1, whatever the blocking; K = 0 gives zeros.  Row r, k-block j of A start at
    ``a + r rs + j ks`` (elements), its k contiguous: row-major A is ``rs = lda, ks = kb``; A in
    panels of NB columns (dz) is ``kb = NB, rs = NB, ks =`` the panel stride."""
    NB = 4 * _lanes_of(proto)
    isz = 256 // NB
    nblk = (rows + MRMAX - 1) // MRMAX
    for k0 in range(0, max(K, 1), kb):
        kn = max(min(kb, K - k0), 0)
        r0 = 0
        for blk in range(nblk):
            mr = _block_rows(rows, nblk, blk)
            dst = c + r0 * ldc * isz
            cin = dst
            ldcin = ldc
            if k0 == 0:
                cin = zero
                ldcin = 0
            _mk(proto, mr, a + (r0 * rs + (k0 // kb) * ks) * isz, rs, panel + k0 * NB * isz, kn, cin, ldcin, dst, ldc)
            r0 += mr


@njit(inline="always", **_JIT)
def _chain(proto, mr, a, lda, k, w, cout, ldcout, zero):
    """``cout[0:mr, 0:NB] = sum_j a[m, j] w[j, 0:NB]`` from zero, with ``a`` in panels of NB columns
    (``lda`` apart) and ``w`` the packed panel: one ``mk`` call per panel, each continuing the
    same FMA chains, in k order (the bits of a single call over all k)."""
    NB = 4 * _lanes_of(proto)
    isz = 256 // NB
    for k0 in range(0, k, NB):
        cin = cout
        ldcin = ldcout
        if k0 == 0:
            cin = zero
            ldcin = 0
        _mk(proto, mr, a + (k0 // NB) * lda * isz, NB, w + k0 * NB * isz, min(NB, k - k0), cin, ldcin, cout, ldcout)


def _bwd_worker(proto, p, argp):
    """Worker ``p`` of a backward call (see ``backward_entry``; the only one when serial).

    Team split: worker w of n owns the NB-unit panels [h0p, h1p) of the hidden units (its part of
    the gate backward, and with a projection of ``dm = dh W_hr``) and the NB-column panels
    [c0p, c1p) of h (its columns of ``dh = dz W_hh``; the same split without a projection);
    after the loop its share of the steps (``dx = dz W_ih``; with a projection, ``h_prev``
    recomputed as ``m W_hr^T``) and of the panels of the weight gradients.  Per step one barrier
    (the product needs every unit's dz of the step; a worker only ever reads its own columns of
    dh and dc), and with a projection one more (``dm`` needs all of dh).  Every output element is
    one FMA chain in a fixed order (k over the padded gate axis, over H, or over the rows of all
    steps in processing order): bitwise the same results for any team size.
    """
    V = _lanes_of(proto)
    NB = 4 * V
    isz = 64 // V
    sync = _ldw(argp, G_SYNC)
    index, n = _handshake(sync, _ldw(argp, G_NLAUNCH), _ldw(argp, G_WAIT))
    if index >= n:
        return
    w = index
    B = _ldw(argp, G_B)
    I = _ldw(argp, G_I)  # noqa: E741
    H = _ldw(argp, G_H)
    Hp = _ldw(argp, G_HP)
    P = _ldw(argp, G_P)
    nsteps = _ldw(argp, G_NSTEPS)
    rev = _ldw(argp, G_REV) != 0
    flags = _ldw(argp, G_FLAGS)
    x = _ldw(argp, G_X)
    gates = _ldw(argp, G_GATES)
    cells = _ldw(argp, G_CELLS)
    clipped = _ldw(argp, G_CLIPPED)
    h0 = _ldw(argp, G_H0)
    c0 = _ldw(argp, G_C0)
    dy = _ldw(argp, G_DY)
    ys0 = _ldw(argp, G_YS0)
    ys1 = _ldw(argp, G_YS1)
    order = _ldw(argp, G_ORDER)
    lens = _ldw(argp, G_LENS)
    peep = _ldw(argp, G_PEEP)
    dzp = _ldw(argp, G_DZ)
    TB = _ldw(argp, G_TB)
    xh = _ldw(argp, G_XH)
    LDK = _ldw(argp, G_LDK)
    ct = _ldw(argp, G_CT)
    LDCT = _ldw(argp, G_LDCT)
    dxs = _ldw(argp, G_DXS)
    LDX = _ldw(argp, G_LDX)
    wip = _ldw(argp, G_WIP)
    whp = _ldw(argp, G_WHP)
    dh = _ldw(argp, G_DH)
    LDH = _ldw(argp, G_LDH)
    dc = _ldw(argp, G_DC)
    hrow = _ldw(argp, G_HROW)
    dpacc = _ldw(argp, G_DPACC)
    zero = _ldw(argp, G_ZERO)
    mp = _ldw(argp, G_MP)
    dht = _ldw(argp, G_DHT)
    LDM = _ldw(argp, G_LDM)
    whrc = _ldw(argp, G_WHRC)
    whrp = _ldw(argp, G_WHRP)
    dm = _ldw(argp, G_DM)
    proj = P > 0
    S = H
    if proj:
        S = P
    G4 = 4 * Hp              # the padded gate axis: gate q, unit u at q Hp + u
    NPZ = G4 // NB           # its panels
    NPS = (S + NB - 1) // NB
    NPH = (H + NB - 1) // NB
    NPI = (I + NB - 1) // NB
    KR = I + 1 + S           # rows of [x^T; 1; h_prev^T]
    h0p, h1p = _share(w, n, NPH)
    u0 = min(h0p * NB, H)
    u1 = min(h1p * NB, H)
    c0p, c1p = _share(w, n, NPS)
    pc0 = min(c0p * NB, S)
    pc1 = min(c1p * NB, S)
    s0, s1 = _share(w, n, nsteps)       # this worker's steps after the loop
    nb = 0   # barriers passed

    # ---- pack: this worker's W_hh column panels; its share of W_ih's; with a projection, W_hr for
    # dm (its unit panels) and for h = m W_hr^T (its share); its rows of x^T (and the ones)
    for jc in range(c0p, c1p):
        _pack_cols(proto, _ldw(argp, G_WHH), 4, S, H, Hp, jc * NB, S, whp + jc * G4 * NB * isz)
    ji0, ji1 = _share(w, n, NPI)
    for ji in range(ji0, ji1):
        _pack_cols(proto, _ldw(argp, G_WIH), 4, I, H, Hp, ji * NB, I, wip + ji * G4 * NB * isz)
    if proj:
        w_hr = _ldw(argp, G_WHR)
        for jh in range(h0p, h1p):
            _pack_cols(proto, w_hr, 1, H, P, P, jh * NB, H, whrc + jh * P * NB * isz)
        for jc in range(c0p, c1p):  # (the forward's packing of W_hr)
            _pack_proj(proto, w_hr, whrp, jc, H, S)
    i0, i1 = _share(w, n, I + 1)
    for i in range(i0, i1):
        dst = xh + i * LDK * isz
        if i == I:
            for q in range(TB):
                _stf(proto, dst + q * isz, _one_of(proto))
            continue
        m = B
        for s in range(nsteps):
            m = _rows_left(lens, m, s)
            for r in range(B):
                v = proto
                if r < m:
                    t = _t_of(lens, r, s, rev)
                    v = _ldf(proto, x + ((t * B + _ld(order + 8 * r)) * I + i) * isz)
                _stf(proto, dst + (s * B + r) * isz, v)
    # ---- the state gradients: dh_n (this worker's columns), dc_n (its units); peephole accumulators
    for r in range(B):
        b = _ld(order + 8 * r)
        _memcpy(dh + (r * LDH + pc0) * isz, _ldw(argp, G_DHN) + (b * S + pc0) * isz, (pc1 - pc0) * isz)
        _memcpy(dc + (r * Hp + u0) * isz, _ldw(argp, G_DCN) + (b * H + u0) * isz, (u1 - u0) * isz)
    for q in range(3):  # (H apart, like the peepholes: the kernel's loads and stores are masked)
        _memzero(dpacc + (q * H + u0) * isz, (u1 - u0) * isz)
    pstep = 0
    ldpeep = 0
    if peep != 0:
        pstep = 1
        ldpeep = H
    else:
        peep = zero
    # ---- the steps, last first
    m = 0
    for s in range(nsteps - 1, -1, -1):
        while m < B and _ld(lens + 8 * m) > s:
            m += 1
        nblk = (m + MRMAX - 1) // MRMAX
        if proj:
            # dh_t = dh + dy (this worker's columns; kept, transposed, for dW_hr), then dm = dh_t W_hr
            for r in range(m):
                t = _t_of(lens, r, s, rev)
                src = dy + (t * ys0 + _ld(order + 8 * r) * ys1) * isz
                for k in range(pc0, pc1):
                    at = dh + (r * LDH + k) * isz
                    _stf(proto, at, _ldf(proto, at) + _ldf(proto, src + k * isz))
            for k in range(pc0, pc1):
                dst = dht + (k * LDK + s * B) * isz
                for r in range(m):
                    _stf(proto, dst + r * isz, _ldf(proto, dh + (r * LDH + k) * isz))
                for r in range(m, B):
                    _stf(proto, dst + r * isz, proto)
            nb += 1
            _barrier(sync, w, n, nb)
            for jh in range(h0p, h1p):
                r0 = 0
                for blk in range(nblk):
                    mr = _block_rows(m, nblk, blk)
                    _mk(proto, mr, dh + r0 * LDH * isz, LDH, whrc + jh * P * NB * isz, P, zero, 0,
                        dm + (r0 * LDM + jh * NB) * isz, LDM)
                    r0 += mr
        if s > 0:  # the tape of the next step (in pieces, backwards in memory): ask for it before the product
            r = 0
            while r < B and _ld(lens + 8 * r) > s - 1:
                t = s - 1
                if rev:
                    t = _ld(lens + 8 * r) - s
                row = t * B + _ld(order + 8 * r)
                for q in range(4):
                    for uu in range(u0, u1, 16):
                        _prefetch(gates + (row * 4 * H + q * H + uu) * isz)
                for uu in range(u0, u1, 16):
                    _prefetch(cells + (row * H + uu) * isz)
                r += 1
        for r in range(m):
            b = _ld(order + 8 * r)
            t = s
            tp = s - 1
            if rev:
                t = _ld(lens + 8 * r) - 1 - s
                tp = t + 1
            row = t * B + b
            cprev = c0 + b * H * isz
            if s > 0:
                cprev = cells + (tp * B + b) * H * isz
            zr = s * B + r
            for uu in range(u0, u1, V):
                nval = min(V, H - uu)
                tk = 0
                if clipped != 0:
                    tk = clipped + row * 4 * H + uu
                if proj:  # the gradient of m = o tanh(c) is dm; m itself kept for dW_hr and h_prev
                    dmu = dm + (r * LDM + uu) * isz
                    dyu = zero
                    hout = mp + (((uu // NB) * TB + zr) * NB + uu % NB) * isz
                else:
                    dmu = dh + (r * LDH + uu) * isz
                    dyu = dy + (t * ys0 + b * ys1 + uu) * isz
                    hout = hrow + (r * Hp + uu) * isz
                _gate_bwd(proto, flags, gates + (row * 4 * H + uu) * isz, H, cells + (row * H + uu) * isz,
                          cprev + uu * isz, dmu, dyu, dc + (r * Hp + uu) * isz, _dz_at(dzp, 0, Hp, uu, TB, zr, NB, isz),
                          _dz_at(dzp, 1, Hp, uu, TB, zr, NB, isz), _dz_at(dzp, 2, Hp, uu, TB, zr, NB, isz),
                          _dz_at(dzp, 3, Hp, uu, TB, zr, NB, isz), hout, nval, peep + uu * pstep * isz, ldpeep,
                          dpacc + uu * isz, tk)
        for r in range(m, B):  # rows past their length: dz 0 (and m 0)
            for q in range(4):
                for uu in range(u0, u1, V):
                    _memzero(_dz_at(dzp, q, Hp, uu, TB, s * B + r, NB, isz), V * isz)
            if proj:
                for jh in range(h0p, h1p):
                    _memzero(mp + ((jh * TB + s * B + r) * NB) * isz, NB * isz)
        if not proj:
            # h_prev^T rows of this worker's units: h of step s is h_prev of step s + 1; h0 at step 0
            for u in range(u0, u1):
                dst = xh + (I + 1 + u) * LDK * isz
                if s + 1 < nsteps:
                    for r in range(m):
                        _stf(proto, dst + ((s + 1) * B + r) * isz, _ldf(proto, hrow + (r * Hp + u) * isz))
                for r in range(m, B):
                    _stf(proto, dst + (s * B + r) * isz, proto)
                if s == 0:
                    for r in range(m):
                        _stf(proto, dst + r * isz, _ldf(proto, h0 + (_ld(order + 8 * r) * S + u) * isz))
        nb += 1
        _barrier(sync, w, n, nb)
        # dh (the gradient w.r.t. h_{s-1}) = dz_s W_hh, this worker's columns, k in gate order; the
        # row blocks inside the k panels, so that each W_hh slice is read from L2 once per step
        for jc in range(c0p, c1p):
            _kloop(proto, m, G4, NB, dzp + s * B * NB * isz, NB, TB * NB, whp + jc * G4 * NB * isz,
                   dh + jc * NB * isz, LDH, zero)
    # ---- the state gradients and peephole gradients
    for r in range(B):
        b = _ld(order + 8 * r)
        _memcpy(_ldw(argp, G_DH0) + (b * S + pc0) * isz, dh + (r * LDH + pc0) * isz, (pc1 - pc0) * isz)
        _memcpy(_ldw(argp, G_DC0) + (b * H + u0) * isz, dc + (r * Hp + u0) * isz, (u1 - u0) * isz)
    dpeep = _ldw(argp, G_DPEEP)
    if dpeep != 0:
        for q in range(3):
            _memcpy(dpeep + (q * H + u0) * isz, dpacc + (q * H + u0) * isz, (u1 - u0) * isz)
    nb += 1
    _barrier(sync, w, n, nb)   # every dz, m, x^T, h_prev^T row and packed weight is in place
    # ---- with a projection: h_prev^T of this worker's steps, h = m W_hr^T (the forward's FMA chains)
    if proj:
        hps = dxs + w * MRMAX * LDX * isz
        m = B
        for s in range(nsteps):
            m = _rows_left(lens, m, s)
            if s < s0 or s >= s1:
                continue
            for k in range(S):
                dst = xh + ((I + 1 + k) * LDK + s * B) * isz
                for r in range(m, B):
                    _stf(proto, dst + r * isz, proto)
                if s == 0:
                    for r in range(m):
                        _stf(proto, dst + r * isz, _ldf(proto, h0 + (_ld(order + 8 * r) * S + k) * isz))
            if s == 0:
                continue
            nblk = (m + MRMAX - 1) // MRMAX
            r0 = 0
            for blk in range(nblk):
                mr = _block_rows(m, nblk, blk)
                for jc in range(NPS):
                    _chain(proto, mr, mp + ((s - 1) * B + r0) * NB * isz, TB * NB, H, whrp + jc * H * NB * isz,
                           hps + jc * NB * isz, LDX, zero)
                for k in range(S):
                    dst = xh + ((I + 1 + k) * LDK + s * B + r0) * isz
                    for rr in range(mr):
                        _stf(proto, dst + rr * isz, _ldf(proto, hps + (rr * LDX + k) * isz))
                r0 += mr
        nb += 1
        _barrier(sync, w, n, nb)
    # ---- dx = dz W_ih: this worker's steps
    dx = _ldw(argp, G_DX)
    m = B
    for s in range(nsteps):
        m = _rows_left(lens, m, s)
        if s < s0 or s >= s1:
            continue
        nblk = (m + MRMAX - 1) // MRMAX
        r0 = 0
        for blk in range(nblk):
            mr = _block_rows(m, nblk, blk)
            for ji in range(NPI):
                _chain(proto, mr, dzp + (s * B + r0) * NB * isz, TB * NB, G4, wip + ji * G4 * NB * isz,
                       dxs + (w * MRMAX * LDX + ji * NB) * isz, LDX, zero)
            for rr in range(mr):
                r = r0 + rr
                t = _t_of(lens, r, s, rev)
                _memcpy(dx + (t * B + _ld(order + 8 * r)) * I * isz, dxs + (w * MRMAX + rr) * LDX * isz, I * isz)
            r0 += mr
    # ---- [dW_ih^T; db; dW_hh^T] = [x^T; 1; h_prev^T] dz over the rows of all steps: this worker's dz panels
    dw_ih = _ldw(argp, G_DWIH)
    dw_hh = _ldw(argp, G_DWHH)
    db = _ldw(argp, G_DB)
    pz0, pz1 = _share(w, n, NPZ)
    for pz in range(pz0, pz1):
        _kloop(proto, KR, TB, KC, xh, LDK, KC, dzp + pz * TB * NB * isz, ct + pz * NB * isz, LDCT, zero)
        for cc in range(NB):  # transpose into the outputs
            col = pz * NB + cc
            q = col // Hp
            u = col - q * Hp
            if u >= H:
                continue
            g = q * H + u
            src = ct + col * isz
            for i in range(I):
                _stf(proto, dw_ih + (g * I + i) * isz, _ldf(proto, src + i * LDCT * isz))
            _stf(proto, db + g * isz, _ldf(proto, src + I * LDCT * isz))
            for k in range(S):
                _stf(proto, dw_hh + (g * S + k) * isz, _ldf(proto, src + (I + 1 + k) * LDCT * isz))
    # ---- dW_hr = dh_t^T m over the rows of all steps: this worker's unit panels
    if proj:
        dw_hr = _ldw(argp, G_DWHR)
        cr = _ldw(argp, G_CR)
        for jh in range(h0p, h1p):
            _kloop(proto, P, TB, KC, dht, LDK, KC, mp + jh * TB * NB * isz, cr + jh * NB * isz, LDM, zero)
            for k in range(P):
                _memcpy(dw_hr + (k * H + jh * NB) * isz, cr + (k * LDM + jh * NB) * isz,
                        (min(H, (jh + 1) * NB) - jh * NB) * isz)


@njit(**_JIT)
def backward_entry(x, gates, cells, clipped, h0, c0, w_ih, w_hh, w_hr, w_peep, lengths, reverse, flags, dy, ys0, ys1,
                   dh_n, dc_n, dx, dh0, dc0, dw_ih, dw_hh, db, dw_hr, dw_peep, nlaunch, wait_ticks, wsf, wsi, fn,
                   serial):
    """Prepare a backward call (one layer, one direction) and, when ``serial``, run it.

    Parameters (T steps, B rows, I inputs, H hidden units, S = P or H the width of h)
    ----------
    x : (T, B, I); gates : (T, B, 4H); cells : (T, B, H); clipped : (T, B, 4H) uint8 view of the
        bool mask, or (0, 0, 0) without clip; h0 : (B, S), c0 : (B, H) -- the tape
    w_ih : (4H, I); w_hh : (4H, S); w_hr : (P, H) or (0, 0); w_peep : (3, H) or (0, 0)
    lengths : (B,) int64 in [0, T]; reverse : bool; flags : PEEP | CLIP | IFORGET
    dy : int, address of dy (T, B, S), element strides ys0, ys1 (last axis contiguous)
    dh_n : (B, S), dc_n : (B, H)
    dx : (T, B, I) -- written at valid steps; dh0 : (B, S), dc0 : (B, H); dw_ih : (4H, I);
        dw_hh : (4H, S); db : (4H,); dw_hr : (P, H) or (0, 0); dw_peep : (3, H) or (0, 0) -- written
    nlaunch, wait_ticks, wsf, wsi, fn, serial : as in ``forward_entry`` (``fn`` the backward worker)

    Scratch (in ``wsf``): dz of every step, ``T B 4Hp`` in panels of NB columns (``Hp`` = H
    rounded up to V: the gate axis is padded so that a unit vector never straddles a panel);
    ``[x^T; 1; h_prev^T]`` ((I + 1 + S) x T B, rows of all steps in processing order: step s,
    rows sorted longest first) and its product with dz; the packed weights; dh, dc; with a
    projection m of every step (T B H) and dh^T (S x T B).  Returns (floats, ints) of workspace
    needed, as ``forward_entry``.
    """
    T, B, I = x.shape  # noqa: E741
    H = c0.shape[1]
    S = h0.shape[1]
    P = w_hr.shape[0]
    proto = _zero_of(x)
    V = _lanes_of(proto)
    NB = 4 * V
    Hp = (H + V - 1) // V * V
    G4 = 4 * Hp
    NPS = (S + NB - 1) // NB
    NPH = (H + NB - 1) // NB
    NPI = (I + NB - 1) // NB
    nsteps = 0
    for r in range(B):
        nsteps = max(nsteps, lengths[r])
    TB = nsteps * B
    LDK = (TB + 15) // 16 * 16
    if (LDK * (64 // V)) % 4096 == 0:
        LDK += 16
    KR = I + 1 + S
    LDCT = G4
    if (LDCT * (64 // V)) % 4096 == 0:
        LDCT += NB
    LDX = max(NPI, NPS) * NB
    LDH = NPS * NB
    LDM = NPH * NB
    o_dz = 0
    o_xh = o_dz + TB * G4
    o_ct = o_xh + KR * LDK
    o_dxs = o_ct + (KR * LDCT + 15) // 16 * 16
    o_wip = o_dxs + nlaunch * MRMAX * LDX
    o_whp = o_wip + NPI * G4 * NB
    o_dh = o_whp + NPS * G4 * NB
    o_dc = o_dh + B * LDH
    o_hrow = o_dc + B * Hp
    o_dp = o_hrow + B * Hp
    o_zero = o_dp + (3 * H + V + 15) // 16 * 16
    o_mp = o_zero + NB
    if P > 0:
        o_dht = o_mp + NPH * TB * NB
        o_cr = o_dht + P * LDK
        o_whrc = o_cr + (P * LDM + 15) // 16 * 16
        o_whrp = o_whrc + NPH * P * NB
        o_dm = o_whrp + NPS * H * NB
        n_f = o_dm + B * LDM
    else:
        o_dht = o_cr = o_whrc = o_whrp = o_dm = n_f = o_mp
    i_sync = GARGS
    i_order = i_sync + SYNC_LEN
    i_lens = i_order + B
    i_cnt = i_lens + B
    n_i = i_cnt + T + 2
    if n_f > wsf.shape[0] or n_i > wsi.shape[0]:
        return n_f, n_i
    ib = _addr(wsi)
    fb = _addr(wsf)
    isz = 64 // V
    order = ib + 8 * i_order
    lens = ib + 8 * i_lens
    _sort_rows(lengths, T, B, ib + 8 * i_cnt, order, lens)
    zero = fb + o_zero * isz
    _memzero(zero, NB * isz)
    _memzero(ib + 8 * i_sync, 8 * SYNC_LEN)
    a = ib
    _stw(a, G_T, T)
    _stw(a, G_B, B)
    _stw(a, G_I, I)
    _stw(a, G_H, H)
    _stw(a, G_HP, Hp)
    _stw(a, G_P, P)
    _stw(a, G_NSTEPS, nsteps)
    _stw(a, G_REV, 1 if reverse else 0)
    _stw(a, G_FLAGS, flags)
    _stw(a, G_NLAUNCH, nlaunch)
    _stw(a, G_WAIT, wait_ticks)
    _stw(a, G_SYNC, ib + 8 * i_sync)
    _stw(a, G_X, _addr(x))
    _stw(a, G_GATES, _addr(gates))
    _stw(a, G_CELLS, _addr(cells))
    _stw(a, G_CLIPPED, _addr(clipped) if clipped.shape[0] > 0 else 0)
    _stw(a, G_H0, _addr(h0))
    _stw(a, G_C0, _addr(c0))
    _stw(a, G_DY, dy)
    _stw(a, G_YS0, ys0)
    _stw(a, G_YS1, ys1)
    _stw(a, G_DHN, _addr(dh_n))
    _stw(a, G_DCN, _addr(dc_n))
    _stw(a, G_ORDER, order)
    _stw(a, G_LENS, lens)
    _stw(a, G_WIH, _addr(w_ih))
    _stw(a, G_WHH, _addr(w_hh))
    _stw(a, G_WHR, _addr(w_hr))
    _stw(a, G_PEEP, _addr(w_peep) if w_peep.shape[0] > 0 else 0)
    _stw(a, G_DX, _addr(dx))
    _stw(a, G_DH0, _addr(dh0))
    _stw(a, G_DC0, _addr(dc0))
    _stw(a, G_DWIH, _addr(dw_ih))
    _stw(a, G_DWHH, _addr(dw_hh))
    _stw(a, G_DB, _addr(db))
    _stw(a, G_DWHR, _addr(dw_hr))
    _stw(a, G_DPEEP, _addr(dw_peep) if dw_peep.shape[0] > 0 else 0)
    _stw(a, G_DZ, fb + o_dz * isz)
    _stw(a, G_TB, TB)
    _stw(a, G_XH, fb + o_xh * isz)
    _stw(a, G_LDK, LDK)
    _stw(a, G_CT, fb + o_ct * isz)
    _stw(a, G_LDCT, LDCT)
    _stw(a, G_DXS, fb + o_dxs * isz)
    _stw(a, G_LDX, LDX)
    _stw(a, G_WIP, fb + o_wip * isz)
    _stw(a, G_WHP, fb + o_whp * isz)
    _stw(a, G_DH, fb + o_dh * isz)
    _stw(a, G_LDH, LDH)
    _stw(a, G_DC, fb + o_dc * isz)
    _stw(a, G_HROW, fb + o_hrow * isz)
    _stw(a, G_DPACC, fb + o_dp * isz)
    _stw(a, G_ZERO, zero)
    _stw(a, G_MP, fb + o_mp * isz)
    _stw(a, G_DHT, fb + o_dht * isz)
    _stw(a, G_CR, fb + o_cr * isz)
    _stw(a, G_LDM, LDM)
    _stw(a, G_WHRC, fb + o_whrc * isz)
    _stw(a, G_WHRP, fb + o_whrp * isz)
    _stw(a, G_DM, fb + o_dm * isz)
    if serial:
        _call_worker(fn, proto, 0, ib)
    return 0, 0
