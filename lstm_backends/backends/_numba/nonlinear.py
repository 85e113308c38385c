"""The gate nonlinearities as vector IR: float32 tanh (Eigen's clamped rational, abs. error
3.6e-7) and sigma(x) = (1 + tanh(x/2)) / 2; float64 branch-free ``exp64``/``tanh64``/``sigmoid64``
(<= 4e-16 relative over the whole range, +-inf and NaN included)."""

from __future__ import annotations

from llvmlite import ir

from .ir import _AVX512, _decl

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
