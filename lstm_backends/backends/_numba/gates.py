"""The fused pointwise steps after each product (LLVM IR): the gate update of one panel row
(forward, with the training record) and its back-propagation, and ``math64`` (the float64
functions over arrays, for accuracy tests).  Compile-time variants: PEEP | CLIP | IFORGET."""

from __future__ import annotations

from llvmlite import ir

from .ir import _I1, _I32, _I64, _c, _decl, _define, _loop, _Vec
from .nonlinear import _acts, _ir_exp64, _ir_sigmoid64, _ir_tanh64

# ---------------------------------------------------------------------------- gate update

PEEP, CLIP, IFORGET = 1, 2, 4   # gate feature bits (compile-time variants)
#: float32 gate bit: the h written to ``h`` (the next step's product operand) rounded to bfloat16,
#: ``y`` unrounded (the ``bf16`` precision mode on the float32 forward paths)
ROUNDH = 8
#: float32 gate bit, with ``ROUNDH``: ``h`` gets the split ``[hi | hi | lo]`` of the new hidden values
#: (V lanes each: ``hi = bf16(h)`` at ``h``, again ``V`` elements on, ``lo = bf16(h - hi)`` ``2V`` on),
#: the ``bf16x3`` mode's operand of the next step (``forward.py``'s three-block h layout)
SPLIT3 = 16


def _define_gate(module, bits):
    """``void gate(flags, tile, cin, cout, h, y, nval, peep, ldpeep, clip, tg, ldg, tc, tk)`` (clip a
    double, the rest i64): the fused update of one panel row, lanes u < nval.

    ``tile[0:4V]`` holds the pre-activations ``[i | f | g | o]``; ``cin`` the old cell state
    (V units), ``cout`` the new one (may be ``cin``); ``h`` the new hidden values; ``y`` a second
    copy of them (0: none); ``peep`` the peephole rows i, f, o (``ldpeep`` apart; a zero buffer
    when unused).  ``flags`` chooses one of 8 compile-time variants (PEEP | CLIP | IFORGET);
    the plain one (0) does nothing else.  ``ROUNDH`` (float32): ``h`` gets the new hidden values
    rounded to bfloat16 (to nearest, ties to even; NaN stays NaN), ``y`` them unrounded; with
    ``SPLIT3`` too, ``h`` is three V-lane blocks: that, again, and the rounded remainder.  ONNX
    semantics: clip bounds every pre-activation, bias and peephole included (NaN stays NaN); o's
    peephole sees the new c; IFORGET: f = 1 - i.

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
    sw = b.switch(b.and_(flags, _c(7)), store)
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
    hop = hphi
    if bits == 32:
        hop = b.select(b.icmp_signed("!=", b.and_(flags, _c(ROUNDH)), _c(0)), _round_bf16_vec(b, vb, hphi), hphi)
        with b.if_then(b.icmp_signed("!=", b.and_(flags, _c(SPLIT3)), _c(0))):
            vb.mstore(hop, vb.fptr(hp), _c(V), mask)
            vb.mstore(_round_bf16_vec(b, vb, b.fsub(hphi, hop)), vb.fptr(hp), _c(2 * V), mask)
    vb.mstore(hop, vb.fptr(hp), _c(0), mask)
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


def _round_bf16_vec(b, vb, v):
    """float32 lanes rounded to bfloat16 (to nearest, ties to even; NaN stays NaN), as float32."""
    rounded = vb.from_bits(b.shl(vb.bf16_bits(v), vb.iconst(16)))
    return b.select(vb.isnan(v), v, rounded)


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
