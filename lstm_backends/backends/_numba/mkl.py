"""The MKL path (opt-in, ``gemm="mkl"``): the team worker of ``forward.py`` on MKL's packed GEMM
(sequential MKL).  Same argument block, team split, gate update and projection; MKL's summation
order, so not bitwise equal to the own kernel.  The MKL symbols are registered by
``backends._mkl.register()``, which must run before this worker is compiled or loaded."""

# ruff: noqa: F405 (the argument-block names come from ``blocks``' star import)

from __future__ import annotations

import numpy as np
from numba import types
from numba.extending import overload

from ._jit import _JIT
from .blocks import *  # noqa: F403 -- the A_* word offsets and W_* sync words of the argument block
from .intrinsics import _addr, _gate, _lanes_of, _ld, _ldf, _ldw, _memcpy, _memzero, _st, _store_rel
from .microkernels import MRMAX
from .rows import _bias_panel, _carry_rows, _final_state, _pack_proj, _project_rows, _record, _rows_left, _t_of
from .team import _handshake, _share, _wait_others

# MKL's packed GEMM, reached through symbols registered by ``_mkl.register()`` (which must run
# before these kernels are compiled or loaded from the cache).  Pointers travel as int64.

_i32, _i64 = types.int32, types.int64
_x_pack_size = {p: types.ExternalFunction(f"lstmb_{p}pack_get_size", _i64(_i32, _i32, _i32, _i32)) for p in "sd"}
_x_pack = {p: types.ExternalFunction(f"lstmb_{p}pack", types.void(_i32, _i32, _i32, _i32, _i32, _i32, f, _i64, _i32,
                                                                   _i64))
           for p, f in (("s", types.float32), ("d", types.float64))}
_x_compute = {p: types.ExternalFunction(f"lstmb_{p}compute", types.void(_i32, _i32, _i32, _i32, _i32, _i32, _i64, _i32,
                                                                         _i64, _i32, f, _i64, _i32))
              for p, f in (("s", types.float32), ("d", types.float64))}
_x_spack_size, _x_dpack_size = _x_pack_size["s"], _x_pack_size["d"]
_x_spack, _x_dpack = _x_pack["s"], _x_pack["d"]
_x_scompute, _x_dcompute = _x_compute["s"], _x_compute["d"]
_ROW, _NOTRANS, _TRANS, _PACKED, _BMATRIX = 101, 111, 112, 151, 162


def _mkl_packed(proto, rows, m, n, k):  # pragma: no cover - typed through the overload
    """MKL-packed B = rows^T (rows: address of an (n, k) row-major matrix) for C(m, n) += A(m, k) B."""
    raise NotImplementedError


@overload(_mkl_packed, jit_options=_JIT, inline="always")
def _ov_mkl_packed(proto, rows, m, n, k):
    if proto == types.float32:
        def impl32(proto, rows, m, n, k):
            size = _x_spack_size(np.int32(_BMATRIX), np.int32(m), np.int32(n), np.int32(k))
            buf = np.empty(size // 4 + 32, np.float32)
            dst = _addr(buf) + (-_addr(buf)) % 64
            _x_spack(np.int32(_ROW), np.int32(_BMATRIX), np.int32(_TRANS), np.int32(m), np.int32(n), np.int32(k),
                     np.float32(1.0), rows, np.int32(k), dst)
            return buf, dst
        return impl32

    def impl64(proto, rows, m, n, k):
        size = _x_dpack_size(np.int32(_BMATRIX), np.int32(m), np.int32(n), np.int32(k))
        buf = np.empty(size // 8 + 16, np.float64)
        dst = _addr(buf) + (-_addr(buf)) % 64
        _x_dpack(np.int32(_ROW), np.int32(_BMATRIX), np.int32(_TRANS), np.int32(m), np.int32(n), np.int32(k), 1.0,
                 rows, np.int32(k), dst)
        return buf, dst
    return impl64


def _mkl_gemm(proto, m, n, k, a, lda, packed, c, ldc):  # pragma: no cover - typed through the overload
    """C(m, n) (row stride ldc) += A(m, k) (row stride lda) @ packed."""
    raise NotImplementedError


@overload(_mkl_gemm, jit_options=_JIT, inline="always")
def _ov_mkl_gemm(proto, m, n, k, a, lda, packed, c, ldc):
    if proto == types.float32:
        def impl32(proto, m, n, k, a, lda, packed, c, ldc):
            _x_scompute(np.int32(_ROW), np.int32(_NOTRANS), np.int32(_PACKED), np.int32(m), np.int32(n),
                        np.int32(k), a, np.int32(lda), packed, np.int32(k), np.float32(1.0), c, np.int32(ldc))
        return impl32

    def impl64(proto, m, n, k, a, lda, packed, c, ldc):
        _x_dcompute(np.int32(_ROW), np.int32(_NOTRANS), np.int32(_PACKED), np.int32(m), np.int32(n), np.int32(k), a,
                    np.int32(lda), packed, np.int32(k), 1.0, c, np.int32(ldc))
    return impl64


def _mkl_worker(proto, p, argp):
    """The team worker on MKL's packed GEMM: same argument block, team split, gate update and
    projection as ``_worker``; per step a full barrier, then the bias, ``x W_ih^T`` and
    ``h W_hh^T`` of the worker's panel columns by two packed computes (MKL's summation order:
    not bitwise equal to the own kernel).  The input product is always inside the step."""
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
    flags = _ldw(argp, A_FLAGS)
    clip = _ldf(np.float64(0.0), argp + 8 * A_CLIP)
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
    whrp = _ldw(argp, A_WHRP)
    bp = _ldw(argp, A_BP)
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
    tape_g = _ldw(argp, A_TG)
    tape_c = _ldw(argp, A_TC)
    tape_k = _ldw(argp, A_TK)
    proj = NPP > 0
    g0, g1 = _share(w, n, NP)
    j0, j1 = _share(w, n, NPP)
    u0 = min(g0 * V, H)
    u1 = min(g1 * V, H)
    hc0 = min(j0 * NB, S) if proj else u0
    hc1 = min(j1 * NB, S) if proj else u1
    wb_all = ((S - 1) // V) * n // NP + 1
    if proj:
        wb_all = ((S - 1) // NB) * n // NPP + 1
    ncols = (g1 - g0) * NB
    # this worker's rows of W_ih / W_hh in the panel order, then MKL-packed
    rows_ih = np.empty(ncols * max(I, 1) * isz // 8 + 8, np.float64)  # (by address, in the dtype of proto)
    rows_hh = np.empty(ncols * S * isz // 8 + 8, np.float64)
    for pp in range(g0, g1):
        nval = min(V, H - pp * V)
        for q in range(4):
            for u in range(V):
                rr = (pp - g0) * NB + q * V + u
                src = q * H + pp * V + u
                if u < nval:
                    _memcpy(_addr(rows_ih) + rr * I * isz, w_ih + src * I * isz, I * isz)
                    _memcpy(_addr(rows_hh) + rr * S * isz, w_hh + src * S * isz, S * isz)
                else:
                    _memzero(_addr(rows_ih) + rr * I * isz, I * isz)
                    _memzero(_addr(rows_hh) + rr * S * isz, S * isz)
        _bias_panel(proto, b_ih, b_hh, bp + pp * NB * isz, H, pp, V)
    keep_ih, packed_ih = _mkl_packed(proto, _addr(rows_ih), B, ncols, max(I, 1))
    keep_hh, packed_hh = _mkl_packed(proto, _addr(rows_hh), B, ncols, S)
    for jp in range(j0, j1):
        _pack_proj(proto, w_hr, whrp, jp, H, S)
    me_done = sync + 8 * (W_DONE0 + 16 * w)
    me_rdone = me_done + 64
    m = B
    prev = B
    for s in range(nsteps):
        m = _rows_left(lens, m, s)
        cur = s & 1
        hcur = hb + cur * B * LDH * isz
        hnxt = hb + (1 - cur) * B * LDH * isz
        tt = T - 1 - s if rev else s
        for rr in range(m):
            _st(tof + 8 * rr, _t_of(lens, rr, s, rev))
        xsrc = x + tt * B * I * isz
        if not direct:
            xsrc = xa
            for rr in range(m):
                _memcpy(xa + rr * I * isz, x + (_ld(tof + 8 * rr) * B + _ld(order + 8 * rr)) * I * isz, I * isz)
        for rr in range(m):
            _memcpy(acc + (rr * LD + g0 * NB) * isz, bp + g0 * NB * isz, ncols * isz)
        if I > 0 and m > 0:
            _mkl_gemm(proto, m, ncols, I, xsrc, I, packed_ih, acc + g0 * NB * isz, LD)
        if s > 0:
            _wait_others(sync + 8 * W_DONE0, w, 0, wb_all, s)
        if not proj:
            _carry_rows(hnxt, hcur, m, prev, LDH, u0, u1, isz)
        if m > 0:
            _mkl_gemm(proto, m, ncols, S, hcur, LDH, packed_hh, acc + g0 * NB * isz, LD)
        for pp in range(g0, g1):
            nval = min(V, H - pp * V)
            for rr in range(m):
                cc = c + (rr * LDC + pp * V) * isz
                if proj:
                    hh = rbuf + (rr * LDC + pp * V) * isz
                    yy = 0
                else:
                    hh = hnxt + (rr * LDH + pp * V) * isz
                    yy = y + (_ld(tof + 8 * rr) * ys0 + _ld(order + 8 * rr) * ys1 + pp * V) * isz
                tg, tc, tk = _record(tape_g, tape_c, tape_k, _ld(tof + 8 * rr) * B + _ld(order + 8 * rr), H, pp * V,
                                     isz)
                _gate(proto, flags, acc + (rr * LD + pp * NB) * isz, cc, cc, hh, yy, nval, peep + pp * pstep * isz,
                      ldpeep, clip, tg, H, tc, tk)
        if proj:
            _store_rel(me_rdone, s + 1)
            _wait_others(sync + 8 * W_DONE0 + 64, w, 0, n, s + 1)
            _carry_rows(hnxt, hcur, m, prev, LDH, hc0, hc1, isz)
            nblk = (m + MRMAX - 1) // MRMAX
            _project_rows(proto, m, nblk, j0, j1, H, S, rbuf, LDC, whrp, zero, hnxt, LDH, y, ys0, ys1, tof, order, isz)
        _store_rel(me_done, s + 1)
        prev = m
    _final_state(argp, hb + (nsteps & 1) * B * LDH * isz, c, order, B, S, H, LDH, LDC, hc0, hc1, u0, u1, isz)
    keep_ih[0:0] = 0  # buffers used by address: keep them alive until here
    keep_hh[0:0] = 0
    rows_ih[0:0] = 0
    rows_hh[0:0] = 0
