"""LLVM IR building blocks of the kernels: function definition, the vector type of a dtype,
counted loops, in-register transposes, and the instruction-set probe of the host.

Every kernel that does floating-point work is IR built from these (``noinline``, explicit
``llvm.fma``), so its bits never depend on Numba's inlining or contraction choices.
"""

from __future__ import annotations

import platform

from llvmlite import ir
from numba.core import cgutils

_X86 = platform.machine().lower() in ("x86_64", "amd64", "i686", "x86")
try:
    import llvmlite.binding as _llb

    _FEATURES = _llb.get_host_cpu_features() if _X86 else {}
    _AVX512 = bool(_FEATURES.get("avx512f"))
    #: the host's bfloat16 instructions (LLVM's names), for the precision modes' path report
    BF16_FEATURES = [name for name in ("amx-bf16", "avx512bf16") if _FEATURES.get(name)]
except Exception:  # pragma: no cover - feature query unavailable
    _FEATURES = {}
    _AVX512 = False
    BF16_FEATURES = []

try:   # Numba compiles for the host unless NUMBA_CPU_NAME names another CPU (a portable cache, say)
    from numba.core import config as _config

    #: whether the kernels are compiled for this host's CPU: instructions that only some CPUs have
    #: (``vdpbf16ps``, AMX tiles) are emitted only then (for another target LLVM would abort)
    HOST_TARGET = getattr(_config, "CPU_NAME", None) in (None, "", "host")
except ImportError:  # pragma: no cover
    HOST_TARGET = True

_I64 = ir.IntType(64)
_I32 = ir.IntType(32)
_I1 = ir.IntType(1)
_I8P = ir.IntType(8).as_pointer()


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

    def bf16_bits(self, v):
        """The bfloat16 bit patterns (low 16 bits of each word) of float32 lanes ``v``, rounded to
        nearest even; NaN as a quiet NaN."""
        b = self.b
        bits = self.bits_of(v)
        odd = b.and_(b.lshr(bits, self.iconst(16)), self.iconst(1))
        up = b.lshr(b.add(b.add(bits, self.iconst(0x7FFF)), odd), self.iconst(16))
        return b.select(self.isnan(v), self.iconst(0x7FC0), up)


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
