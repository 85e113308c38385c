"""The precision modes ``bf16`` and ``bf16x3`` (``Backend.prepare(params, precision=...)``), the
portable path: bfloat16-rounded operands multiplied and summed in float32 FMA chains on the same
micro-kernel, so any x86-64 CPU runs them with the promised rounding.

How the modes become ordinary float32 products.  A bfloat16 value is a float32 whose low 16 bits
are zero, so the product of two of them is exact in float32, and an FMA chain over them is a
float32 accumulation of exact bfloat16 products: the ``bf16`` mode.  ``bf16x3`` splits every
operand ``v = hi + lo`` (``hi = bf16(v)``, ``lo = bf16(v - hi)``) and concatenates along the
summed axis: ``[x_hi | x_hi | x_lo] · [W_hi; W_lo; W_hi]`` is ``hi·hi + hi·lo + lo·hi`` in one
chain of ``3K`` products.  The weights are rounded / split once, by ``prepare`` (``split_weights``:
the rows of ``W`` become ``[W_hi | W_lo | W_hi]``, then the usual panels); ``x`` once per call
(``split_rows``), ``h`` (and the projection's input) at every step, here.

One thread, row blocks of ``mr`` as in ``embed``; the scratch comes from the caller.  Without a
projection neither mode comes here: both run on the float32 forward paths (teams, bulk input
product; ``NumbaBackend._mode_forward_float32``; on AVX512-BF16 their products on ``vdpbf16ps``,
``bf16.py``, on AMX on tiles, ``amx.py``).  ``bf16``: these panels and ``x`` rounded once, h
rounded by the gate update (``gates.ROUNDH``).  ``bf16x3``: ``x`` as above, but h split *per gate
panel* (:func:`three_blocks`, ``x3_panels``; the gate update writes the three blocks,
``gates.SPLIT3``), so that every k range of the team split — whole panels' units — stays
contiguous in the split operand.  This path serves projections, on float32 FMAs only.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from ._jit import _JIT
from .intrinsics import _addr, _gate, _ldf, _mk, _stf
from .microkernels import MRMAX
from .panels import panels
from .rows import _peep_of

__all__ = ["mode_forward_entry", "scratch_size", "split_rows", "split_weights", "three_blocks", "x3_panels"]

V = 16           # float32 lanes of a 64-byte vector
NB = 4 * V


# ---------------------------------------------------------------------------- rounding (host side)

def _bf16(a: np.ndarray) -> np.ndarray:
    """float32 ``a`` rounded to bfloat16 (to nearest, ties to even), as float32."""
    import ml_dtypes

    return np.asarray(a, np.float32).astype(ml_dtypes.bfloat16).astype(np.float32)


def split_rows(a: np.ndarray, three: bool) -> np.ndarray:
    """Operand rows ``(..., K)`` as the mode multiplies them: ``bf16(a)``, or with ``three``
    ``[hi | hi | lo]`` of shape ``(..., 3K)``."""
    hi = _bf16(a)
    if not three:
        return np.ascontiguousarray(hi)
    return np.ascontiguousarray(np.concatenate([hi, hi, _bf16(a - hi)], axis=-1))


def split_weights(w: np.ndarray, three: bool) -> np.ndarray:
    """Weight rows ``(N, K)`` as the mode multiplies them: ``bf16(W)``, or ``[W_hi | W_lo | W_hi]``."""
    hi = _bf16(w)
    if not three:
        return hi
    return np.ascontiguousarray(np.concatenate([hi, _bf16(w - hi), hi], axis=1))


def three_blocks(a: np.ndarray, weights: bool) -> np.ndarray:
    """``bf16x3`` on the float32 forward paths (``gates.SPLIT3``): rows ``(..., H)`` split per gate
    panel of ``V`` units into three blocks, ``[hi | hi | lo]`` for h (the operand the gate update
    writes), ``[W_hi | W_lo | W_hi]`` for the columns of ``w_hh`` with ``weights``; zero past H.
    Shape ``(..., 3 NP V)``, ``NP = ceil(H / V)``: the products of a panel's blocks sum to
    ``hi·hi + hi·lo + lo·hi`` and every team split of k stays whole panels' blocks."""
    a = np.asarray(a, np.float32)
    lead, H = a.shape[:-1], a.shape[-1]
    NP = -(-H // V)
    hi = _bf16(a)
    lo = _bf16(a - hi)
    out = np.zeros((*lead, NP, 3, V), np.float32)
    part = np.zeros((*lead, NP * V), np.float32)   # (zero past H)
    for j, p in enumerate((hi, lo, hi) if weights else (hi, hi, lo)):
        part[..., :H] = p
        out[..., j, :] = part.reshape(*lead, NP, V)
    return out.reshape(*lead, 3 * NP * V)


def x3_panels(params: Any) -> tuple[np.ndarray, ...]:
    """The panels of ``bf16x3`` on the float32 forward paths, for float32 ``params`` without a
    projection: ``w_ih`` split as ``[W_hi | W_lo | W_hi]`` (x is ``split_rows(x, True)``), ``w_hh``
    in :func:`three_blocks`' layout, the bias unrounded."""
    return panels(split_weights(params.w_ih, True), three_blocks(params.w_hh, True), params.b_ih, params.b_hh,
                  None, np.float32)


# ---------------------------------------------------------------------------- rounding (compiled)

@intrinsic
def _round_bf16(typingctx, v):
    """A float32 rounded to bfloat16 (to nearest, ties to even; NaN stays NaN), as float32."""
    if v != types.float32:
        return None

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        bits = builder.bitcast(args[0], i32)
        odd = builder.and_(builder.lshr(bits, ir.Constant(i32, 16)), ir.Constant(i32, 1))
        up = builder.add(builder.add(bits, ir.Constant(i32, 0x7FFF)), odd)
        rounded = builder.bitcast(builder.and_(up, ir.Constant(i32, -65536)), ir.FloatType())
        isnan = builder.fcmp_unordered("uno", args[0], args[0])
        return builder.select(isnan, args[0], rounded)
    return types.float32(types.float32), codegen


@njit(inline="always", **_JIT)
def _split_row(src, dst, n, three):
    """``n`` float32 at address ``src`` as the mode's operand row at ``dst`` (``n`` or ``3n`` long)."""
    proto = np.float32(0)
    for k in range(n):
        v = _ldf(proto, src + 4 * k)
        hi = _round_bf16(v)
        _stf(proto, dst + 4 * k, hi)
        if three:
            _stf(proto, dst + 4 * (n + k), hi)
            _stf(proto, dst + 4 * (2 * n + k), _round_bf16(v - hi))


@njit(inline="always", **_JIT)
def _split_blocks(src, dst, n):
    """``n`` float32 at address ``src`` as bf16x3's h operand on the float32 paths at ``dst``
    (:func:`three_blocks`: ``3 ceil(n / V) V`` long, zero past n)."""
    proto = np.float32(0)
    for p in range((n + V - 1) // V):
        for u in range(V):
            k = p * V + u
            at = dst + 4 * (3 * p * V + u)
            if k < n:
                v = _ldf(proto, src + 4 * k)
                hi = _round_bf16(v)
                _stf(proto, at, hi)
                _stf(proto, at + 4 * V, hi)
                _stf(proto, at + 8 * V, _round_bf16(v - hi))
            else:
                _stf(proto, at, proto)
                _stf(proto, at + 4 * V, proto)
                _stf(proto, at + 8 * V, proto)


# ---------------------------------------------------------------------------- the step and the sequence

def scratch_size(mr: int, H: int, S: int, three: bool) -> int:
    """float32 elements of scratch ``mode_forward_entry`` needs (a tile, new h, the projection's
    input and its split, the split h of a block)."""
    m = 3 if three else 1
    LDH = -(-S // NB) * NB
    LDC = -(-H // V) * V
    return MRMAX * NB + mr * (LDH + LDC + m * LDC + m * S) + 64


@njit(inline="always", **_JIT)
def _block(mr, xs, Kx, hs, Kh, ho, ca, H, S, ya, ldy, NP, NPP, flags, clip, wip, whp, bp, whrp, peep, pstep,
           ldpeep, zero, st, m):
    """One step of ``mr`` rows: split x rows at ``xs`` (``Kx`` apart), split h rows at ``hs`` (``Kh``
    apart), c at ``ca`` (``H`` apart) updated in place, the new h to ``ho`` (``S`` apart) and ``ya``
    (``ldy`` apart; 0: none).  ``m``: 1 (bf16) or 3 (bf16x3) products per operand pair."""
    proto = np.float32(0)
    LDH = (S + NB - 1) // NB * NB
    LDC = NP * V
    tile = st
    hbuf = st + 4 * MRMAX * NB
    rbuf = hbuf + 4 * mr * LDH
    rsp = rbuf + 4 * mr * LDC
    for pp in range(NP):
        _mk(proto, mr, xs, Kx, wip + 4 * pp * Kx * NB, Kx, bp + 4 * pp * NB, 0, tile, NB)
        _mk(proto, mr, hs, Kh, whp + 4 * pp * Kh * NB, Kh, tile, NB, tile, NB)
        nval = min(V, H - pp * V)
        for r in range(mr):
            dst = hbuf + 4 * (r * LDH + pp * V)
            if NPP > 0:
                dst = rbuf + 4 * (r * LDC + pp * V)
            cc = ca + 4 * (r * H + pp * V)
            _gate(proto, flags, tile + 4 * r * NB, cc, cc, dst, 0, nval, peep + 4 * pp * pstep, ldpeep, clip, 0, 0, 0,
                  0)
    if NPP > 0:   # the projection's input is an operand too: rounded / split
        Kr = m * H
        for r in range(mr):
            _split_row(rbuf + 4 * r * LDC, rsp + 4 * r * Kr, H, m == 3)
        for jp in range(NPP):
            _mk(proto, mr, rsp, Kr, whrp + 4 * jp * Kr * NB, Kr, zero, 0, hbuf + 4 * jp * NB, LDH)
    for r in range(mr):
        for k in range(S):
            v = _ldf(proto, hbuf + 4 * (r * LDH + k))
            _stf(proto, ho + 4 * (r * S + k), v)
            if ya != 0:
                _stf(proto, ya + 4 * (r * ldy + k), v)


@njit(**_JIT)
def mode_forward_entry(xs, w_ih, w_hh, bias, w_hr, w_peep, zero, h_n, c_n, lengths, y, reverse, flags, clip, m, mr,
                       scratch):
    """A sequence in a precision mode, on one thread.

    xs : (T, B, m I) float32, x already split (``split_rows``); w_ih (NP, m I, 4V), w_hh (NP, m S,
    4V), bias (NP, 4V), w_hr (NPP, m H, 4V) or (0, 0, 4V): the split weights' panels; w_peep (3, H)
    or (0, H); zero (4V,) zeros; h_n (B, S), c_n (B, H): the initial state in, the final out; lengths
    (B,) int64; y (T, B, S) written at valid steps (zero elsewhere: the caller); m 1 or 3; mr rows
    per block; scratch float32 of ``scratch_size`` elements.  The same row grouping as
    ``embed._forward_impl`` (a block holds consecutive rows at the same time index)."""
    T = xs.shape[0]
    B = xs.shape[1]
    Kx = xs.shape[2]
    H = c_n.shape[1]
    S = h_n.shape[1]
    NP = w_ih.shape[0]
    NPP = w_hr.shape[0]
    Kh = m * S
    LDH = (S + NB - 1) // NB * NB
    LDC = NP * V
    st = _addr(scratch)
    hsp = st + 4 * (MRMAX * NB + mr * (LDH + LDC + m * LDC))
    peep, pstep, ldpeep = _peep_of(w_peep, _addr(zero), V)
    hn = _addr(h_n)
    cn = _addr(c_n)
    for s in range(T):
        b0 = 0
        while b0 < B:
            if s >= lengths[b0]:
                b0 += 1
                continue
            t0 = lengths[b0] - 1 - s if reverse else s
            b1 = b0 + 1
            while b1 < B and b1 - b0 < mr and s < lengths[b1]:
                t1 = lengths[b1] - 1 - s if reverse else s
                if t1 != t0:
                    break
                b1 += 1
            n = b1 - b0
            for r in range(n):
                _split_row(hn + 4 * (b0 + r) * S, hsp + 4 * r * Kh, S, m == 3)
            _block(n, _addr(xs) + 4 * (t0 * B + b0) * Kx, Kx, hsp, Kh, hn + 4 * b0 * S, cn + 4 * b0 * H, H, S,
                   _addr(y) + 4 * (t0 * B + b0) * S, S, NP, NPP, flags, clip, _addr(w_ih), _addr(w_hh), _addr(bias),
                   _addr(w_hr), peep, pstep, ldpeep, _addr(zero), st, m)
            b0 = b1


def mode_panels(params: Any, three: bool) -> tuple[np.ndarray, ...]:
    """The split weights' panels of float32 ``params`` (an LSTMParams): ``(w_ih, w_hh, bias, w_hr)``
    as ``mode_forward_entry`` takes them (bias unrounded: it is no product's operand)."""
    w_hr = None if params.w_hr is None else split_weights(params.w_hr, three)
    return panels(split_weights(params.w_ih, three), split_weights(params.w_hh, three), params.b_ih, params.b_hh,
                  w_hr, np.float32)
