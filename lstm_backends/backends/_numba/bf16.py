"""The ``bf16`` precision mode on bfloat16 instructions: ``vdpbf16ps`` (AVX512-BF16) over weights
stored as bfloat16 pairs.

``mkbf`` has ``mk``'s signature and contract (``cout[m, 0:4V] = cin[m, 0:4V] + sum_j a[m, j] *
w[j, 0:4V]`` for float32 rows ``a``), with the mode's rounding: it rounds ``a`` to bfloat16 on
the fly (to nearest, ties to even; NaN stays NaN) and multiplies *pair panels*: the k rows of a
float32 panel taken two at a time, ``W[2q, col]`` in the low half and ``W[2q + 1, col]`` in the
high half of one 32-bit word, stored in the float32 panel's own place at row ``2q`` (row
``2q + 1`` unused), so every address the float32 workers compute stays valid (k ranges start
even: 0 or a multiple of 16).  One ``vdpbf16ps`` adds two exact bfloat16 products to each
float32 lane, the odd k first: ``acc += a[2q+1] w[2q+1]; acc += a[2q] w[2q]``, each rounded to
float32 as an FMA (Intel's definition; denormals read and written as zero).

Where the host has no AVX512-BF16 the same kernel is built with that instruction emulated by two
FMAs in the same order (``_dp_emulated``): the same bits for normal numbers, so the host of the
tests checks the kernel's every address and the rounding.  Which one a host runs is fixed when
the IR is built (``HAS_DP``), and Numba's cache keys the machine code on the host CPU's
features.  The real instruction was compiled and assembled for ``znver4`` and
``sapphirerapids`` (``tests/test_prepare.py``), never run by its author: no such CPU was at hand.
"""

from __future__ import annotations

import os

import numpy as np
from llvmlite import ir

from .ir import _FEATURES, _I32, HOST_TARGET, _c, _decl, _define, _loop, _Vec
from .microkernels import MRMAX, load_rows, store_rows
from .panels import aligned

__all__ = ["BF16_PAIRS", "HAS_DP", "bf16_pairs", "pair_panels"]

#: whether this host runs ``vdpbf16ps`` (else the kernel emulates it; also where Numba compiles for
#: another CPU than the host's, ``NUMBA_CPU_NAME``)
HAS_DP = bool(_FEATURES.get("avx512bf16")) and bool(_FEATURES.get("avx512f")) and HOST_TARGET
#: the bf16 mode's products on pair panels: None = where the CPU has AVX512-BF16 (``HAS_DP``); True
#: forces them (emulated without it: for tests), False keeps the float32 FMAs on rounded operands.
#: ``LSTM_BACKENDS_BF16_PAIRS=1`` / ``0`` sets it for a process.  (A choice of data and a run-time
#: flag, not of compiled code: the cache stays sound.)
BF16_PAIRS: bool | None = {"1": True, "0": False}.get(os.environ.get("LSTM_BACKENDS_BF16_PAIRS", ""))


def bf16_pairs() -> bool:
    """Whether the ``bf16`` mode multiplies on bfloat16 pairs here (see :data:`BF16_PAIRS`)."""
    return HAS_DP if BF16_PAIRS is None else BF16_PAIRS
KCP = 64          # pairs per chunk of rounded a rows (6 rows x 64 words on the stack)


class _BFloat(ir.types.Type):
    """LLVM's ``bfloat`` (llvmlite's IR builder has no such type)."""

    def _to_string(self):
        return "bfloat"

    def __eq__(self, other):
        return isinstance(other, _BFloat)

    def __hash__(self):
        return hash("bfloat")


# ---------------------------------------------------------------------------- host side

def pair_panels(p: np.ndarray) -> np.ndarray:
    """Float32 panels ``(NP, K, 4V)`` of bfloat16-valued weights as pair panels of the same shape
    and dtype (the words are bit patterns): row ``2q`` holds ``W[2q] | W[2q + 1] << 16`` per column
    (a missing odd row as zero), row ``2q + 1`` zeros."""
    p = np.ascontiguousarray(p, np.float32)
    bits = p.view(np.uint32)
    out = np.zeros(p.shape, np.uint32)
    lo = bits[:, 0::2, :] >> 16
    hi = np.zeros_like(lo)
    hi[:, : bits[:, 1::2, :].shape[1], :] = bits[:, 1::2, :] & np.uint32(0xFFFF0000)
    out[:, 0::2, :] = lo | hi
    return aligned(out.view(np.float32))


# ---------------------------------------------------------------------------- the kernel (IR)

def _dp_real(b, vb, acc, a, w):
    """``vdpbf16ps``: ``acc`` (16 float32) plus the pair products of ``a`` and ``w`` (16 words)."""
    bfv = ir.VectorType(_BFloat(), 32)
    fn = _decl(b.module, "llvm.x86.avx512bf16.dpbf16ps.512", vb.vty, [vb.vty, bfv, bfv])
    return b.call(fn, [acc, b.bitcast(a, bfv), b.bitcast(w, bfv)])


def _dp_emulated(b, vb, acc, a, w):
    """``vdpbf16ps`` as two FMAs, the odd element (high half) first, as Intel defines it."""
    mask = vb.iconst(-65536)
    def hi(x):
        return vb.from_bits(b.and_(x, mask))

    def lo(x):
        return vb.from_bits(b.shl(x, vb.iconst(16)))

    acc = vb.fma(hi(a), hi(w), acc)
    return vb.fma(lo(a), lo(w), acc)


def _define_mkbf(module, mr):
    """``void mkbf_r{mr}(a, lda, w, k, cin, ldcin, cout, ldcout)``: see the module docstring."""
    b, fn = _define(module, f"lstmb_mkbf_r{mr}", 8)
    if b is None:
        return fn
    vb = _Vec(b, 32)
    V, nb = vb.V, 4 * vb.V
    dp = _dp_real if HAS_DP else _dp_emulated
    a, lda, w, k, cin, ldcin, cout, ldcout = fn.args
    pa, pci, pco = (vb.fptr(v) for v in (a, cin, cout))
    pw = b.inttoptr(w, _I32.as_pointer())
    with b.goto_entry_block():
        buf = b.alloca(ir.ArrayType(_I32, MRMAX * KCP), name="pairs")
        buf.align = 64
    pbuf = b.bitcast(buf, _I32.as_pointer())
    ivty = vb.ivty
    init = load_rows(b, vb, mr, pci, ldcin)
    arow = [b.gep(pa, [b.mul(lda, _c(m))]) for m in range(mr)]
    npair = b.sdiv(b.add(k, _c(1)), _c(2))
    full = b.sdiv(k, _c(2))      # pairs with both elements
    even = ir.Constant(ir.VectorType(_I32, V), list(range(0, 2 * V, 2)))
    odd = ir.Constant(ir.VectorType(_I32, V), list(range(1, 2 * V, 2)))

    def chunk(q0, accs):
        q1 = b.add(q0, _c(KCP))
        q1 = b.select(b.icmp_signed("<", npair, q1), npair, q1)
        for m in range(mr):   # the rows' pairs [q0, q1) as words, V pairs at a time where whole
            dst = b.gep(pbuf, [_c(m * KCP)])
            vend = b.add(q0, b.mul(b.sdiv(b.sub(b.select(b.icmp_signed("<", full, q1), full, q1), q0), _c(V)),
                                   _c(V)))
            vend = b.select(b.icmp_signed("<", vend, q0), q0, vend)

            def vpairs(q, carried, m=m, dst=dst):
                x0 = vb.load(arow[m], b.mul(q, _c(2)))
                x1 = vb.load(arow[m], b.add(b.mul(q, _c(2)), _c(V)))
                bx0, bx1 = vb.bf16_bits(x0), vb.bf16_bits(x1)
                lo16 = b.shuffle_vector(bx0, bx1, even)
                hi16 = b.shuffle_vector(bx0, bx1, odd)
                word = b.or_(lo16, b.shl(hi16, vb.iconst(16)))
                b.store(word, b.bitcast(b.gep(dst, [b.sub(q, q0)]), ivty.as_pointer()), align=4)
                return carried

            _loop(b, q0, lambda q, vend=vend: b.icmp_signed("<", q, vend), _c(V), [], vpairs)

            def spairs(q, carried, m=m, dst=dst):
                j = b.mul(q, _c(2))
                e0 = b.load(b.gep(arow[m], [j]), align=4)
                w0 = b.extract_element(vb.bf16_bits(vb.splat(e0)), ir.Constant(_I32, 0))
                has1 = b.icmp_signed("<", b.add(j, _c(1)), k)
                j1 = b.select(has1, b.add(j, _c(1)), j)   # never read past the row
                e1 = b.load(b.gep(arow[m], [j1]), align=4)
                w1 = b.extract_element(vb.bf16_bits(vb.splat(e1)), ir.Constant(_I32, 0))
                w1 = b.select(has1, w1, ir.Constant(_I32, 0))
                b.store(b.or_(w0, b.shl(w1, ir.Constant(_I32, 16))), b.gep(dst, [b.sub(q, q0)]), align=4)
                return carried

            _loop(b, vend, lambda q: b.icmp_signed("<", q, q1), _c(1), [], spairs)

        def body(q, accs):
            wrow = b.gep(pw, [b.mul(q, _c(2 * nb))])
            wv = [b.load(b.bitcast(b.gep(wrow, [_c(v * V)]), ivty.as_pointer()), align=4) for v in range(4)]
            new = []
            for m in range(mr):
                word = b.load(b.gep(pbuf, [b.add(_c(m * KCP), b.sub(q, q0))]), align=4)
                s = b.shuffle_vector(b.insert_element(ir.Constant(ivty, ir.Undefined), word, ir.Constant(_I32, 0)),
                                     ir.Constant(ivty, ir.Undefined),
                                     ir.Constant(ir.VectorType(_I32, V), [0] * V))
                new += [dp(b, vb, accs[m * 4 + v], s, wv[v]) for v in range(4)]
            return new

        _, accs = _loop(b, q0, lambda q: b.icmp_signed("<", q, q1), _c(1), list(accs), body)
        return accs

    _, accs = _loop(b, _c(0), lambda q0: b.icmp_signed("<", q0, npair), _c(KCP), init, chunk)
    store_rows(b, vb, mr, pco, ldcout, accs)
    b.ret_void()
    return fn


def define_mkbf_dispatch(module, bits, name="lstmb_mkbf_f32", define_kernel=None, mrmax=MRMAX):
    """``void mkbf(mr, a, lda, w, k, cin, ldcin, cout, ldcout)``: switch on mr (1..mrmax) to
    ``define_kernel(module, mr)``'s kernels (default ``mkbf``; ``amx.py`` passes its own); float64
    (no such mode) gets ``mk``'s dispatch, never called with pairs."""
    from .microkernels import _define_dispatch, _define_mk_dispatch

    if bits == 64:
        return _define_mk_dispatch(module, bits)
    kernel = define_kernel or _define_mkbf
    return _define_dispatch(module, name, 9, lambda mr: kernel(module, mr), mrmax)
