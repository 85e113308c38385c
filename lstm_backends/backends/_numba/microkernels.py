"""The micro-kernels (LLVM IR): ``mk`` (1..MRMAX rows x 4 vectors over packed weights,
accumulators in registers over k), ``mkt`` (the same FMA chains from row-major weights through
in-register transposes: the cell), ``pack`` (the transposes, storing the packed panels).

Layout: a panel is ``U`` hidden units (one 64-byte vector: 16 float32, 8 float64) of the four
gates side by side, ``Wp[p, k, q*U + u] = W[q*H + p*U + u, k]`` (zero past H).  Each output
element is one FMA chain in k order (see the package docstring: the summation order).
"""

from __future__ import annotations

from llvmlite import ir

from .ir import _AVX512, _I1, _I8P, _I32, _c, _decl, _define, _loop, _transpose, _Vec

MRMAX = 6          # rows per micro-kernel call (6 x 4 zmm accumulators)
#: whether ``mk`` is the narrow kernel (hosts without AVX-512: 16 ymm registers on AVX2, see
#: ``_define_mk_narrow``)
NARROW = not _AVX512
KC = 64            # k rows per chunk of the narrow kernel (64 x 256 B of panel: 16 KiB, in L1)
MRCELL = 4         # rows per transposing (cell) call
PF_BYTES = 1024    # software prefetch distance of the weight stream in the 1-4 row kernels
PF_MAXROWS = 4


# ---------------------------------------------------------------------------- mk: packed micro-kernel

def _define_mk(module, bits, mr):
    """``void mk_r{mr}(a, lda, w, k, cin, ldcin, cout, ldcout)`` (i64 addresses / element strides):
    ``cout[m, 0:4V] = cin[m, 0:4V] + sum_{j<k} a[m*lda + j] * w[j*4V + 0:4V]`` for m < mr.
    One FMA chain per output element, in j order; 4*mr vector accumulators stay in registers
    (AVX-512, and one row elsewhere: 8 ``ymm``; more rows: the narrow kernel, the same chains)."""
    b, fn = _define(module, f"lstmb_mk_f{bits}_r{mr}", 8)
    if b is None:
        return fn
    vb = _Vec(b, bits)
    a, lda, w, k, cin, ldcin, cout, ldcout = fn.args
    pa, pw, pci, pco = (vb.fptr(v) for v in (a, w, cin, cout))
    (_mk_narrow if NARROW and mr > 1 else _mk_wide)(b, vb, mr, pa, lda, pw, k, pci, ldcin, pco, ldcout)
    b.ret_void()
    return fn


def _mk_wide(b, vb, mr, pa, lda, pw, k, pci, ldcin, pco, ldcout):
    """The body of ``mk_r{mr}``: ``4 mr`` vector accumulators over the whole k loop."""
    V, nb = vb.V, 4 * vb.V
    module = b.module
    init = load_rows(b, vb, mr, pci, ldcin)
    arow = [b.gep(pa, [b.mul(lda, _c(m))]) for m in range(mr)]
    pf = _decl(module, "llvm.prefetch.p0", ir.VoidType(), [_I8P, _I32, _I32, _I32]) if mr <= PF_MAXROWS else None

    def body(j, accs):
        wrow = b.gep(pw, [b.mul(j, _c(nb))])
        if pf is not None:
            for line in range(4):
                addr = b.gep(wrow, [_c(PF_BYTES * 8 // vb.bits + line * 512 // vb.bits)])
                b.call(pf, [b.bitcast(addr, _I8P), ir.Constant(_I32, 0), ir.Constant(_I32, 3), ir.Constant(_I32, 1)])
        wv = [vb.load(wrow, _c(v * V)) for v in range(4)]
        new = []
        for m in range(mr):
            s = vb.splat(b.load(b.gep(arow[m], [j]), align=vb.al))
            new += [vb.fma(s, wv[v], accs[m * 4 + v]) for v in range(4)]
        return new

    _, accs = _loop(b, _c(0), lambda j: b.icmp_signed("<", j, k), _c(1), init, body)
    store_rows(b, vb, mr, pco, ldcout, accs)


def load_rows(b, vb, mr, p, ld):
    """The ``4 mr`` vectors of ``mr`` rows of 4 vectors at ``p`` (``ld`` elements apart), row by row."""
    return [vb.load(b.gep(p, [b.mul(ld, _c(m))]), _c(v * vb.V)) for m in range(mr) for v in range(4)]


def store_rows(b, vb, mr, p, ld, vals):
    """``load_rows``' inverse: ``vals`` (``4 mr`` vectors) to ``mr`` rows at ``p``."""
    for m in range(mr):
        row = b.gep(p, [b.mul(ld, _c(m))])
        for v in range(4):
            vb.store(vals[m * 4 + v], row, _c(v * vb.V))


def _mk_narrow(b, vb, mr, pa, lda, pw, k, pci, ldcin, pco, ldcout):
    """The body of ``mk_r{mr}`` for hosts with 16 vector registers (AVX2: a 64-byte vector is two ``ymm``):
    the wide kernel's ``4 mr`` vectors of accumulators would be ``8 mr`` registers and spill.

    k runs in chunks of ``KC`` rows (their ``KC x 4V`` panel block stays in L1); within a chunk
    the four vectors of columns are done in passes of ``pv`` vectors (2 for two rows, 1 from
    three on: at most 12 ``ymm`` accumulators), the accumulators going through ``cout``
    between passes and chunks (the first chunk starts from ``cin``).  Every output element is
    still one FMA chain in j order: the same bits as the wide kernel."""
    V, nb = vb.V, 4 * vb.V
    pv = 2 if mr == 2 else 1
    arow = [b.gep(pa, [b.mul(lda, _c(m))]) for m in range(mr)]
    inrow = [b.gep(pci, [b.mul(ldcin, _c(m))]) for m in range(mr)]
    outrow = [b.gep(pco, [b.mul(ldcout, _c(m))]) for m in range(mr)]
    nck = b.sdiv(b.add(k, _c(KC - 1)), _c(KC))
    nck = b.select(b.icmp_signed("<", nck, _c(1)), _c(1), nck)   # k = 0: cout = cin still

    def chunk(ci, carried):
        first = b.icmp_signed("==", ci, _c(0))
        src = [b.select(first, inrow[m], outrow[m]) for m in range(mr)]
        k0 = b.mul(ci, _c(KC))
        k1 = b.add(k0, _c(KC))
        k1 = b.select(b.icmp_signed("<", k, k1), k, k1)
        for v0 in range(0, 4, pv):
            vs = range(v0, v0 + pv)
            init = [vb.load(src[m], _c(v * V)) for m in range(mr) for v in vs]

            def body(j, accs, vs=vs):
                wrow = b.gep(pw, [b.mul(j, _c(nb))])
                wv = [vb.load(wrow, _c(v * V)) for v in vs]
                new = []
                for m in range(mr):
                    s = vb.splat(b.load(b.gep(arow[m], [j]), align=vb.al))
                    new += [vb.fma(s, wv[i], accs[m * pv + i]) for i in range(pv)]
                return new

            _, accs = _loop(b, k0, lambda j: b.icmp_signed("<", j, k1), _c(1), init, body)
            for m in range(mr):
                for i, v in enumerate(vs):
                    vb.store(accs[m * pv + i], outrow[m], _c(v * V))
        return carried

    _loop(b, _c(0), lambda ci: b.icmp_signed("<", ci, nck), _c(1), [], chunk)


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
