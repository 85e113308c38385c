"""Numba kernels of the ``numba`` backend (imported on first use only).

Versions, llm.c style (each checked against the NumPy reference; every one gives bitwise the
same results as the others):

1. **serial**: one thread.  Pack the weights, then per step the input product, the
   recurrent product and the fused gate update, panel by panel.
2. **team** (hidden split): ``n`` workers in one parallel region per call; worker ``w``
   owns a contiguous block of panels (its part of the packing, of every product and of
   the gate update: its W_hh panels stay in its own L2).  Per step: phase A (the input
   product and the half of h the worker's panels sum first), wait, phase B (the other
   half, the gate update), publish.  With two workers phase A needs no partner data, so
   the per-step barrier hides behind it.
3. **bulk** (team or serial with a bulk input projection): the input product of every
   step first, as one compute-bound GEMM per panel; then only the recurrent product per
   step.  Wins at small batches (W_ih is streamed once, not once per step).
4. **cell**: one step from the row-major weights, read in place (no packing: 16x16
   in-register transposes feed the same FMA chains); ``cell_team_entry`` splits its hidden
   panels over a team in one ``prange`` region (each core keeps its block of the weights in
   its own cache from call to call).
5. **mkl** (opt-in): the team structure on MKL's packed GEMM (sequential MKL); not
   bitwise equal to the others (MKL's own summation order).
6. **training**: ``forward_train`` is versions 1-3 with the gate update also storing the
   tape; **backward** a team worker of its own (``_bwd_worker``): per step the fused
   pointwise backward (``gate_bwd``, IR), a barrier, ``dh = dz W_hh`` on ``mk``; after the
   loop ``dx = dz W_ih`` and the weight gradients as products over the rows of all steps.
   Bitwise the same for every kind and team size (work split over outputs, never over a sum).

Layout.  The 4H gate rows are regrouped into *panels* of ``U`` hidden units (``U = 16``
float32, ``8`` float64: one 64-byte vector), the four gates side by side:
``Wp[p, k, q*U + u] = W[q*H + p*U + u, k]`` (zero past H), so a panel row is 4 vectors
and the gate update of a panel runs on the tile the product just wrote, in registers.

Summation order (the reason all kinds agree bit for bit).  Every gate pre-activation is
one FMA chain: the bias (``b_ih + b_hh``), then ``x_k W_ih[:, k]`` for ``k = 0..I-1``,
then ``h_k W_hh[:, k]`` in the *canonical two-half order* fixed by H (and the projection
size) alone: panels ``p < ceil(NP/2)`` sum ``h[0:ks]`` then ``h[ks:S]``, the others
``h[ks:S]`` then ``h[0:ks]``.  A projection output is one chain over ``k = 0..H-1``.
Nothing depends on the kind, the team size, the tile position or the thread count.

Micro-kernels are LLVM IR emitted by ``@intrinsic``\\ s as ``noinline`` functions
(``llvm.fma``: numba does not contract without fastmath, and contraction would make the
bits depend on the inlining context): ``mk`` (1..6 rows x 4 vectors, packed weights,
accumulators in registers over k), ``mkt`` (the same chains from row-major weights via
in-register transposes: the cell), ``pack`` (the transposes, storing), ``gate`` (the fused
update, 8 compile-time variants of peephole / clip / input_forget, masked for a partial
last panel).  float32 uses Eigen's clamped rational tanh (abs. error 3.6e-7) and
sigma(x) = (1 + tanh(x/2)) / 2; float64 the branch-free ``tanh64``/``sigmoid64``/``exp64``
below (<= 4e-16 relative, vectorised).

Compile time.  Each worker is a C callback (``cfunc``) compiled once per dtype and
reached by address, so the parallel region (one for every kind and dtype) and the entry
hold no copy of it; the heavy code is IR, which costs LLVM time only.  Every kernel is
``cache=True``; every jitted helper lives in this file (``cache=True`` does not notice
edits of jitted functions in other files).  ``error_model="numpy"``.
"""

from __future__ import annotations

import platform

import numpy as np
from llvmlite import ir
from numba import cfunc, njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

_JIT = {"cache": True, "error_model": "numpy", "nogil": True}

_X86 = platform.machine().lower() in ("x86_64", "amd64", "i686", "x86")
try:
    import llvmlite.binding as _llb

    _AVX512 = _X86 and bool(_llb.get_host_cpu_features().get("avx512f"))
except Exception:  # pragma: no cover - feature query unavailable
    _AVX512 = False

MRMAX = 6          # rows per micro-kernel call (6 x 4 zmm accumulators)
MRCELL = 4         # rows per transposing (cell) call
PF_BYTES = 1024    # software prefetch distance of the weight stream in the 1-4 row kernels
PF_MAXROWS = 4

_I64 = ir.IntType(64)
_I32 = ir.IntType(32)
_I1 = ir.IntType(1)
_I8P = ir.IntType(8).as_pointer()


# ============================================================================ IR building blocks

def _decl(module, name, ret, args):
    return cgutils.get_or_insert_function(module, ir.FunctionType(ret, args), name)


def _define(module, name, nargs, ret=None, argtys=None, noinline=True):
    """A new linkonce_odr function in ``module`` (or None when already defined there)."""
    fn = module.globals.get(name)
    if fn is not None and not fn.is_declaration:
        return None, fn
    fnty = ir.FunctionType(ret or ir.VoidType(), argtys or [_I64] * nargs)
    if fn is None:
        fn = ir.Function(module, fnty, name)
    fn.linkage = "linkonce_odr"
    if noinline:
        fn.attributes.add("noinline")
    fn.attributes.add("nounwind")
    return ir.IRBuilder(fn.append_basic_block("entry")), fn


class _Vec:
    """Vector helpers for one dtype: V lanes of a 64-byte vector (16 float32 / 8 float64)."""

    def __init__(self, builder, bits):
        self.b = builder
        self.bits = bits
        self.fty = ir.FloatType() if bits == 32 else ir.DoubleType()
        self.V = 512 // bits
        self.vty = ir.VectorType(self.fty, self.V)
        self.ity = ir.IntType(bits)
        self.ivty = ir.VectorType(self.ity, self.V)
        self.mty = ir.VectorType(_I1, self.V)
        self.al = bits // 8
        mod = builder.module
        self._fma = _decl(mod, f"llvm.fma.v{self.V}f{bits}", self.vty, [self.vty] * 3)
        self._mload = _decl(mod, f"llvm.masked.load.v{self.V}f{bits}.p0", self.vty,
                            [self.vty.as_pointer(), _I32, self.mty, self.vty])
        self._mstore = _decl(mod, f"llvm.masked.store.v{self.V}f{bits}.p0", ir.VoidType(),
                             [self.vty, self.vty.as_pointer(), _I32, self.mty])
        self._copysign = _decl(mod, f"llvm.copysign.v{self.V}f{bits}", self.vty, [self.vty] * 2)

    def const(self, v):
        return ir.Constant(self.vty, [ir.Constant(self.fty, float(v))] * self.V)

    def iconst(self, v):
        return ir.Constant(self.ivty, [ir.Constant(self.ity, int(v))] * self.V)

    def fptr(self, addr):
        return self.b.inttoptr(addr, self.fty.as_pointer())

    def vptr(self, fptr, off):
        return self.b.bitcast(self.b.gep(fptr, [off]), self.vty.as_pointer())

    def load(self, fptr, off):
        return self.b.load(self.vptr(fptr, off), align=self.al)

    def store(self, val, fptr, off):
        self.b.store(val, self.vptr(fptr, off), align=self.al)

    def mload(self, fptr, off, mask):
        return self.b.call(self._mload, [self.vptr(fptr, off), ir.Constant(_I32, self.al), mask, self.const(0.0)])

    def mstore(self, val, fptr, off, mask):
        self.b.call(self._mstore, [val, self.vptr(fptr, off), ir.Constant(_I32, self.al), mask])

    def splat(self, scalar):
        b = self.b
        undef = ir.Constant(self.vty, ir.Undefined)
        v = b.insert_element(undef, scalar, ir.Constant(_I32, 0))
        return b.shuffle_vector(v, undef, ir.Constant(ir.VectorType(_I32, self.V), [0] * self.V))

    def fma(self, a, b_, c):
        return self.b.call(self._fma, [a, b_, c])

    def lane_mask(self, n):
        """Lanes u < n (n an i64 value)."""
        b = self.b
        lanes = ir.Constant(ir.VectorType(_I64, self.V), list(range(self.V)))
        nv = b.insert_element(ir.Constant(ir.VectorType(_I64, self.V), ir.Undefined), n, ir.Constant(_I32, 0))
        nv = b.shuffle_vector(nv, nv, ir.Constant(ir.VectorType(_I32, self.V), [0] * self.V))
        return b.icmp_signed("<", lanes, nv)

    # -- bit-level helpers (float64 math)
    def bits_of(self, x):
        return self.b.bitcast(x, self.ivty)

    def from_bits(self, i):
        return self.b.bitcast(i, self.vty)

    def copysign(self, a, s):
        return self.b.call(self._copysign, [a, s])

    def isnan(self, x):
        return self.b.fcmp_unordered("uno", x, x)  # quiet compare: no FE_INVALID


def _loop(b, start, cond, step, init, body):
    """A counted loop in IR: ``i = start; while cond(i): carried = body(i, carried); i += step``.
    Returns the final (i, carried) values, usable after the loop."""
    fn = b.function
    pre = b.block
    hdr = fn.append_basic_block("loop.h")
    bod = fn.append_basic_block("loop.b")
    done = fn.append_basic_block("loop.x")
    b.branch(hdr)
    b.position_at_end(hdr)
    i = b.phi(_I64)
    i.add_incoming(start, pre)
    phis = []
    for v in init:
        p = b.phi(v.type)
        p.add_incoming(v, pre)
        phis.append(p)
    b.cbranch(cond(i), bod, done)
    b.position_at_end(bod)
    new = body(i, phis)
    nxt = b.add(i, step)
    end = b.block
    i.add_incoming(nxt, end)
    for p, v in zip(phis, new):
        p.add_incoming(v, end)
    b.branch(hdr)
    b.position_at_end(done)
    return i, phis


def _c(v):
    return ir.Constant(_I64, v)


def _transpose(b, rows):
    """V x V in-register transpose (butterfly of two-input shuffles): ``rows[u][k]`` ->
    ``cols[k][u]``."""
    n = len(rows)
    mty = ir.VectorType(_I32, n)
    bs = 1
    while bs < n:
        lo = ir.Constant(mty, [lane if (lane & bs) == 0 else n + lane - bs for lane in range(n)])
        hi = ir.Constant(mty, [lane + bs if (lane & bs) == 0 else n + lane for lane in range(n)])
        new = list(rows)
        for i in range(n):
            if i & bs:
                continue
            new[i] = b.shuffle_vector(rows[i], rows[i + bs], lo)
            new[i + bs] = b.shuffle_vector(rows[i], rows[i + bs], hi)
        rows = new
        bs *= 2
    return rows


# ---------------------------------------------------------------------------- mk: packed micro-kernel

def _define_mk(module, bits, mr):
    """``void mk_r{mr}(a, lda, w, k, cin, ldcin, cout, ldcout)`` (i64 addresses / element strides):
    ``cout[m, 0:4V] = cin[m, 0:4V] + sum_{j<k} a[m*lda + j] * w[j*4V + 0:4V]`` for m < mr.
    One FMA chain per output element, in j order; 4*mr vector accumulators stay in registers."""
    name = f"lstmb_mk_f{bits}_r{mr}"
    b, fn = _define(module, name, 8)
    if b is None:
        return fn
    vb = _Vec(b, bits)
    V, nb = vb.V, 4 * vb.V
    a, lda, w, k, cin, ldcin, cout, ldcout = fn.args
    pa, pw, pci, pco = (vb.fptr(v) for v in (a, w, cin, cout))
    init = []
    for m in range(mr):
        row = b.gep(pci, [b.mul(ldcin, _c(m))])
        init += [vb.load(row, _c(v * V)) for v in range(4)]
    arow = [b.gep(pa, [b.mul(lda, _c(m))]) for m in range(mr)]
    pf = _decl(module, "llvm.prefetch.p0", ir.VoidType(), [_I8P, _I32, _I32, _I32]) if mr <= PF_MAXROWS else None

    def body(j, accs):
        wrow = b.gep(pw, [b.mul(j, _c(nb))])
        if pf is not None:
            for line in range(4):
                addr = b.gep(wrow, [_c(PF_BYTES * 8 // bits + line * 512 // bits)])
                b.call(pf, [b.bitcast(addr, _I8P), ir.Constant(_I32, 0), ir.Constant(_I32, 3), ir.Constant(_I32, 1)])
        wv = [vb.load(wrow, _c(v * V)) for v in range(4)]
        new = []
        for m in range(mr):
            s = vb.splat(b.load(b.gep(arow[m], [j]), align=vb.al))
            new += [vb.fma(s, wv[v], accs[m * 4 + v]) for v in range(4)]
        return new

    _, accs = _loop(b, _c(0), lambda j: b.icmp_signed("<", j, k), _c(1), init, body)
    for m in range(mr):
        row = b.gep(pco, [b.mul(ldcout, _c(m))])
        for v in range(4):
            vb.store(accs[m * 4 + v], row, _c(v * V))
    b.ret_void()
    return fn


def _define_dispatch(module, name, nargs, define_kernel, mrmax):
    """``void name(mr, *args)`` (``nargs`` i64 arguments, mr first): switch on mr (1..mrmax) to
    ``define_kernel(mr)``'s kernels (defined only with the dispatcher); another mr
    does nothing."""
    b, fn = _define(module, name, nargs, noinline=False)
    if b is None:
        return fn
    kernels = [define_kernel(mr) for mr in range(1, mrmax + 1)]
    done = fn.append_basic_block("done")
    sw = b.switch(fn.args[0], done)
    for mr, kern in enumerate(kernels, 1):
        blk = fn.append_basic_block(f"r{mr}")
        sw.add_case(_c(mr), blk)
        b.position_at_end(blk)
        b.call(kern, list(fn.args[1:]))
        b.branch(done)
    b.position_at_end(done)
    b.ret_void()
    return fn


def _define_mk_dispatch(module, bits):
    """``void mk(mr, a, lda, w, k, cin, ldcin, cout, ldcout)``: switch on mr (1..MRMAX)."""
    return _define_dispatch(module, f"lstmb_mk_f{bits}", 9, lambda mr: _define_mk(module, bits, mr), MRMAX)


# ---------------------------------------------------------------------------- row-group transposes

def _row_ptrs(b, vb, w, ldw, gstride, nval, limit):
    """Row pointers of the 4 groups of V rows (row q*gstride + u), rows that are not valid
    (u >= nval or row >= limit) redirected to row 0, and the validity masks per group."""
    pw = vb.fptr(w)
    ptrs, masks = [], []
    for q in range(4):
        group, valid = [], []
        for u in range(vb.V):
            row = b.add(b.mul(gstride, _c(q)), _c(u))
            ok = b.and_(b.icmp_signed("<", _c(u), nval), b.icmp_signed("<", row, limit))
            row = b.select(ok, row, _c(0))
            group.append(b.gep(pw, [b.mul(row, ldw)]))
            valid.append(ok)
        mask = ir.Constant(vb.mty, [ir.Constant(_I1, 0)] * vb.V)
        for u, ok in enumerate(valid):
            mask = b.insert_element(mask, ok, ir.Constant(_I32, u))
        ptrs.append(group)
        masks.append(mask)
    return ptrs, masks


def _gather_col(b, vb, group, k):
    """The vector (W[row_u, k])_u of one row group (scalar loads)."""
    v = ir.Constant(vb.vty, ir.Undefined)
    for u, rp in enumerate(group):
        v = b.insert_element(v, b.load(b.gep(rp, [k]), align=vb.al), ir.Constant(_I32, u))
    return v


def _define_mkt(module, bits, mr):
    """``void mkt_r{mr}(a, lda, w, ldw, gstride, nval, limit, k0, k1, cin, ldcin, cout, ldcout)``:
    as ``mk`` for the columns ``q*V + u`` taken from row-major weights, column = row
    ``q*gstride + u`` of ``w`` (row stride ``ldw``), k in [k0, k1) (``a`` indexed by the same
    k): the same FMA chains as ``mk`` over packed weights, so the same bits.  Invalid rows
    (u >= nval or row >= limit) give garbage lanes (they read row 0)."""
    name = f"lstmb_mkt_f{bits}_r{mr}"
    b, fn = _define(module, name, 13)
    if b is None:
        return fn
    vb = _Vec(b, bits)
    V = vb.V
    a, lda, w, ldw, gstride, nval, limit, k0, k1, cin, ldcin, cout, ldcout = fn.args
    pa, pci, pco = (vb.fptr(v) for v in (a, cin, cout))
    ptrs, _ = _row_ptrs(b, vb, w, ldw, gstride, nval, limit)
    arow = [b.gep(pa, [b.mul(lda, _c(m))]) for m in range(mr)]
    kmain = b.add(k0, b.mul(b.sdiv(b.sub(k1, k0), _c(V)), _c(V)))
    for q in range(4):
        init = [vb.load(b.gep(pci, [b.mul(ldcin, _c(m))]), _c(q * V)) for m in range(mr)]

        def block(kb, accs, q=q):
            rows = [b.load(vb.vptr(rp, kb), align=vb.al) for rp in ptrs[q]]
            cols = _transpose(b, rows)
            for kk in range(V):
                kj = b.add(kb, _c(kk))
                accs = [vb.fma(vb.splat(b.load(b.gep(arow[m], [kj]), align=vb.al)), cols[kk], accs[m])
                        for m in range(mr)]
            return accs

        _, accs = _loop(b, k0, lambda kb: b.icmp_signed("<", kb, kmain), _c(V), init, block)

        def tail(kj, accs, q=q):
            col = _gather_col(b, vb, ptrs[q], kj)
            return [vb.fma(vb.splat(b.load(b.gep(arow[m], [kj]), align=vb.al)), col, accs[m]) for m in range(mr)]

        _, accs = _loop(b, kmain, lambda kj: b.icmp_signed("<", kj, k1), _c(1), list(accs), tail)
        for m in range(mr):
            vb.store(accs[m], b.gep(pco, [b.mul(ldcout, _c(m))]), _c(q * V))
    b.ret_void()
    return fn


def _define_mkt_dispatch(module, bits):
    """``void mkt(mr, a, lda, w, ldw, gstride, nval, limit, k0, k1, cin, ldcin, cout, ldcout)``:
    switch on mr (1..MRCELL)."""
    return _define_dispatch(module, f"lstmb_mkt_f{bits}", 14, lambda mr: _define_mkt(module, bits, mr), MRCELL)


def _define_pack(module, bits):
    """``void pack(w, ldw, gstride, nval, limit, k0, k1, out)``:
    ``out[(k-k0)*4V + q*V + u] = W[q*gstride + u, k]`` (0 for invalid rows, see mkt), k in [k0, k1)."""
    b, fn = _define(module, f"lstmb_pack_f{bits}", 8)
    if b is None:
        return fn
    vb = _Vec(b, bits)
    V, nb = vb.V, 4 * vb.V
    w, ldw, gstride, nval, limit, k0, k1, out = fn.args
    po = vb.fptr(out)
    ptrs, masks = _row_ptrs(b, vb, w, ldw, gstride, nval, limit)
    zero = vb.const(0.0)
    kmain = b.add(k0, b.mul(b.sdiv(b.sub(k1, k0), _c(V)), _c(V)))
    for q in range(4):
        def block(kb, carried, q=q):
            rows = [b.load(vb.vptr(rp, kb), align=vb.al) for rp in ptrs[q]]
            cols = _transpose(b, rows)
            base = b.mul(b.sub(kb, k0), _c(nb))
            for kk in range(V):
                vb.store(b.select(masks[q], cols[kk], zero), po, b.add(base, _c(kk * nb + q * V)))
            return carried

        _loop(b, k0, lambda kb: b.icmp_signed("<", kb, kmain), _c(V), [], block)

        def tail(kj, carried, q=q):
            col = b.select(masks[q], _gather_col(b, vb, ptrs[q], kj), zero)
            vb.store(col, po, b.add(b.mul(b.sub(kj, k0), _c(nb)), _c(q * V)))
            return carried

        _loop(b, kmain, lambda kj: b.icmp_signed("<", kj, k1), _c(1), [], tail)
    b.ret_void()
    return fn


# ---------------------------------------------------------------------------- nonlinearities

# Eigen's float tanh: odd rational 13/6 on [-7.905, 7.905], clamped outside (max abs err 3.6e-7)
_A = (4.89352455891786e-03, 6.37261928875436e-04, 1.48572235717979e-05, 5.12229709037114e-08,
      -8.60467152213735e-11, 2.00018790482477e-13, -2.76076847742355e-16)       # x^1 .. x^13
_BQ = (4.89352518554385e-03, 2.26843463243900e-03, 1.18534705686654e-04, 1.19825839466702e-06)  # x^0 .. x^6
_CLAMP32 = 7.90531110763549805


def _ir_tanh32(vb, x):
    """Eigen's clamped rational tanh (FMA Horner; NaN passes the ordered-compare clamp).  On
    AVX-512 the division is rcp14 + one Newton step (vdivps is the slowest instruction here)."""
    b = vb.b
    k = vb.const
    x = b.select(b.fcmp_ordered("<", x, k(-_CLAMP32)), k(-_CLAMP32), x)
    x = b.select(b.fcmp_ordered(">", x, k(_CLAMP32)), k(_CLAMP32), x)
    x2 = b.fmul(x, x)
    p = vb.fma(x2, k(_A[6]), k(_A[5]))
    for a in (_A[4], _A[3], _A[2], _A[1], _A[0]):
        p = vb.fma(p, x2, k(a))
    p = b.fmul(p, x)
    q = vb.fma(x2, k(_BQ[3]), k(_BQ[2]))
    for c in (_BQ[1], _BQ[0]):
        q = vb.fma(q, x2, k(c))
    if _AVX512:
        rcp = _decl(b.module, "llvm.x86.avx512.rcp14.ps.512", vb.vty, [vb.vty, vb.vty, ir.IntType(16)])
        r0 = b.call(rcp, [q, k(0.0), ir.Constant(ir.IntType(16), 0xFFFF)])
        e = vb.fma(b.fsub(k(0.0), q), r0, k(1.0))   # 1 - q r0
        r1 = vb.fma(r0, e, r0)                        # r0 (1 + e)
        return b.fmul(p, r1)
    return b.fdiv(p, q)


def _ir_sigmoid32(vb, x):
    half = vb.const(0.5)
    return vb.fma(half, _ir_tanh32(vb, vb.b.fmul(half, x)), half)


# float64: branch-free exp / tanh / sigmoid (the "math64" functions), <= 4e-16 relative error.
# Reduction: k = rint(y/ln2) by the 1.5*2^52 shifter (no float->int conversion, so NaN/inf are
# harmless), r = y - k ln2 with a two-part ln2 (Cody-Waite), |r| <= ln2/2; expm1(r) ~= r + r^2 Q(r)
# with Q a near-minimax polynomial of degree 10 (relative error 9e-19 with the rounded
# coefficients); 2^k built from bits.  Clamps are integer min() on the bits of |x| and NaN is
# detected by an unordered compare, so no input raises FE_INVALID.
_INV_LN2 = 1.4426950408889634
_LN2_HI = 0.6931471803691238             # 32 trailing zero bits: k*LN2_HI is exact
_LN2_LO = 1.9082149292705877e-10
_SHIFTER = 6755399441055744.0            # 1.5 * 2^52
_SHIFTER_BITS = 0x4338000000000000
_ONE_BITS = 0x3FF0000000000000
_Q = (0.5, 0.1666666666666667, 0.04166666666666667, 0.008333333333325551, 0.0013888888888883332,
      0.00019841269876840357, 2.480158732699005e-05, 2.755725286336732e-06, 2.755727183153613e-07,
      2.5106262550879078e-08, 2.0915433598076003e-09)
_ABS_MASK = 0x7FFFFFFFFFFFFFFF
_SIGN_BIT = -0x8000000000000000
_INF_BITS = 0x7FF0000000000000
_BITS_750 = 0x4087700000000000           # exp(+-750) is inf / 0 in float64
_BITS_22 = 0x4036000000000000            # tanh(22) rounds to 1


def _ir_reduce(vb, y):
    b = vb.b
    k = vb.const
    kd = vb.fma(y, k(_INV_LN2), k(_SHIFTER))
    kf = b.fsub(kd, k(_SHIFTER))
    ki = b.sub(vb.bits_of(kd), vb.iconst(_SHIFTER_BITS))
    r = vb.fma(kf, k(-_LN2_HI), y)
    r = vb.fma(kf, k(-_LN2_LO), r)
    return ki, r


def _ir_expm1_poly(vb, r):
    k = vb.const
    q = vb.fma(r, k(_Q[10]), k(_Q[9]))
    for c in reversed(_Q[:9]):
        q = vb.fma(q, r, k(c))
    return vb.fma(vb.b.fmul(r, r), q, r)


def _ir_pow2(vb, ki):
    b = vb.b
    return vb.from_bits(b.add(b.shl(ki, vb.iconst(52)), vb.iconst(_ONE_BITS)))


def _ir_umin(vb, a, c):
    return vb.b.select(vb.b.icmp_signed(">", a, vb.iconst(c)), vb.iconst(c), a)


def _ir_exp64(vb, x):
    b = vb.b
    k = vb.const
    ab = b.and_(vb.bits_of(x), vb.iconst(_ABS_MASK))
    special = b.icmp_signed(">=", ab, vb.iconst(_INF_BITS))
    yb = b.select(special, vb.iconst(0), _ir_umin(vb, ab, _BITS_750))
    y = vb.copysign(vb.from_bits(yb), x)
    ki, r = _ir_reduce(vb, y)
    p = b.fadd(k(1.0), _ir_expm1_poly(vb, r))
    k1 = b.ashr(ki, vb.iconst(1))
    k2 = b.sub(ki, k1)
    res = b.fmul(b.fmul(p, _ir_pow2(vb, k2)), _ir_pow2(vb, k1))
    sp = b.select(b.icmp_signed("<", vb.bits_of(x), vb.iconst(0)), k(0.0), x)
    out = b.select(special, sp, res)
    return b.select(vb.isnan(x), x, out)


def _ir_tanh64(vb, x):
    b = vb.b
    k = vb.const
    ab = b.and_(vb.bits_of(x), vb.iconst(_ABS_MASK))
    a = vb.from_bits(_ir_umin(vb, ab, _BITS_22))            # min(|x|, 22); inf, NaN -> 22
    y = b.fmul(k(-2.0), a)
    ki, r = _ir_reduce(vb, y)
    s = _ir_pow2(vb, ki)
    em = vb.fma(s, _ir_expm1_poly(vb, r), b.fsub(s, k(1.0)))  # expm1(-2a), one rounding
    t = b.fdiv(b.fsub(k(0.0), em), b.fadd(em, k(2.0)))
    return b.select(vb.isnan(x), x, vb.copysign(t, x))


def _ir_sigmoid64(vb, x):
    b = vb.b
    xb = vb.bits_of(x)
    e = _ir_exp64(vb, vb.from_bits(b.or_(xb, vb.iconst(_SIGN_BIT))))   # exp(-|x|) in [0, 1]
    num = b.select(b.icmp_signed(">=", xb, vb.iconst(0)), vb.const(1.0), e)
    return b.fdiv(num, b.fadd(vb.const(1.0), e))


def _acts(vb):
    if vb.bits == 32:
        return _ir_sigmoid32, _ir_tanh32
    return _ir_sigmoid64, _ir_tanh64


# ---------------------------------------------------------------------------- gate update

PEEP, CLIP, IFORGET = 1, 2, 4   # gate feature bits (compile-time variants)


def _define_gate(module, bits):
    """``void gate(flags, tile, cin, cout, h, y, nval, peep, ldpeep, clip, tg, ldg, tc, tk)`` (clip a
    double, the rest i64): the fused update of one panel row, lanes u < nval.

    ``tile[0:4V]`` holds the pre-activations ``[i | f | g | o]``; ``cin`` the old cell state
    (V units), ``cout`` the new one (may be ``cin``); ``h`` the new hidden values; ``y`` a second
    copy of them (0: none); ``peep`` the peephole rows i, f, o (``ldpeep`` apart; a zero buffer
    when unused).  ``flags`` chooses one of 8 compile-time variants (PEEP | CLIP | IFORGET);
    the plain one (0) does nothing else.  ONNX semantics: clip bounds every pre-activation,
    bias and peephole included (NaN stays NaN); o's peephole sees the new c; IFORGET: f = 1 - i.

    The training record (``forward_train``'s tape), each 0 for none: ``tg`` the activations
    ``i, f, g, o`` (``ldg`` elements apart), ``tc`` a third copy of the new cell state, ``tk`` the
    clipped flags (bytes, ``ldg`` apart; only written with CLIP).  Storing them changes nothing
    else: ``forward_train`` computes bitwise what ``forward`` computes.
    """
    argtys = [_I64] * 9 + [ir.DoubleType()] + [_I64] * 4
    b, fn = _define(module, f"lstmb_gate_f{bits}", 14, argtys=argtys)
    if b is None:
        return fn
    vb = _Vec(b, bits)
    V = vb.V
    flags, tile, cin, cout, hp, yp, nval, peep, ldpeep, clip, tg, ldg, tc, tk = fn.args
    sigm, tanh = _acts(vb)
    mask = vb.lane_mask(nval)
    pt = vb.fptr(tile)
    z = [vb.load(pt, _c(q * V)) for q in range(4)]
    c_old = vb.mload(vb.fptr(cin), _c(0), mask)
    pp = vb.fptr(peep)
    pw = [vb.mload(pp, b.mul(ldpeep, _c(q)), mask) for q in range(3)]
    cl = clip if bits == 64 else b.fptrunc(clip, vb.fty)
    clv = vb.splat(cl)
    ncl = vb.splat(b.fsub(ir.Constant(vb.fty, 0.0), cl))
    never = ir.Constant(vb.mty, [ir.Constant(_I1, 0)] * V)
    store = fn.append_basic_block("store")
    sw = b.switch(flags, store)
    results = []
    for variant in range(8):
        blk = fn.append_basic_block(f"v{variant}")
        sw.add_case(_c(variant), blk)
        b.position_at_end(blk)
        clipped = []

        def bound(v, variant=variant, clipped=clipped):
            if not variant & CLIP:
                clipped.append(never)
                return v
            clipped.append(b.or_(b.fcmp_ordered("<", v, ncl), b.fcmp_ordered(">", v, clv)))
            v = b.select(b.fcmp_ordered("<", v, ncl), ncl, v)
            return b.select(b.fcmp_ordered(">", v, clv), clv, v)

        zi = vb.fma(pw[0], c_old, z[0]) if variant & PEEP else z[0]
        i = sigm(vb, bound(zi))
        if variant & IFORGET:
            f = b.fsub(vb.const(1.0), i)
            clipped.append(never)
        else:
            zf = vb.fma(pw[1], c_old, z[1]) if variant & PEEP else z[1]
            f = sigm(vb, bound(zf))
        g = tanh(vb, bound(z[2]))
        c_new = vb.fma(f, c_old, b.fmul(i, g))
        zo = vb.fma(pw[2], c_new, z[3]) if variant & PEEP else z[3]
        o = sigm(vb, bound(zo))
        h = b.fmul(o, tanh(vb, c_new))
        results.append((b.block, [c_new, h, i, f, g, o], clipped))
        b.branch(store)
    b.position_at_end(store)
    entry = fn.blocks[0]
    phis = [b.phi(vb.vty) for _ in range(6)]
    kphis = [b.phi(vb.mty) for _ in range(4)]
    for blk, vals, clipped in results:
        for phi, v in zip(phis + kphis, vals + clipped):
            phi.add_incoming(v, blk)
    for phi in phis:  # unknown flags: never taken
        phi.add_incoming(c_old if phi is phis[0] else vb.const(0.0), entry)
    for phi in kphis:
        phi.add_incoming(never, entry)
    cphi, hphi = phis[0], phis[1]
    vb.mstore(cphi, vb.fptr(cout), _c(0), mask)
    vb.mstore(hphi, vb.fptr(hp), _c(0), mask)
    has_y = b.icmp_signed("!=", yp, _c(0))
    with b.if_then(has_y):
        vb.mstore(hphi, vb.fptr(yp), _c(0), mask)
    with b.if_then(b.icmp_signed("!=", tg, _c(0))):
        ptg = vb.fptr(tg)
        for q in range(4):
            vb.mstore(phis[2 + q], ptg, b.mul(ldg, _c(q)), mask)
    with b.if_then(b.icmp_signed("!=", tc, _c(0))):
        vb.mstore(cphi, vb.fptr(tc), _c(0), mask)
    with b.if_then(b.icmp_signed("!=", tk, _c(0))):
        bty = ir.VectorType(ir.IntType(8), V)
        bstore = _decl(module, f"llvm.masked.store.v{V}i8.p0", ir.VoidType(),
                       [bty, bty.as_pointer(), _I32, vb.mty])
        pk = b.inttoptr(tk, ir.IntType(8).as_pointer())
        for q in range(4):
            ptr = b.bitcast(b.gep(pk, [b.mul(ldg, _c(q))]), bty.as_pointer())
            b.call(bstore, [b.zext(kphis[q], bty), ptr, ir.Constant(_I32, 1), mask])
    b.ret_void()
    return fn


def _define_gate_bwd(module, bits):
    """``void gate_bwd(flags, tg, ldg, tcell, cprev, dh, dy, dc, dz0, dz1, dz2, dz3, hout, nval, peep,
    ldpeep, dpeep, tk)`` (all i64): one step of back-propagation through the gate update for one
    row and V units (lanes u < nval), from the saved activations (``numpy_backend.lstm_step_backward``
    written out)::

        dh_t = dh + dy;  tc = tanh(c);  dz_o = dh_t tc o (1 - o)
        dc  += dh_t o (1 - tc^2)  [+ dz_o p_o]
        dz_i = dc g i (1 - i)     dz_f = dc c_prev f (1 - f)     dz_g = dc i (1 - g^2)
        (IFORGET: dz_i = (dc g - dc c_prev) i (1 - i), dz_f = 0)
        dc_prev = dc f  [+ dz_i p_i + dz_f p_f]

    and each ``dz`` 0 where its pre-activation was clipped (CLIP: the bytes ``tk``, ``ldg`` apart).
    ``tg``: the activations i, f, g, o (``ldg`` elements apart); ``tcell``: c of the step;
    ``cprev``: c before it; ``dh``: the gradient from the later steps (read); ``dy`` (read);
    ``dc``: in: the cell gradient from the later steps, out: ``dc_prev``; ``dz0..3``: the four
    gates' ``dz`` (full vectors: 0 in lanes >= nval); ``hout``: ``h = o tanh(c)`` of the step (0:
    none); ``peep``: peephole rows i, f, o and ``dpeep`` their gradient accumulators (``ldpeep``
    apart; PEEP only): ``dpeep += (dz_i c_prev, dz_f c_prev, dz_o c)`` with one FMA each.
    """
    b, fn = _define(module, f"lstmb_gate_bwd_f{bits}", 18)
    if b is None:
        return fn
    vb = _Vec(b, bits)
    flags, tg, ldg, tcell, cprev, dhp, dyp, dcp, dz0, dz1, dz2, dz3, hout, nval, peep, ldpeep, dpeep, tk = fn.args
    _, tanh = _acts(vb)
    mask = vb.lane_mask(nval)
    one = vb.const(1.0)
    zero = vb.const(0.0)
    pg = vb.fptr(tg)
    i, f, g, o = (vb.mload(pg, b.mul(ldg, _c(q)), mask) for q in range(4))
    c = vb.mload(vb.fptr(tcell), _c(0), mask)
    cp = vb.mload(vb.fptr(cprev), _c(0), mask)
    dh_t = b.fadd(vb.mload(vb.fptr(dhp), _c(0), mask), vb.mload(vb.fptr(dyp), _c(0), mask))
    dc_in = vb.mload(vb.fptr(dcp), _c(0), mask)
    tc = tanh(vb, c)
    with b.if_then(b.icmp_signed("!=", hout, _c(0))):
        vb.mstore(b.fmul(o, tc), vb.fptr(hout), _c(0), mask)
    done = fn.append_basic_block("done")
    sw = b.switch(flags, done)
    for variant in range(8):
        blk = fn.append_basic_block(f"v{variant}")
        sw.add_case(_c(variant), blk)
        b.position_at_end(blk)
        if variant & CLIP:
            bty = ir.VectorType(ir.IntType(8), vb.V)
            bload = _decl(module, f"llvm.masked.load.v{vb.V}i8.p0", bty, [bty.as_pointer(), _I32, vb.mty, bty])
            pk = b.inttoptr(tk, ir.IntType(8).as_pointer())
            kept = []
            zero8 = ir.Constant(bty, [ir.Constant(ir.IntType(8), 0)] * vb.V)
            for q in range(4):
                ptr = b.bitcast(b.gep(pk, [b.mul(ldg, _c(q))]), bty.as_pointer())
                k8 = b.call(bload, [ptr, ir.Constant(_I32, 1), mask, zero8])
                kept.append(b.icmp_signed("==", k8, zero8))

            def unclipped(v, q, kept=kept):
                return b.select(kept[q], v, zero)
        else:
            def unclipped(v, q):
                return v
        dz_o = unclipped(b.fmul(b.fmul(b.fmul(dh_t, tc), o), b.fsub(one, o)), 3)
        dc = b.fadd(dc_in, b.fmul(b.fmul(dh_t, o), b.fsub(one, b.fmul(tc, tc))))
        pp = vb.fptr(peep)
        if variant & PEEP:
            pw = [vb.mload(pp, b.mul(ldpeep, _c(q)), mask) for q in range(3)]
            dc = b.fadd(dc, b.fmul(dz_o, pw[2]))
        di = b.fmul(dc, g)
        df = b.fmul(dc, cp)
        if variant & IFORGET:
            di = b.fsub(di, df)
            dz_f = zero
        else:
            dz_f = unclipped(b.fmul(b.fmul(df, f), b.fsub(one, f)), 1)
        dz_i = unclipped(b.fmul(b.fmul(di, i), b.fsub(one, i)), 0)
        dz_g = unclipped(b.fmul(b.fmul(dc, i), b.fsub(one, b.fmul(g, g))), 2)
        dc_prev = b.fmul(dc, f)
        if variant & PEEP:
            dc_prev = b.fadd(b.fadd(dc_prev, b.fmul(dz_i, pw[0])), b.fmul(dz_f, pw[1]))
            dp = vb.fptr(dpeep)
            for q, (dzq, cq) in enumerate(((dz_i, cp), (dz_f, cp), (dz_o, c))):
                off = b.mul(ldpeep, _c(q))
                vb.mstore(vb.fma(dzq, cq, vb.mload(dp, off, mask)), dp, off, mask)
        vb.mstore(dc_prev, vb.fptr(dcp), _c(0), mask)
        for dzq, addr in zip((dz_i, dz_f, dz_g, dz_o), (dz0, dz1, dz2, dz3)):
            vb.store(dzq, vb.fptr(addr), _c(0))
        b.branch(done)
    b.position_at_end(done)
    b.ret_void()
    return fn


def _define_math64(module):
    """``void m64(which, src, dst, n)``: dst = tanh64 / sigmoid64 / exp64 (which 0 / 1 / 2) of src."""
    b, fn = _define(module, "lstmb_math64_apply", 4)
    if b is None:
        return fn
    vb = _Vec(b, 64)
    which, src, dst, n = fn.args
    ps, pd = vb.fptr(src), vb.fptr(dst)

    def body(i, carried):
        mask = vb.lane_mask(b.sub(n, i))
        x = vb.mload(ps, i, mask)
        t = _ir_tanh64(vb, x)
        s = _ir_sigmoid64(vb, x)
        e = _ir_exp64(vb, x)
        r = b.select(b.icmp_signed("==", which, _c(0)), t, b.select(b.icmp_signed("==", which, _c(1)), s, e))
        vb.mstore(r, pd, i, mask)
        return carried

    _loop(b, _c(0), lambda i: b.icmp_signed("<", i, n), _c(8), [], body)
    b.ret_void()
    return fn


# ============================================================================ numba intrinsics

def _i64_args(context, builder, signature, args, start):
    return [context.cast(builder, v, t, types.int64) for v, t in zip(args[start:], signature.args[start:])]


def _call_ir(define, bits):
    """The codegen of an intrinsic calling ``define(module, bits)``'s function with its arguments
    after the first (the dtype's proto) as int64."""
    def codegen(context, builder, signature, args):
        builder.call(define(builder.module, bits), _i64_args(context, builder, signature, args, 1))
        return context.get_dummy_value()
    return codegen


@intrinsic
def _mk(typingctx, proto, mr, a, lda, w, k, cin, ldcin, cout, ldcout):
    """Packed micro-kernel (see ``_define_mk``); ``proto`` a float of the dtype; all else int64."""
    if not isinstance(proto, types.Float):
        return None
    return types.void(proto, *([types.int64] * 9)), _call_ir(_define_mk_dispatch, proto.bitwidth)


@intrinsic
def _mkt(typingctx, proto, mr, a, lda, w, ldw, gstride, nval, limit, k0, k1, cin, ldcin, cout, ldcout):
    """Transposing micro-kernel over row-major weights (see ``_define_mkt``)."""
    if not isinstance(proto, types.Float):
        return None
    return types.void(proto, *([types.int64] * 14)), _call_ir(_define_mkt_dispatch, proto.bitwidth)


@intrinsic
def _pack(typingctx, proto, w, ldw, gstride, nval, limit, k0, k1, out):
    """Pack one panel's rows (see ``_define_pack``)."""
    if not isinstance(proto, types.Float):
        return None
    return types.void(proto, *([types.int64] * 8)), _call_ir(_define_pack, proto.bitwidth)


@intrinsic
def _gate(typingctx, proto, flags, tile, cin, cout, h, y, nval, peep, ldpeep, clip, tg, ldg, tc, tk):
    """Fused gate update of one panel row (see ``_define_gate``); clip is a float64."""
    if not isinstance(proto, types.Float):
        return None
    bits = proto.bitwidth
    sig = types.void(proto, *([types.int64] * 9), types.float64, *([types.int64] * 4))

    def codegen(context, builder, signature, args):
        vals = _i64_args(context, builder, signature, args[:10], 1)
        rec = _i64_args(context, builder, signature, args, 11)
        builder.call(_define_gate(builder.module, bits), vals + [args[10]] + rec)
        return context.get_dummy_value()
    return sig, codegen


@intrinsic
def _gate_bwd(typingctx, proto, flags, tg, ldg, tcell, cprev, dh, dy, dc, dz0, dz1, dz2, dz3, hout, nval, peep, ldpeep,
              dpeep, tk):
    """Back-propagation through the gate update of one row and V units (see ``_define_gate_bwd``)."""
    if not isinstance(proto, types.Float):
        return None
    return types.void(proto, *([types.int64] * 18)), _call_ir(_define_gate_bwd, proto.bitwidth)


@intrinsic
def _m64(typingctx, which, src, dst, n):
    sig = types.void(types.int64, types.int64, types.int64, types.int64)

    def codegen(context, builder, signature, args):
        builder.call(_define_math64(builder.module), list(args))
        return context.get_dummy_value()
    return sig, codegen


def _i64p(builder, addr):
    return builder.inttoptr(addr, _I64.as_pointer())


@intrinsic
def _ld(typingctx, addr):
    """int64 at address ``addr``."""
    def codegen(context, builder, signature, args):
        return builder.load(_i64p(builder, args[0]), align=8)
    return types.int64(types.int64), codegen


@intrinsic
def _st(typingctx, addr, val):
    def codegen(context, builder, signature, args):
        builder.store(args[1], _i64p(builder, args[0]), align=8)
        return context.get_dummy_value()
    return types.void(types.int64, types.int64), codegen


@intrinsic
def _ldf(typingctx, proto, addr):
    """A float of ``proto``'s type at address ``addr``."""
    if not isinstance(proto, types.Float):
        return None

    def codegen(context, builder, signature, args):
        lty = context.get_value_type(signature.return_type)
        return builder.load(builder.inttoptr(args[1], lty.as_pointer()))
    return proto(proto, types.int64), codegen


@intrinsic
def _stf(typingctx, proto, addr, val):
    if not isinstance(proto, types.Float):
        return None

    def codegen(context, builder, signature, args):
        lty = context.get_value_type(signature.args[0])
        builder.store(args[2], builder.inttoptr(args[1], lty.as_pointer()))
        return context.get_dummy_value()
    return types.void(proto, types.int64, proto), codegen


@intrinsic
def _memcpy(typingctx, dst, src, nbytes):
    """``memcpy(dst, src, nbytes)`` (addresses); nothing when nbytes <= 0."""
    def codegen(context, builder, signature, args):
        dst, src, n = args
        with builder.if_then(builder.icmp_signed(">", n, _c(0))):
            fn = _decl(builder.module, "llvm.memcpy.p0.p0.i64", ir.VoidType(), [_I8P, _I8P, _I64, _I1])
            builder.call(fn, [builder.inttoptr(dst, _I8P), builder.inttoptr(src, _I8P), n, ir.Constant(_I1, 0)])
        return context.get_dummy_value()
    return types.void(types.int64, types.int64, types.int64), codegen


@intrinsic
def _memzero(typingctx, dst, nbytes):
    def codegen(context, builder, signature, args):
        dst, n = args
        with builder.if_then(builder.icmp_signed(">", n, _c(0))):
            fn = _decl(builder.module, "llvm.memset.p0.i64", ir.VoidType(), [_I8P, ir.IntType(8), _I64, _I1])
            builder.call(fn, [builder.inttoptr(dst, _I8P), ir.Constant(ir.IntType(8), 0), n, ir.Constant(_I1, 0)])
        return context.get_dummy_value()
    return types.void(types.int64, types.int64), codegen


@intrinsic
def _addr(typingctx, arr):
    """Address of an array's first element as int64 (``ctypes.data`` is uintp, and
    uintp + int64 is float64 in Numba's typing)."""
    if not isinstance(arr, types.Array):
        return None

    def codegen(context, builder, signature, args):
        a = context.make_array(signature.args[0])(context, builder, args[0])
        return builder.ptrtoint(a.data, _I64)
    return types.int64(arr), codegen


@intrinsic
def _call2(typingctx, fn, a, b):
    """Call the C function at address ``fn`` as ``void f(int64, int64)`` (a worker)."""
    def codegen(context, builder, signature, args):
        fnty = ir.FunctionType(ir.VoidType(), [_I64, _I64])
        builder.call(builder.inttoptr(args[0], fnty.as_pointer()), [args[1], args[2]])
        return context.get_dummy_value()
    return types.void(types.int64, types.int64, types.int64), codegen


@intrinsic
def _atomic_add(typingctx, addr, val):
    """old = *addr; *addr += val (seq_cst)."""
    def codegen(context, builder, signature, args):
        return builder.atomic_rmw("add", _i64p(builder, args[0]), args[1], "seq_cst")
    return types.int64(types.int64, types.int64), codegen


@intrinsic
def _load_acq(typingctx, addr):
    def codegen(context, builder, signature, args):
        return builder.load_atomic(_i64p(builder, args[0]), "acquire", 8)
    return types.int64(types.int64), codegen


@intrinsic
def _store_rel(typingctx, addr, val):
    def codegen(context, builder, signature, args):
        builder.store_atomic(args[1], _i64p(builder, args[0]), "release", 8)
        return context.get_dummy_value()
    return types.void(types.int64, types.int64), codegen


@intrinsic
def _pause(typingctx):
    """x86 PAUSE (spin-wait hint); nothing elsewhere."""
    def codegen(context, builder, signature, args):
        if _X86:
            builder.call(_decl(builder.module, "llvm.x86.sse2.pause", ir.VoidType(), []), [])
        return context.get_dummy_value()
    return types.void(), codegen


@intrinsic
def _yield(typingctx):
    """sched_yield() (libc, by symbol name: no address baked into the cached code)."""
    def codegen(context, builder, signature, args):
        builder.call(_decl(builder.module, "sched_yield", _I32, []), [])
        return context.get_dummy_value()
    return types.void(), codegen


@intrinsic
def _ticks(typingctx):
    """A cycle / time-stamp counter (rdtsc on x86), for the bounded wait of the handshake."""
    def codegen(context, builder, signature, args):
        return builder.call(_decl(builder.module, "llvm.readcyclecounter", _I64, []), [])
    return types.int64(), codegen


@intrinsic
def _lanes_of(typingctx, proto):
    """Lanes of a 64-byte vector of ``proto``'s float type (16 float32 / 8 float64), a constant."""
    if not isinstance(proto, types.Float):
        return None
    lanes = 512 // proto.bitwidth

    def codegen(context, builder, signature, args):
        return _c(lanes)
    return types.int64(proto), codegen


@intrinsic
def _prefetch(typingctx, addr):
    """Prefetch the cache line at address ``addr`` for reading, into all levels."""
    def codegen(context, builder, signature, args):
        pf = _decl(builder.module, "llvm.prefetch.p0", ir.VoidType(), [_I8P, _I32, _I32, _I32])
        builder.call(pf, [builder.inttoptr(args[0], _I8P), ir.Constant(_I32, 0), ir.Constant(_I32, 3),
                          ir.Constant(_I32, 1)])
        return context.get_dummy_value()
    return types.void(types.int64), codegen


@intrinsic
def _one_of(typingctx, proto):
    """A one of ``proto``'s float type."""
    if not isinstance(proto, types.Float):
        return None

    def codegen(context, builder, signature, args):
        return context.get_constant(signature.return_type, 1.0)
    return proto(proto), codegen


@intrinsic
def _zero_of(typingctx, arr):
    """A zero of ``arr``'s float dtype (selects the dtype of the intrinsics)."""
    if not isinstance(arr, types.Array) or not isinstance(arr.dtype, types.Float):
        return None

    def codegen(context, builder, signature, args):
        return context.get_constant(signature.return_type, 0.0)
    return arr.dtype(arr), codegen


def _define_wait(module):
    """``void wait_ge(addr, target)``: spin until the int64 at addr is >= target (acquire load),
    PAUSE, and sched_yield every few thousand spins (a partner may be waiting for this core on
    an oversubscribed machine)."""
    b, fn = _define(module, "lstmb_wait_ge", 2)
    if b is None:
        return fn
    addr, target = fn.args
    p = _i64p(b, addr)
    loop = fn.append_basic_block("spin")
    body = fn.append_basic_block("body")
    done = fn.append_basic_block("done")
    entry = b.block
    b.branch(loop)
    b.position_at_end(loop)
    spins = b.phi(_I64)
    spins.add_incoming(_c(0), entry)
    v = b.load_atomic(p, "acquire", 8)
    b.cbranch(b.icmp_signed(">=", v, target), done, body)
    b.position_at_end(body)
    if _X86:
        b.call(_decl(module, "llvm.x86.sse2.pause", ir.VoidType(), []), [])
    nxt = b.add(spins, _c(1))
    many = b.icmp_signed(">=", nxt, _c(SPINS_BEFORE_YIELD))
    with b.if_then(many):
        b.call(_decl(module, "sched_yield", _I32, []), [])
    spins.add_incoming(b.select(many, _c(0), nxt), b.block)
    b.branch(loop)
    b.position_at_end(done)
    b.ret_void()
    return fn


@intrinsic
def _wait_ge(typingctx, addr, target):
    def codegen(context, builder, signature, args):
        builder.call(_define_wait(builder.module), list(args))
        return context.get_dummy_value()
    return types.void(types.int64, types.int64), codegen


@intrinsic
def _call_worker(typingctx, fn, proto, p, argp):
    """Call the worker C callback at address ``fn``: ``void f(float proto, int64 p, int64 argp)``."""
    if not isinstance(proto, types.Float):
        return None

    def codegen(context, builder, signature, args):
        fty = context.get_value_type(signature.args[1])
        fnty = ir.FunctionType(ir.VoidType(), [fty, _I64, _I64])
        builder.call(builder.inttoptr(args[0], fnty.as_pointer()), [args[1], args[2], args[3]])
        return context.get_dummy_value()
    return types.void(types.int64, proto, types.int64, types.int64), codegen


# ============================================================================ the forward worker

# Argument block (int64 words) handed from the entry to the workers.
(A_T, A_B, A_I, A_H, A_S, A_NSTEPS, A_REV, A_NP, A_NPP, A_KS, A_FLAGS, A_CLIP, A_BULK, A_NLAUNCH, A_WAIT,
 A_DIRECT, A_SYNC, A_X, A_WIH, A_WHH, A_BIH, A_BHH, A_WHR, A_PEEP, A_PSTEP, A_LDPEEP, A_ORDER, A_LENS, A_Y,
 A_YS0, A_YS1, A_HN, A_CN, A_WIP, A_WHP, A_WHRP, A_BP, A_XP, A_LD, A_ACC, A_HB, A_LDH, A_C, A_LDC, A_R, A_XA,
 A_XAROWS, A_TOF, A_ZERO, A_RC, A_LAYOUT, A_TG, A_TC, A_TK) = range(54)
NARGS = 64
# Sync words (int64, 8 apart = one cache line each): arrivals, the decided team size, then per
# worker v the steps it finished (DONE) and, with a projection, the steps whose gate update it
# finished (RDONE, one line further).
W_ARRIVED, W_TEAM, W_DONE0 = 0, 8, 16
MAXTEAM = 64
SYNC_LEN = W_DONE0 + 16 * MAXTEAM
WAIT_TICKS = 200_000          # the first worker waits at most this long (~50-80 us) for the team
SPINS_BEFORE_YIELD = 2000


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
def _record(tape_g, tape_c, tape_k, row, H, u, isz):
    """The tape addresses of ``row = t B + b``, units from ``u`` (0s without a tape)."""
    if tape_g == 0:
        return 0, 0, 0
    tk = 0
    if tape_k != 0:
        tk = tape_k + row * 4 * H + u
    return tape_g + (row * 4 * H + u) * isz, tape_c + (row * H + u) * isz, tk


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
    hn = _ld(argp + 8 * A_HN)
    cn = _ld(argp + 8 * A_CN)
    for rr in range(B):
        b = _ld(order + 8 * rr)
        _memcpy(hn + (b * S + hc0) * isz, fin + (rr * LDH + hc0) * isz, (hc1 - hc0) * isz)
        _memcpy(cn + (b * H + u0) * isz, c + (rr * LDC + u0) * isz, (u1 - u0) * isz)


def _worker(proto, p, argp):
    """Worker ``p`` of a forward call (the only one when serial); ``proto`` is a zero of the dtype.

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
    T = _ld(argp + 8 * A_T)
    B = _ld(argp + 8 * A_B)
    I = _ld(argp + 8 * A_I)  # noqa: E741
    H = _ld(argp + 8 * A_H)
    S = _ld(argp + 8 * A_S)
    nsteps = _ld(argp + 8 * A_NSTEPS)
    rev = _ld(argp + 8 * A_REV) != 0
    NP = _ld(argp + 8 * A_NP)
    NPP = _ld(argp + 8 * A_NPP)
    ks = _ld(argp + 8 * A_KS)
    flags = _ld(argp + 8 * A_FLAGS)
    clip = _ldf(np.float64(0.0), argp + 8 * A_CLIP)
    bulk = _ld(argp + 8 * A_BULK) != 0
    direct = _ld(argp + 8 * A_DIRECT) != 0
    sync = _ld(argp + 8 * A_SYNC)
    index, n = _handshake(sync, _ld(argp + 8 * A_NLAUNCH), _ld(argp + 8 * A_WAIT))
    if index >= n:
        return
    w = index
    x = _ld(argp + 8 * A_X)
    w_ih = _ld(argp + 8 * A_WIH)
    w_hh = _ld(argp + 8 * A_WHH)
    b_ih = _ld(argp + 8 * A_BIH)
    b_hh = _ld(argp + 8 * A_BHH)
    w_hr = _ld(argp + 8 * A_WHR)
    peep = _ld(argp + 8 * A_PEEP)
    pstep = _ld(argp + 8 * A_PSTEP)
    ldpeep = _ld(argp + 8 * A_LDPEEP)
    order = _ld(argp + 8 * A_ORDER)
    lens = _ld(argp + 8 * A_LENS)
    y = _ld(argp + 8 * A_Y)
    ys0 = _ld(argp + 8 * A_YS0)
    ys1 = _ld(argp + 8 * A_YS1)
    wip = _ld(argp + 8 * A_WIP)
    whp = _ld(argp + 8 * A_WHP)
    whrp = _ld(argp + 8 * A_WHRP)
    bp = _ld(argp + 8 * A_BP)
    xp = _ld(argp + 8 * A_XP)
    LD = _ld(argp + 8 * A_LD)
    acc = _ld(argp + 8 * A_ACC)
    hb = _ld(argp + 8 * A_HB)
    LDH = _ld(argp + 8 * A_LDH)
    c = _ld(argp + 8 * A_C)
    LDC = _ld(argp + 8 * A_LDC)
    rbuf = _ld(argp + 8 * A_R)
    xarows = _ld(argp + 8 * A_XAROWS)
    xa = _ld(argp + 8 * A_XA) + w * xarows * I * isz
    tof = _ld(argp + 8 * A_TOF) + w * B * 8
    zero = _ld(argp + 8 * A_ZERO)
    RC = _ld(argp + 8 * A_RC)
    tape_g = _ld(argp + 8 * A_TG)
    tape_c = _ld(argp + 8 * A_TC)
    tape_k = _ld(argp + 8 * A_TK)
    lay = _ld(argp + 8 * A_LAYOUT)   # per panel: offset A, ka0, ka1, offset B, kb0, kb1
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

    # ---- pack this worker's panels (on every call: the weights may have changed in place)
    for pp in range(g0, g1):
        nval = min(V, H - pp * V)
        _pack(proto, w_ih + pp * V * I * isz, I, H, nval, 4 * H, 0, I, wip + pp * I * NB * isz)
        t6 = lay + pp * 48
        base = w_hh + pp * V * S * isz
        _pack(proto, base, S, H, nval, 4 * H, _ld(t6 + 8), _ld(t6 + 16), whp + _ld(t6) * isz)
        _pack(proto, base, S, H, nval, 4 * H, _ld(t6 + 32), _ld(t6 + 40), whp + _ld(t6 + 24) * isz)
        _bias_panel(proto, b_ih, b_hh, bp + pp * NB * isz, H, pp, V)
    for jp in range(j0, j1):
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
            nblk = (cnt + MRMAX - 1) // MRMAX
            for pp in range(g0, g1):
                r0 = 0
                for blk in range(nblk):
                    mr = _block_rows(cnt, nblk, blk)
                    _mk(proto, mr, src + r0 * I * isz, I, wip + pp * I * NB * isz, I, bp + pp * NB * isz, 0,
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
        nblk = (m + MRMAX - 1) // MRMAX
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
                    _mk(proto, mr, xsrc + r0 * I * isz, I, wip + pp * I * NB * isz, I, bp + pp * NB * isz, 0, dst,
                        LD)
                _mk(proto, mr, hcur + (r0 * LDH + ka0) * isz, LDH, whA, kn, cin, LD, dst, LD)
                r0 += mr
        # phase B: the rest of h (written by the team in step s-1), then the gate update
        if s > 0:
            _wait_others(sync + 8 * W_DONE0, w, 0, wb_all, s)
        if not proj:  # rows that just finished keep their state in both h buffers
            _carry_rows(hnxt, hcur, m, prev, LDH, u0, u1, isz)
        for pp in range(g0, g1):
            t6 = lay + pp * 48
            kb0 = _ld(t6 + 32)
            whB = whp + _ld(t6 + 24) * isz
            kn = _ld(t6 + 40) - kb0
            r0 = 0
            for blk in range(nblk):
                mr = _block_rows(m, nblk, blk)
                dst = acc + (r0 * LD + pp * NB) * isz
                _mk(proto, mr, hcur + (r0 * LDH + kb0) * isz, LDH, whB, kn, dst, LD, dst, LD)
                r0 += mr
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
            # h = r W_hr^T needs all of r: a second barrier, then this worker's columns of h
            _store_rel(me_done + 64, s + 1)
            _wait_others(sync + 8 * W_DONE0 + 64, w, 0, n, s + 1)
            _carry_rows(hnxt, hcur, m, prev, LDH, hc0, hc1, isz)
            _project_rows(proto, m, nblk, j0, j1, H, S, rbuf, LDC, whrp, zero, hnxt, LDH, y, ys0, ys1, tof, order, isz)
        _store_rel(me_done, s + 1)
        prev = m
    # ---- final state of this worker's units / columns
    _final_state(argp, hb + (nsteps & 1) * B * LDH * isz, c, order, B, S, H, LDH, LDC, hc0, hc1, u0, u1, isz)


@njit(parallel=True, cache=True, nogil=True)
def run_team(fn, proto, argp, n):
    """The parallel region of every kind: ``n`` iterations, each calls the worker C callback at
    address ``fn`` with ``proto`` (a zero of the dtype), its iteration index and the argument
    block ``argp``.  Nothing else runs in it (Numba's parfor passes analyse the whole function)."""
    for p in prange(n):
        _call_worker(fn, proto, np.int64(p), argp)


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


@njit(**_JIT)
def forward_entry(x, w_ih, w_hh, b_ih, b_hh, w_hr, w_peep, h0, c0, lengths, h_n, c_n, y, ys0, ys1, reverse, flags,
                  clip, bulk, nlaunch, wait_ticks, wsf, wsi, fn, serial, tape_g, tape_c, tape_k):
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
    flags : gate feature bits (PEEP | CLIP | IFORGET); clip : float, the bound when CLIP
    bulk : bool, the input product of every step first; nlaunch : workers launched (1: serial)
    wait_ticks : how long the first worker waits for the team
    wsf : float scratch (64-byte aligned), wsi : int64 scratch -- reused across calls, holding
        nothing between calls (weights are packed on every call)
    fn : address of the worker C callback; serial : run it here, else the caller launches
        ``run_team(fn, zero, address of wsi, nlaunch)``
    tape_g, tape_c, tape_k : addresses of forward_train's tape (0: a plain forward): gates
        (T, B, 4H), cells (T, B, H) of the dtype, clipped (T, B, 4H) bytes (0 without clip);
        written at valid steps by the gate update (see ``_define_gate``)

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
    o_wip = 0
    o_whp = o_wip + (NP * I * NB + 15) // 16 * 16
    o_whrp = o_whp + (NP * S * NB + 15) // 16 * 16
    o_bp = o_whrp + (NPP * H * NB + 15) // 16 * 16
    o_acc = o_bp + NP * NB
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
        if p < split:
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
    _memzero(ib + 8 * i_sync, 8 * SYNC_LEN)
    a = ib
    _st(a + 8 * A_T, T)
    _st(a + 8 * A_B, B)
    _st(a + 8 * A_I, I)
    _st(a + 8 * A_H, H)
    _st(a + 8 * A_S, S)
    _st(a + 8 * A_NSTEPS, nsteps)
    _st(a + 8 * A_REV, 1 if reverse else 0)
    _st(a + 8 * A_NP, NP)
    _st(a + 8 * A_NPP, NPP)
    _st(a + 8 * A_KS, ks)
    _st(a + 8 * A_FLAGS, flags)
    _stf(np.float64(0.0), a + 8 * A_CLIP, np.float64(clip))
    _st(a + 8 * A_BULK, 1 if bulk else 0)
    _st(a + 8 * A_NLAUNCH, nlaunch)
    _st(a + 8 * A_WAIT, wait_ticks)
    _st(a + 8 * A_DIRECT, 1 if direct else 0)
    _st(a + 8 * A_SYNC, ib + 8 * i_sync)
    _st(a + 8 * A_X, _addr(x))
    _st(a + 8 * A_WIH, _addr(w_ih))
    _st(a + 8 * A_WHH, _addr(w_hh))
    _st(a + 8 * A_BIH, _addr(b_ih))
    _st(a + 8 * A_BHH, _addr(b_hh))
    _st(a + 8 * A_WHR, _addr(w_hr))
    if w_peep.shape[0] > 0:
        _st(a + 8 * A_PEEP, _addr(w_peep))
        _st(a + 8 * A_PSTEP, V)
        _st(a + 8 * A_LDPEEP, H)
    else:  # the gate reads zeros (and never uses them: flags has no PEEP)
        _st(a + 8 * A_PEEP, zero)
        _st(a + 8 * A_PSTEP, 0)
        _st(a + 8 * A_LDPEEP, 0)
    _st(a + 8 * A_ORDER, order)
    _st(a + 8 * A_LENS, lens)
    _st(a + 8 * A_Y, y)
    _st(a + 8 * A_YS0, ys0)
    _st(a + 8 * A_YS1, ys1)
    _st(a + 8 * A_HN, _addr(h_n))
    _st(a + 8 * A_CN, _addr(c_n))
    _st(a + 8 * A_WIP, fb + o_wip * isz)
    _st(a + 8 * A_WHP, fb + o_whp * isz)
    _st(a + 8 * A_WHRP, fb + o_whrp * isz)
    _st(a + 8 * A_BP, fb + o_bp * isz)
    _st(a + 8 * A_XP, fb + o_xp * isz)
    _st(a + 8 * A_LD, LD)
    _st(a + 8 * A_ACC, fb + o_acc * isz)
    _st(a + 8 * A_HB, hb)
    _st(a + 8 * A_LDH, LDH)
    _st(a + 8 * A_C, cb)
    _st(a + 8 * A_LDC, LDC)
    _st(a + 8 * A_R, fb + o_r * isz)
    _st(a + 8 * A_XA, fb + o_xa * isz)
    _st(a + 8 * A_XAROWS, xarows)
    _st(a + 8 * A_TOF, ib + 8 * i_tof)
    _st(a + 8 * A_ZERO, zero)
    _st(a + 8 * A_RC, RC)
    _st(a + 8 * A_LAYOUT, ib + 8 * i_lay)
    _st(a + 8 * A_TG, tape_g)
    _st(a + 8 * A_TC, tape_c)
    _st(a + 8 * A_TK, tape_k)
    if serial:
        _call_worker(fn, proto, 0, ib)
    return 0, 0


# ============================================================================ the backward worker

# Argument block of a backward call (int64 words), from ``backward_entry`` to the workers.
(G_T, G_B, G_I, G_H, G_HP, G_NSTEPS, G_REV, G_FLAGS, G_NLAUNCH, G_WAIT, G_SYNC, G_X, G_GATES, G_CELLS, G_CLIPPED,
 G_H0, G_C0, G_DY, G_YS0, G_YS1, G_DHN, G_DCN, G_ORDER, G_LENS, G_WIH, G_WHH, G_PEEP, G_DX, G_DH0, G_DC0, G_DWIH,
 G_DWHH, G_DB, G_DPEEP, G_DZ, G_TB, G_XH, G_LDK, G_CT, G_LDCT, G_DXS, G_LDX, G_WIP, G_WHP, G_DH, G_LDH, G_DC,
 G_HROW, G_DPACC, G_ZERO, G_P, G_WHR, G_DWHR, G_MP, G_DHT, G_CR, G_LDM, G_WHRC, G_WHRP, G_DM) = range(60)
GARGS = NARGS
KC = 128   # k block (rows of all steps) of the weight-gradient GEMMs: a dz panel slice (32 KiB float32) stays in L1


@njit(inline="always", **_JIT)
def _barrier(sync, w, n, k):
    """Barrier number ``k`` (1, 2, ... in order) of a team of ``n``: publish, wait for the others."""
    _store_rel(sync + 8 * (W_DONE0 + 16 * w), k)
    _wait_others(sync + 8 * W_DONE0, w, 0, n, k)


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
    sync = _ld(argp + 8 * G_SYNC)
    index, n = _handshake(sync, _ld(argp + 8 * G_NLAUNCH), _ld(argp + 8 * G_WAIT))
    if index >= n:
        return
    w = index
    B = _ld(argp + 8 * G_B)
    I = _ld(argp + 8 * G_I)  # noqa: E741
    H = _ld(argp + 8 * G_H)
    Hp = _ld(argp + 8 * G_HP)
    P = _ld(argp + 8 * G_P)
    nsteps = _ld(argp + 8 * G_NSTEPS)
    rev = _ld(argp + 8 * G_REV) != 0
    flags = _ld(argp + 8 * G_FLAGS)
    x = _ld(argp + 8 * G_X)
    gates = _ld(argp + 8 * G_GATES)
    cells = _ld(argp + 8 * G_CELLS)
    clipped = _ld(argp + 8 * G_CLIPPED)
    h0 = _ld(argp + 8 * G_H0)
    c0 = _ld(argp + 8 * G_C0)
    dy = _ld(argp + 8 * G_DY)
    ys0 = _ld(argp + 8 * G_YS0)
    ys1 = _ld(argp + 8 * G_YS1)
    order = _ld(argp + 8 * G_ORDER)
    lens = _ld(argp + 8 * G_LENS)
    peep = _ld(argp + 8 * G_PEEP)
    dzp = _ld(argp + 8 * G_DZ)
    TB = _ld(argp + 8 * G_TB)
    xh = _ld(argp + 8 * G_XH)
    LDK = _ld(argp + 8 * G_LDK)
    ct = _ld(argp + 8 * G_CT)
    LDCT = _ld(argp + 8 * G_LDCT)
    dxs = _ld(argp + 8 * G_DXS)
    LDX = _ld(argp + 8 * G_LDX)
    wip = _ld(argp + 8 * G_WIP)
    whp = _ld(argp + 8 * G_WHP)
    dh = _ld(argp + 8 * G_DH)
    LDH = _ld(argp + 8 * G_LDH)
    dc = _ld(argp + 8 * G_DC)
    hrow = _ld(argp + 8 * G_HROW)
    dpacc = _ld(argp + 8 * G_DPACC)
    zero = _ld(argp + 8 * G_ZERO)
    mp = _ld(argp + 8 * G_MP)
    dht = _ld(argp + 8 * G_DHT)
    LDM = _ld(argp + 8 * G_LDM)
    whrc = _ld(argp + 8 * G_WHRC)
    whrp = _ld(argp + 8 * G_WHRP)
    dm = _ld(argp + 8 * G_DM)
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
        _pack_cols(proto, _ld(argp + 8 * G_WHH), 4, S, H, Hp, jc * NB, S, whp + jc * G4 * NB * isz)
    ji0, ji1 = _share(w, n, NPI)
    for ji in range(ji0, ji1):
        _pack_cols(proto, _ld(argp + 8 * G_WIH), 4, I, H, Hp, ji * NB, I, wip + ji * G4 * NB * isz)
    if proj:
        w_hr = _ld(argp + 8 * G_WHR)
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
        _memcpy(dh + (r * LDH + pc0) * isz, _ld(argp + 8 * G_DHN) + (b * S + pc0) * isz, (pc1 - pc0) * isz)
        _memcpy(dc + (r * Hp + u0) * isz, _ld(argp + 8 * G_DCN) + (b * H + u0) * isz, (u1 - u0) * isz)
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
        _memcpy(_ld(argp + 8 * G_DH0) + (b * S + pc0) * isz, dh + (r * LDH + pc0) * isz, (pc1 - pc0) * isz)
        _memcpy(_ld(argp + 8 * G_DC0) + (b * H + u0) * isz, dc + (r * Hp + u0) * isz, (u1 - u0) * isz)
    dpeep = _ld(argp + 8 * G_DPEEP)
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
    dx = _ld(argp + 8 * G_DX)
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
    dw_ih = _ld(argp + 8 * G_DWIH)
    dw_hh = _ld(argp + 8 * G_DWHH)
    db = _ld(argp + 8 * G_DB)
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
        dw_hr = _ld(argp + 8 * G_DWHR)
        cr = _ld(argp + 8 * G_CR)
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
    _st(a + 8 * G_T, T)
    _st(a + 8 * G_B, B)
    _st(a + 8 * G_I, I)
    _st(a + 8 * G_H, H)
    _st(a + 8 * G_HP, Hp)
    _st(a + 8 * G_P, P)
    _st(a + 8 * G_NSTEPS, nsteps)
    _st(a + 8 * G_REV, 1 if reverse else 0)
    _st(a + 8 * G_FLAGS, flags)
    _st(a + 8 * G_NLAUNCH, nlaunch)
    _st(a + 8 * G_WAIT, wait_ticks)
    _st(a + 8 * G_SYNC, ib + 8 * i_sync)
    _st(a + 8 * G_X, _addr(x))
    _st(a + 8 * G_GATES, _addr(gates))
    _st(a + 8 * G_CELLS, _addr(cells))
    _st(a + 8 * G_CLIPPED, _addr(clipped) if clipped.shape[0] > 0 else 0)
    _st(a + 8 * G_H0, _addr(h0))
    _st(a + 8 * G_C0, _addr(c0))
    _st(a + 8 * G_DY, dy)
    _st(a + 8 * G_YS0, ys0)
    _st(a + 8 * G_YS1, ys1)
    _st(a + 8 * G_DHN, _addr(dh_n))
    _st(a + 8 * G_DCN, _addr(dc_n))
    _st(a + 8 * G_ORDER, order)
    _st(a + 8 * G_LENS, lens)
    _st(a + 8 * G_WIH, _addr(w_ih))
    _st(a + 8 * G_WHH, _addr(w_hh))
    _st(a + 8 * G_WHR, _addr(w_hr))
    _st(a + 8 * G_PEEP, _addr(w_peep) if w_peep.shape[0] > 0 else 0)
    _st(a + 8 * G_DX, _addr(dx))
    _st(a + 8 * G_DH0, _addr(dh0))
    _st(a + 8 * G_DC0, _addr(dc0))
    _st(a + 8 * G_DWIH, _addr(dw_ih))
    _st(a + 8 * G_DWHH, _addr(dw_hh))
    _st(a + 8 * G_DB, _addr(db))
    _st(a + 8 * G_DWHR, _addr(dw_hr))
    _st(a + 8 * G_DPEEP, _addr(dw_peep) if dw_peep.shape[0] > 0 else 0)
    _st(a + 8 * G_DZ, fb + o_dz * isz)
    _st(a + 8 * G_TB, TB)
    _st(a + 8 * G_XH, fb + o_xh * isz)
    _st(a + 8 * G_LDK, LDK)
    _st(a + 8 * G_CT, fb + o_ct * isz)
    _st(a + 8 * G_LDCT, LDCT)
    _st(a + 8 * G_DXS, fb + o_dxs * isz)
    _st(a + 8 * G_LDX, LDX)
    _st(a + 8 * G_WIP, fb + o_wip * isz)
    _st(a + 8 * G_WHP, fb + o_whp * isz)
    _st(a + 8 * G_DH, fb + o_dh * isz)
    _st(a + 8 * G_LDH, LDH)
    _st(a + 8 * G_DC, fb + o_dc * isz)
    _st(a + 8 * G_HROW, fb + o_hrow * isz)
    _st(a + 8 * G_DPACC, fb + o_dp * isz)
    _st(a + 8 * G_ZERO, zero)
    _st(a + 8 * G_MP, fb + o_mp * isz)
    _st(a + 8 * G_DHT, fb + o_dht * isz)
    _st(a + 8 * G_CR, fb + o_cr * isz)
    _st(a + 8 * G_LDM, LDM)
    _st(a + 8 * G_WHRC, fb + o_whrc * isz)
    _st(a + 8 * G_WHRP, fb + o_whrp * isz)
    _st(a + 8 * G_DM, fb + o_dm * isz)
    if serial:
        _call_worker(fn, proto, 0, ib)
    return 0, 0


# ============================================================================ the cell

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


@njit(parallel=True, cache=True, nogil=True, error_model="numpy")
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


# ============================================================================ math64 (tests)

@njit(**_JIT)
def math64_apply(which, x, out):
    """out = tanh64(x) (which 0), sigmoid64(x) (1) or exp64(x) (2): the float64 functions of the
    gate update, over contiguous float64 arrays (for accuracy tests)."""
    _m64(which, _addr(x), _addr(out), x.size)


# ============================================================================ the MKL path (opt-in)
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
    T = _ld(argp + 8 * A_T)
    B = _ld(argp + 8 * A_B)
    I = _ld(argp + 8 * A_I)  # noqa: E741
    H = _ld(argp + 8 * A_H)
    S = _ld(argp + 8 * A_S)
    nsteps = _ld(argp + 8 * A_NSTEPS)
    rev = _ld(argp + 8 * A_REV) != 0
    NP = _ld(argp + 8 * A_NP)
    NPP = _ld(argp + 8 * A_NPP)
    flags = _ld(argp + 8 * A_FLAGS)
    clip = _ldf(np.float64(0.0), argp + 8 * A_CLIP)
    direct = _ld(argp + 8 * A_DIRECT) != 0
    sync = _ld(argp + 8 * A_SYNC)
    index, n = _handshake(sync, _ld(argp + 8 * A_NLAUNCH), _ld(argp + 8 * A_WAIT))
    if index >= n:
        return
    w = index
    x = _ld(argp + 8 * A_X)
    w_ih = _ld(argp + 8 * A_WIH)
    w_hh = _ld(argp + 8 * A_WHH)
    b_ih = _ld(argp + 8 * A_BIH)
    b_hh = _ld(argp + 8 * A_BHH)
    w_hr = _ld(argp + 8 * A_WHR)
    peep = _ld(argp + 8 * A_PEEP)
    pstep = _ld(argp + 8 * A_PSTEP)
    ldpeep = _ld(argp + 8 * A_LDPEEP)
    order = _ld(argp + 8 * A_ORDER)
    lens = _ld(argp + 8 * A_LENS)
    y = _ld(argp + 8 * A_Y)
    ys0 = _ld(argp + 8 * A_YS0)
    ys1 = _ld(argp + 8 * A_YS1)
    whrp = _ld(argp + 8 * A_WHRP)
    bp = _ld(argp + 8 * A_BP)
    LD = _ld(argp + 8 * A_LD)
    acc = _ld(argp + 8 * A_ACC)
    hb = _ld(argp + 8 * A_HB)
    LDH = _ld(argp + 8 * A_LDH)
    c = _ld(argp + 8 * A_C)
    LDC = _ld(argp + 8 * A_LDC)
    rbuf = _ld(argp + 8 * A_R)
    xarows = _ld(argp + 8 * A_XAROWS)
    xa = _ld(argp + 8 * A_XA) + w * xarows * I * isz
    tof = _ld(argp + 8 * A_TOF) + w * B * 8
    zero = _ld(argp + 8 * A_ZERO)
    tape_g = _ld(argp + 8 * A_TG)
    tape_c = _ld(argp + 8 * A_TC)
    tape_k = _ld(argp + 8 * A_TK)
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


# ============================================================================ loading

_WORKERS: dict = {}


def _callback(key, fn):
    """``fn`` as a C callback ``void(dtype zero, int64 p, int64 argp)`` of ``key[0]``'s dtype, compiled
    or loaded from Numba's cache on first use, kept under ``key``."""
    cf = _WORKERS.get(key)
    if cf is None:
        ft = types.float32 if key[0] == "float32" else types.float64
        cf = cfunc(types.void(ft, types.int64, types.int64), cache=True, error_model="numpy")(fn)
        _WORKERS[key] = cf
    return cf


def bwd_worker(dtype):
    """The backward worker C callback of ``dtype`` (``void(dtype zero, int64 p, int64 argp)``),
    compiled or loaded from Numba's cache on first use."""
    return _callback((np.dtype(dtype).name, "backward"), _bwd_worker)


def worker(dtype, gemm="own"):
    """The forward worker C callback of ``dtype`` (``gemm="mkl"``: on MKL's packed GEMM; MKL must
    be registered first), compiled or loaded from Numba's cache on first use.  Its signature is
    ``void(dtype zero, int64 p, int64 argp)``."""
    return _callback((np.dtype(dtype).name, gemm), _mkl_worker if gemm == "mkl" else _worker)
