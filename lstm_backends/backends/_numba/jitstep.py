"""The step of ``lstm_backends.jit`` on prepared weights, compiled once per kind and reached by
address.

One step of a block of rows is the serial forward kernel's step, panel by panel (the same FMA
chains: bias, ``x W_ih`` in k order, then ``h W_hh`` in the canonical two-half order, see the
package docstring), so ``lstm_backends.jit`` is bitwise the numba backend's ``forward``.  It is a
C callback ``void(proto, int64 mr, int64 a)`` per *kind* of weights (``KINDS``: float32 / float64
without a precision mode; float32 in a mode, on FMAs, bfloat16 pairs or AMX tiles), compiled or
loaded from this package's cache by ``arm`` when ``prepare`` first needs that kind in a process.
Its one scratch buffer (a panel's tile, the new h of a block of rows, the projection's input, a
mode's split rows) lives on its own stack (``_stack``, ``STACK_BYTES``).

The callers (``embed``'s wrappers, compiled into the user's own functions) write the step's
argument block (``E_*`` words) on their stack and call the kernel whose address ``arm`` stored in
a process-wide word of its kind.  Those words are registered with LLVM's symbol table under
names that carry the package stamp (``_symbol``) and read at run time, so a user's ``cache=True``
function holds no address of the process that compiled it, and compiling a user's function
compiles only the small wrapper: the kernel itself is compiled once, and cached.
"""

# ruff: noqa: F405 (the argument-block names come from ``blocks``' star import)

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np
from llvmlite import binding as llvm_binding
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from ._jit import _JIT, callback, package_stamp
from .amx import MARK as AMX_MARK
from .blocks import *  # noqa: F403 -- the E_* words of the step's argument block, the M_* of the meta record
from .intrinsics import _gate, _lanes_of, _ldf, _ldw, _mk, _mkx
from .microkernels import MRMAX
from .modes import _block as _mode_block
from .modes import _split_blocks, _split_row

__all__ = ["KINDS", "STACK_BYTES", "arm", "kind_of", "step_kernel"]

#: bytes of the one scratch buffer on the stack of the step kernel
STACK_BYTES = 131072


def _on_stack(name: str, ty: ir.Type) -> Any:
    """An intrinsic ``f(proto)``: the address of a 64-byte aligned ``ty`` on the calling function's
    stack (one ``alloca`` in its entry block, whatever the loop it is called in)."""
    def typer(typingctx, proto):
        if not isinstance(proto, types.Float):
            return None

        def codegen(context, builder, signature, args):
            with builder.goto_entry_block():
                buf = builder.alloca(ty, name=name)
                buf.align = 64
            return builder.ptrtoint(buf, ir.IntType(64))
        return types.int64(proto), codegen
    typer.__name__ = name
    return intrinsic(typer)


#: the step's scratch, ``STACK_BYTES`` on the stack of the step kernel
_stack = _on_stack("lstmb_stack", ir.ArrayType(ir.IntType(8), STACK_BYTES))
#: the step's argument block (``EARGS`` words), on the stack of the wrapper that calls it
_words = _on_stack("lstmb_words", ir.ArrayType(ir.IntType(64), EARGS))


# ---------------------------------------------------------------------------- the step (compiled once per kind)

@njit(inline="always", **_JIT)
def _block(proto, mark, mr, xa, ldx, ha, ldh, ho, ldo, ca, co, ldc, ya, ldy, a, st, KI, KS, ks):
    """One step of ``mr`` rows (all addresses, element strides): x rows at ``xa``, h at ``ha`` (read)
    and ``ho`` (written after every product, so it may be ``ha``; rows ``ldo`` apart), c at ``ca``
    (read) and ``co`` (written panel by panel: it may be ``ca``), and a copy of the new h at ``ya``
    (0: none).  ``a``: the argument block (the weights' addresses, the meta record's), ``st``: the
    stack scratch, ``mark``: the products' kernel (``_mkx``).  ``KI``, ``KS``: the products' k of x
    and of h (``I`` and ``S``, or bf16x3's split rows), ``ks`` where the second half of the
    recurrent k begins."""
    m = _ldw(a, E_META)
    H = _ldw(m, M_H)
    S = _ldw(m, M_S)
    NP = _ldw(m, M_NP)
    NPP = _ldw(m, M_NPP)
    split = _ldw(m, M_SPLIT)
    flags = _ldw(m, M_FLAGS)
    clip = _ldf(np.float64(0.0), m + 8 * M_CLIP)
    V = _lanes_of(proto)
    NB = 4 * V
    isz = 64 // V
    LDH = (S + NB - 1) // NB * NB
    LDC = NP * V
    wip = _ldw(a, E_WIH)
    whp = _ldw(a, E_WHH)
    bp = _ldw(a, E_BIAS)
    peep = _ldw(a, E_PEEP)
    pstep = _ldw(a, E_PSTEP)
    ldpeep = _ldw(a, E_LDPEEP)
    tile = st
    hbuf = st + MRMAX * NB * isz
    rbuf = hbuf + mr * LDH * isz
    for pp in range(NP):
        _mkx(proto, mark, mr, xa, ldx, wip + pp * KI * NB * isz, KI, bp + pp * NB * isz, 0, tile, NB)
        ka0, ka1, kb0, kb1 = 0, ks, ks, KS
        if pp >= split:
            ka0, ka1, kb0, kb1 = ks, KS, 0, ks
        wp = whp + pp * KS * NB * isz
        _mkx(proto, mark, mr, ha + ka0 * isz, ldh, wp + ka0 * NB * isz, ka1 - ka0, tile, NB, tile, NB)
        _mkx(proto, mark, mr, ha + kb0 * isz, ldh, wp + kb0 * NB * isz, kb1 - kb0, tile, NB, tile, NB)
        nval = min(V, H - pp * V)
        for r in range(mr):
            dst = hbuf + (r * LDH + pp * V) * isz
            if NPP > 0:
                dst = rbuf + (r * LDC + pp * V) * isz
            _gate(proto, flags, tile + r * NB * isz, ca + (r * ldc + pp * V) * isz, co + (r * ldc + pp * V) * isz,
                  dst, 0, nval, peep + pp * pstep * isz, ldpeep, clip, 0, 0, 0, 0)
    whrp = _ldw(a, E_WHR)
    for jp in range(NPP):
        _mk(proto, mr, rbuf, LDC, whrp + jp * H * NB * isz, H, _ldw(a, E_ZERO), 0, hbuf + jp * NB * isz, LDH)
    for r in range(mr):
        _copy(proto, ho + r * ldo * isz, hbuf + r * LDH * isz, S)
        if ya != 0:
            _copy(proto, ya + r * ldy * isz, hbuf + r * LDH * isz, S)


@njit(inline="always", **_JIT)
def _plain_step(proto, mark, mr, a):
    """The step of weights without a precision mode: ``_block`` on the rows of the block ``a``."""
    m = _ldw(a, E_META)
    _block(proto, mark, mr, _ldw(a, E_XA), _ldw(a, E_LDX), _ldw(a, E_HA), _ldw(a, E_LDH), _ldw(a, E_HO),
           _ldw(a, E_LDH), _ldw(a, E_CA), _ldw(a, E_CO), _ldw(a, E_LDC), _ldw(a, E_YA), _ldw(a, E_LDY), a,
           _stack(proto), _ldw(m, M_I), _ldw(m, M_S), _ldw(m, M_KS))


@njit(inline="always", **_JIT)
def _mode_step(mark, mr, a):
    """The step in a precision mode (meta ``m`` > 0, float32): x and h rows rounded / split into
    the stack after that step's own room, then without a projection ``_block`` on them (the
    backend's float32 paths in that mode, the same bits: ``bf16`` rounded rows, ``bf16x3`` x as
    ``[hi | hi | lo]`` and h in three blocks per panel), else the split-operand step
    (``modes._block``; c copied to ``co`` first: that step updates c in place)."""
    proto = np.float32(0)
    st = _stack(proto)
    md = _ldw(a, E_META)
    mm = _ldw(md, M_M)
    I = _ldw(md, M_I)  # noqa: E741
    H = _ldw(md, M_H)
    S = _ldw(md, M_S)
    NP = _ldw(md, M_NP)
    NPP = _ldw(md, M_NPP)
    xa = _ldw(a, E_XA)
    ldx = _ldw(a, E_LDX)
    ha = _ldw(a, E_HA)
    ldh = _ldw(a, E_LDH)
    ho = _ldw(a, E_HO)
    ca = _ldw(a, E_CA)
    co = _ldw(a, E_CO)
    ldc = _ldw(a, E_LDC)
    ya = _ldw(a, E_YA)
    ldy = _ldw(a, E_LDY)
    LDH = (S + 63) // 64 * 64
    LDC = NP * 16
    xsp = st + 4 * (MRMAX * 64 + _ldw(md, M_MR) * (LDH + LDC + mm * LDC))
    hsp = xsp + 4 * _ldw(md, M_MR) * mm * I
    if mm == 1 and NPP == 0:   # bf16, no projection: the float32 step on rounded rows, as the backend
        for r in range(mr):
            _split_row(xa + 4 * r * ldx, xsp + 4 * r * I, I, False)
            _split_row(ha + 4 * r * ldh, hsp + 4 * r * S, S, False)
        _block(proto, mark, mr, xsp, I, hsp, S, ho, ldh, ca, co, ldc, ya, ldy, a, st, I, S, _ldw(md, M_KS))
        return
    if NPP == 0:   # bf16x3, no projection: as the backend's float32 paths (gates.SPLIT3)
        for r in range(mr):
            _split_row(xa + 4 * r * ldx, xsp + 4 * r * 3 * I, I, True)
            _split_blocks(ha + 4 * r * ldh, hsp + 4 * r * 3 * LDC, S)
        _block(proto, mark, mr, xsp, 3 * I, hsp, 3 * LDC, ho, ldh, ca, co, ldc, ya, ldy, a, st, 3 * I, 3 * LDC,
               3 * 16 * _ldw(md, M_SPLIT))
        return
    for r in range(mr):
        _split_row(xa + 4 * r * ldx, xsp + 4 * r * mm * I, I, mm == 3)
        _split_row(ha + 4 * r * ldh, hsp + 4 * r * mm * S, S, mm == 3)
        if co != ca:
            _copy(proto, co + 4 * r * ldc, ca + 4 * r * ldc, H)
    _mode_block(mr, xsp, mm * I, hsp, mm * S, ho, co, H, S, ya, ldy, NP, NPP, _ldw(md, M_FLAGS),
                _ldf(np.float64(0.0), md + 8 * M_CLIP), _ldw(a, E_WIH), _ldw(a, E_WHH), _ldw(a, E_BIAS),
                _ldw(a, E_WHR), _ldw(a, E_PEEP), _ldw(a, E_PSTEP), _ldw(a, E_LDPEEP), _ldw(a, E_ZERO), st, mm)


def _make_step(mark, mode):
    """The step kernel of one kind, ``void(proto, int64 mr, int64 a)`` as a C callback: ``mark``
    (a closure constant) picks the products' kernel as in the forward worker (None: ``mk``; 1: the
    bf16 pair panels on ``vdpbf16ps``; ``amx.MARK``: the same on AMX tiles), ``mode`` whether the
    weights carry a precision mode.  Its stack holds the step's scratch (``STACK_BYTES``)."""
    if mode:
        def _step(proto, mr, a):
            _mode_step(mark, mr, a)
    else:
        def _step(proto, mr, a):
            _plain_step(proto, mark, mr, a)
    return _step


#: the kinds of step kernel: (name, float bits) -> (mark, mode)
KINDS = {("plain", 32): (None, False), ("plain", 64): (None, False), ("mode", 32): (None, True),
         ("pairs", 32): (np.int64(1), True), ("amx", 32): (AMX_MARK, True)}
_STEPS = {key: _make_step(*value) for key, value in KINDS.items()}
_INDEX = {key: i for i, key in enumerate(KINDS)}   # a kind's word in _ADDRESSES
#: the kind of mode weights by the dtype of their panels (bfloat16 pair words); float panels: "mode"
_PAIR_WORDS = {"uint32": "pairs", "int32": "amx"}


def _symbol(kind: str, bits: int) -> str:
    """The name of the process-wide word that holds the address of a kind's step kernel (the
    package stamp in it: the wrappers of one version never reach another's kernels)."""
    return f"lstmb_jit_{package_stamp()[:16]}_{kind}{bits}"


# The words themselves, registered with LLVM's symbol table at import (nothing compiles): the
# wrappers load them at run time, so a user's ``cache=True`` function holds no address of this
# process.  Zero until ``arm`` compiled or loaded the kernel.
_ADDRESSES = (ctypes.c_int64 * len(KINDS))()
for (_kind, _bits), _i in _INDEX.items():
    llvm_binding.add_symbol(_symbol(_kind, _bits), ctypes.addressof(_ADDRESSES) + 8 * _i)


def kind_of(w: Any) -> tuple[str, int]:
    """The step kernel kind of prepared weights: their float bits, and ``plain`` without a precision
    mode, else by the panels' words (``pairs`` uint32, ``amx`` int32, ``mode`` floats)."""
    bits = w.bias.dtype.itemsize * 8
    if int(w.meta["m"][0]) == 0:
        return "plain", bits
    return _PAIR_WORDS.get(w.w_ih.dtype.name, "mode"), bits


def step_kernel(kind: str, bits: int) -> Any:
    """The step kernel of a kind (``KINDS``) as a Numba ``CFunc``, compiled or loaded from the cache
    on first use."""
    return callback(np.float32 if bits == 32 else np.float64, "jit_" + kind, _STEPS[(kind, bits)])


def arm(w: Any) -> Any:
    """Compile or load from the cache the step kernel of ``w``'s kind (once per process) and publish
    its address to the wrappers; returns ``w``."""
    key = kind_of(w)
    if _ADDRESSES[_INDEX[key]] == 0:
        _ADDRESSES[_INDEX[key]] = step_kernel(*key).address
    return w


@intrinsic
def _step_of(typingctx, proto, words, m):
    """The address of the step kernel for weights whose panels hold ``words`` and whose meta ``m``
    says the mode (0: none): loaded from the process-wide word of its kind (0 when not armed)."""
    if not isinstance(proto, types.Float) or not isinstance(words, types.Array):
        return None
    bits = proto.bitwidth
    kind = _PAIR_WORDS.get(str(words.dtype), "mode")

    def codegen(context, builder, signature, args):
        def word(name):
            gv = builder.module.globals.get(name)
            if gv is None:
                gv = ir.GlobalVariable(builder.module, ir.IntType(64), name=name)
                gv.linkage = "external"
            return builder.load(gv)
        if kind != "mode" or bits == 64:
            return word(_symbol(kind if kind != "mode" else "plain", bits))
        plain = builder.icmp_signed("==", args[2], ir.Constant(ir.IntType(64), 0))
        return builder.select(plain, word(_symbol("plain", bits)), word(_symbol("mode", bits)))
    return types.int64(proto, words, types.int64), codegen


@intrinsic
def _copy(typingctx, proto, dst, src, n):
    """``n`` elements of ``proto``'s type from address ``src`` to ``dst`` (memmove)."""
    if not isinstance(proto, types.Float):
        return None
    nbytes = proto.bitwidth // 8

    def codegen(context, builder, signature, args):
        _, dst, src, n = args
        i8p = ir.IntType(8).as_pointer()
        size = builder.mul(n, ir.Constant(ir.IntType(64), nbytes))
        builder.call(builder.module.declare_intrinsic("llvm.memmove", [i8p, i8p, ir.IntType(64)]),
                     [builder.inttoptr(dst, i8p), builder.inttoptr(src, i8p), size, ir.Constant(ir.IntType(1), 0)])
        return context.get_dummy_value()
    return types.void(proto, types.int64, types.int64, types.int64), codegen
