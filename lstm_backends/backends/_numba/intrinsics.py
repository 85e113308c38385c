"""Numba's view of the IR: ``@intrinsic`` wrappers that call the micro-kernels and the gate
steps, memory and address operations (loads, stores, memcpy, atomics, acquire/release), the spin
wait, the worker call through a C-callback address, and ``math64_apply`` (tests).

Addresses travel as int64 everywhere; ``proto`` (a zero of the dtype) selects float32 or float64.
"""

from __future__ import annotations

from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from ._jit import _JIT
from .amx import define_mkamx_dispatch
from .bf16 import define_mkbf_dispatch
from .blocks import SPINS_BEFORE_YIELD
from .gates import _define_gate, _define_gate_bwd, _define_math64
from .ir import _I1, _I8P, _I32, _I64, _X86, _c, _decl, _define
from .microkernels import _define_mk_dispatch, _define_mkt_dispatch, _define_pack


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
def _mkx(typingctx, proto, mark, mr, a, lda, w, k, cin, ldcin, cout, ldcout):
    """``_mk``, or chosen at compile time by the *type* of ``mark``, the bf16 mode's kernel over
    bfloat16 pair panels (``bf16.py``): an int64 ``mark``, or an array of uint32 (pair panels as
    ``lstm_backends.jit`` holds them) selects the pairs on ``vdpbf16ps``, an int16 mark
    (``amx.MARK``) or an array of int32 (``lstm_backends.jit``'s pair panels for tiles) the same
    pairs on AMX tiles (``amx.py``); None or a float array ``_mk``.  So the float32 workers carry no
    pair kernel: the pair worker is its own specialisation."""
    if not isinstance(proto, types.Float):
        return None
    # (float64 has no such mode: both pair dispatches give it mk's)
    if (isinstance(mark, types.Integer) and mark.bitwidth == 16) or (isinstance(mark, types.Array)
                                                                      and mark.dtype == types.int32):
        define = define_mkamx_dispatch
    elif isinstance(mark, types.Integer) or (isinstance(mark, types.Array) and mark.dtype == types.uint32):
        define = define_mkbf_dispatch
    else:
        define = _define_mk_dispatch

    def codegen(context, builder, signature, args):
        builder.call(define(builder.module, proto.bitwidth), _i64_args(context, builder, signature, args, 2))
        return context.get_dummy_value()
    return types.void(proto, mark, *([types.int64] * 9)), codegen


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
def _ldw(typingctx, base, index):
    """int64 word ``index`` of the block at address ``base`` (``_ld(base + 8 * index)`` in one call:
    every integer operation costs Numba compile time, and the argument blocks have many words)."""
    def codegen(context, builder, signature, args):
        return builder.load(builder.gep(_i64p(builder, args[0]), [args[1]]), align=8)
    return types.int64(types.int64, types.int64), codegen


@intrinsic
def _stw(typingctx, base, index, val):
    """Word ``index`` of the block at ``base`` = ``val`` (``_st(base + 8 * index, val)`` in one call)."""
    def codegen(context, builder, signature, args):
        builder.store(args[2], builder.gep(_i64p(builder, args[0]), [args[1]]), align=8)
        return context.get_dummy_value()
    return types.void(types.int64, types.int64, types.int64), codegen


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


@njit(**_JIT)
def math64_apply(which, x, out):
    """out = tanh64(x) (which 0), sigmoid64(x) (1) or exp64(x) (2): the float64 functions of the
    gate update, over contiguous float64 arrays (for accuracy tests)."""
    _m64(which, _addr(x), _addr(out), x.size)
