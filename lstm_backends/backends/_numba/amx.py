"""The ``bf16`` mode's products on AMX tiles (``tdpbf16ps``), over the pair panels of ``bf16.py``.

``mkamx`` has ``mk``'s signature and contract (``cout[m, 0:4V] = cin[m, 0:4V] + sum_j a[m, j] *
w[j, 0:4V]``, float32 rows ``a`` rounded to bfloat16 on the fly, ``w`` a pair panel).  Per call:

- up to 16 rows (the AMX worker hands out row blocks of up to ``MR = 16``, a tile's rows, where
  the float32 workers' blocks stop at ``MRMAX``);
- one tile configuration (``ldtilecfg``): tiles 0-3 the mr x 16 float32 accumulators of the
  panel's four 16-column groups, tile 4 mr rows of 32 bfloat16 of ``a``, tiles 5 and 6 16 pair
  rows x 16 columns of the panel (its VNNI layout *is* the pair panel: pair row ``q`` sits at the
  float32 panel's row ``2q``, so a B tile is 16 rows 512 bytes apart);
- the accumulators loaded from ``cin`` (its row stride may be 0: the bias row broadcast);
- per 32 k (16 pairs): the mr rows' 32 floats rounded to bfloat16 into a 64-byte-per-row buffer
  on the stack, one A tile load, four B tile loads and four ``tdpbf16ps``;
- the accumulators stored to ``cout``; the k that do not fill 32 (at most 31) then go through
  ``mkbf`` (``vdpbf16ps``, in groups of up to ``MRMAX`` rows) on ``cout``, so no tile ever
  reads past the k range of the call.

Every call configures the tiles itself (another user of AMX in the process, oneDNN say, cannot
leave a configuration we rely on) and releases them after its stores (``tilerelease``): a thread
between calls carries no tile state through context switches and signals, and idle cores are
not kept from deep sleep.

Linux lets a process use the tile data only after it asked once (``arch_prctl(
ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)``, :func:`permission`); the backend asks before the first
call that would run this kernel and falls back to ``vdpbf16ps`` when refused.

Where the host has no AMX the same kernel is built with the tiles emulated in IR (``_Emulated``:
eight 1 KiB tiles on the stack, the same loads and stores at the same addresses, ``tdpbf16ps``
as two FMAs per pair, the even element first, as Intel's pseudo-code defines it; loops over the
configured rows): the host of the
tests checks the kernel's every address, the tile shapes and the rounding.  Which one a host gets
is fixed when the IR is built (``HAS_AMX``; emitting tile instructions for a CPU without them
aborts LLVM), and Numba's cache keys the machine code on the host CPU's features.  The real
instructions were compiled and assembled for ``sapphirerapids`` (``tests/test_prepare.py``),
never run by their author: no CPU with AMX was at hand.  Real hardware may round the two
products of a pair once instead of twice, and it reads and writes float32 denormals (below
2**-126) as zero where the emulation's FMAs keep them; results agree with the emulation up to
summation order.
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform

import numpy as np
from llvmlite import ir

from .bf16 import _define_mkbf, define_mkbf_dispatch
from .ir import _FEATURES, _I8P, _I32, _I64, HOST_TARGET, _c, _decl, _define, _loop, _Vec
from .microkernels import MRMAX

__all__ = ["BF16_AMX", "HAS_AMX", "MARK", "bf16_amx", "bf16_kernel", "permission"]

#: whether this CPU has AMX tiles with bfloat16 products (the OS's permission is asked separately)
#: and Numba compiles for it (not for another CPU named by ``NUMBA_CPU_NAME``)
HAS_AMX = bool(_FEATURES.get("amx-tile")) and bool(_FEATURES.get("amx-bf16")) and HOST_TARGET
#: the ``bf16`` mode's products on AMX tiles: None = where the CPU has them and the OS allows them;
#: True forces them (emulated without AMX: for tests); False never.  ``LSTM_BACKENDS_BF16_AMX=1`` /
#: ``0`` sets it for a process.  (A run-time choice between two compiled workers: the cache stays
#: sound.)
BF16_AMX: bool | None = {"1": True, "0": False}.get(os.environ.get("LSTM_BACKENDS_BF16_AMX", ""))
#: the forward worker's mark for this kernel (``forward._make_worker``): its *type*, int16, is what
#: ``intrinsics._mkx`` selects on (int64 = the pair kernel, None = the float32 kernel)
MARK = np.int16(2)

KP = 16           # pairs per tile step (32 k): a B tile's rows, an A tile's 64 bytes per row
MR = 16           # rows per call (a tile's rows): the AMX worker hands out row blocks of up to 16
_ARCH_GET_XCOMP_PERM = 0x1022
_ARCH_REQ_XCOMP_PERM = 0x1023
_XFEATURE_XTILEDATA = 18
_SYS_ARCH_PRCTL = 158        # x86_64


#: why the OS refused the tile data (``permission()``), for ``lstm-backends info``
REFUSED = ""


@functools.cache
def permission() -> bool:
    """Ask Linux, once per process, for the AMX tile data (``arch_prctl(ARCH_REQ_XCOMP_PERM,
    XFEATURE_XTILEDATA)``); True when granted (:data:`REFUSED` says why not).  False, without
    asking, on a CPU without AMX or another OS or architecture.

    The grant is per process (threads started before it included).  After it, a thread's
    ``sigaltstack`` must be large enough for the tile state (Linux refuses smaller ones).

    Returns
    -------
    bool
        Whether tile instructions may run in this process.
    """
    global REFUSED
    if not HAS_AMX or platform.system() != "Linux" or platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall.restype = ctypes.c_long
        arg = ctypes.c_long
        if libc.syscall(arg(_SYS_ARCH_PRCTL), arg(_ARCH_REQ_XCOMP_PERM), arg(_XFEATURE_XTILEDATA)) != 0:
            REFUSED = os.strerror(ctypes.get_errno())
            return False
        mask = ctypes.c_uint64(0)
        if libc.syscall(arg(_SYS_ARCH_PRCTL), arg(_ARCH_GET_XCOMP_PERM), ctypes.byref(mask)) != 0:
            REFUSED = os.strerror(ctypes.get_errno())
            return False
        if not mask.value & (1 << _XFEATURE_XTILEDATA):
            REFUSED = "granted, but the permission mask lacks the tile data"
            return False
        return True
    except (OSError, AttributeError) as exc:   # pragma: no cover - no libc syscall
        REFUSED = str(exc)
        return False


def bf16_amx() -> bool:
    """Whether the ``bf16`` mode multiplies on AMX tiles here (see :data:`BF16_AMX`); asks the
    OS's permission the first time it answers True on a CPU with AMX."""
    if BF16_AMX is False:
        return False
    return permission() or (BF16_AMX is True and not HAS_AMX)   # (forced without AMX: emulated)


def bf16_kernel() -> str:
    """The ``bf16`` mode's products here: ``"amx"`` (tiles), ``"pairs"`` (``vdpbf16ps``) or
    ``"fma"`` (float32 FMAs of rounded operands).  The first two run on pair panels."""
    from .bf16 import bf16_pairs

    if bf16_amx():
        return "amx"
    return "pairs" if bf16_pairs() else "fma"


# ---------------------------------------------------------------------------- tiles (IR)

class _Real:
    """The tile instructions (LLVM's immediate-operand AMX intrinsics)."""

    def __init__(self, b):
        self.b = b
        mod = b.module
        i8 = ir.IntType(8)
        self._cfg = _decl(mod, "llvm.x86.ldtilecfg", ir.VoidType(), [_I8P])
        self._load = _decl(mod, "llvm.x86.tileloadd64", ir.VoidType(), [i8, _I8P, _I64])
        self._store = _decl(mod, "llvm.x86.tilestored64", ir.VoidType(), [i8, _I8P, _I64])
        self._dp = _decl(mod, "llvm.x86.tdpbf16ps", ir.VoidType(), [i8, i8, i8])
        self._release = _decl(mod, "llvm.x86.tilerelease", ir.VoidType(), [])

    @staticmethod
    def _t(t):
        return ir.Constant(ir.IntType(8), t)

    def configure(self, cfg, rows):
        self.b.call(self._cfg, [cfg])

    def load(self, t, ptr, stride):
        self.b.call(self._load, [self._t(t), ptr, stride])

    def store(self, t, ptr, stride):
        self.b.call(self._store, [self._t(t), ptr, stride])

    def dp(self, c, a, w):
        self.b.call(self._dp, [self._t(c), self._t(a), self._t(w)])

    def release(self):
        self.b.call(self._release, [])


class _Emulated:
    """The same operations on eight 16 x 64-byte tiles on the stack (rows as configured)."""

    def __init__(self, b):
        self.b = b
        self.vb = _Vec(b, 32)
        with b.goto_entry_block():
            self.mem = b.alloca(ir.ArrayType(_I32, 8 * 16 * 16), name="tiles")
            self.mem.align = 64
        self.words = b.bitcast(self.mem, _I32.as_pointer())
        self.rows = [16] * 8

    def _row(self, t, r):
        """Row ``r`` (an i64 value) of tile ``t`` as a pointer to 16 words."""
        at = self.b.add(_c(t * 16 * 16), self.b.mul(r, _c(16)))
        return self.b.bitcast(self.b.gep(self.words, [at]), self.vb.ivty.as_pointer())

    def _rows(self, t, body):
        """``body(r)`` for each configured row r of tile t (an IR loop)."""
        def step(r, carried):
            body(r)
            return carried

        _loop(self.b, _c(0), lambda r: self.b.icmp_signed("<", r, _c(self.rows[t])), _c(1), [], step)

    def configure(self, cfg, rows):
        self.rows = list(rows)

    def release(self):
        pass

    def load(self, t, ptr, stride):
        b = self.b

        def row(r):
            src = b.bitcast(b.gep(ptr, [b.mul(stride, r)]), self.vb.ivty.as_pointer())
            b.store(b.load(src, align=1), self._row(t, r), align=64)
        self._rows(t, row)

    def store(self, t, ptr, stride):
        b = self.b

        def row(r):
            dst = b.bitcast(b.gep(ptr, [b.mul(stride, r)]), self.vb.ivty.as_pointer())
            b.store(b.load(self._row(t, r), align=64), dst, align=1)
        self._rows(t, row)

    def dp(self, c, a, w):
        """``c[m, n] += a[m, 2q] w[q, 2n] + a[m, 2q+1] w[q, 2n+1]`` over q, each product added as a
        float32 FMA, the even element first."""
        b, vb = self.b, self.vb
        mask = vb.iconst(-65536)
        wrows = [b.load(self._row(w, _c(q)), align=64) for q in range(KP)]

        def row(m):
            acc = vb.from_bits(b.load(self._row(c, m), align=64))
            arow = b.load(self._row(a, m), align=64)
            for q in range(KP):
                word = b.extract_element(arow, ir.Constant(_I32, q))
                s = b.shuffle_vector(b.insert_element(ir.Constant(vb.ivty, ir.Undefined), word,
                                                      ir.Constant(_I32, 0)),
                                     ir.Constant(vb.ivty, ir.Undefined),
                                     ir.Constant(ir.VectorType(_I32, vb.V), [0] * vb.V))
                acc = vb.fma(vb.from_bits(b.shl(s, vb.iconst(16))), vb.from_bits(b.shl(wrows[q], vb.iconst(16))),
                             acc)
                acc = vb.fma(vb.from_bits(b.and_(s, mask)), vb.from_bits(b.and_(wrows[q], mask)), acc)
            b.store(vb.bits_of(acc), self._row(c, m), align=64)
        self._rows(c, row)


# ---------------------------------------------------------------------------- the kernel (IR)

def _tile_config(b, mr):
    """The 64-byte ``ldtilecfg`` block on the stack (palette 1): tiles 0-4 mr rows, 5-7 16 rows,
    64 bytes each.  Returns (pointer, rows per tile)."""
    rows = [mr] * 5 + [KP] * 3
    cfg = bytearray(64)
    cfg[0] = 1
    for t, r in enumerate(rows):
        if r:
            cfg[16 + 2 * t] = 64    # colsb, u16 little-endian
            cfg[48 + t] = r
    i8 = ir.IntType(8)
    with b.goto_entry_block():
        mem = b.alloca(ir.ArrayType(i8, 64), name="tilecfg")
        mem.align = 64
    b.store(ir.Constant(ir.ArrayType(i8, 64), bytearray(cfg)), mem, align=64)
    return b.bitcast(mem, _I8P), rows


def _define_mkamx(module, mr, real=None):
    """``void mkamx_r{mr}(a, lda, w, k, cin, ldcin, cout, ldcout)``: see the module docstring
    (``real``: the tile instructions, default ``HAS_AMX``; else emulated)."""
    real = HAS_AMX if real is None else real
    b, fn = _define(module, f"lstmb_mkamx_r{mr}", 8)
    if b is None:
        return fn
    vb = _Vec(b, 32)
    V = vb.V
    a, lda, w, k, cin, ldcin, cout, ldcout = fn.args
    groups = [(r0, min(MRMAX, mr - r0)) for r0 in range(0, mr, MRMAX)]   # mkbf takes up to MRMAX rows

    def on_vdpbf16ps(a_, w_, k_, cin_, ldcin_):
        """The rows in groups of mkbf: ``cout = cin + a w`` over ``k_``."""
        for r0, g in groups:
            b.call(_define_mkbf(module, g), [b.add(a_, b.mul(lda, _c(4 * r0))), lda, w_, k_,
                                             b.add(cin_, b.mul(ldcin_, _c(4 * r0))), ldcin_,
                                             b.add(cout, b.mul(ldcout, _c(4 * r0))), ldcout])

    nfull = b.sdiv(k, _c(2 * KP))
    with b.if_else(b.icmp_signed("==", nfull, _c(0))) as (short, whole):
        with short:   # under 32 k: all of it on vdpbf16ps
            on_vdpbf16ps(a, w, k, cin, ldcin)
        with whole:
            tiles = (_Real if real else _Emulated)(b)
            with b.goto_entry_block():
                abuf = b.alloca(ir.ArrayType(_I32, MR * KP), name="arows")
                abuf.align = 64
            pbuf = b.bitcast(abuf, _I32.as_pointer())
            cfg, rows = _tile_config(b, mr)
            tiles.configure(cfg, rows)
            pa = vb.fptr(a)
            pci, pco, pw = (b.inttoptr(v, _I8P) for v in (cin, cout, w))
            for v in range(4):
                tiles.load(v, b.gep(pci, [_c(64 * v)]), b.mul(ldcin, _c(4)))
            even = ir.Constant(ir.VectorType(_I32, V), list(range(0, 2 * V, 2)))
            odd = ir.Constant(ir.VectorType(_I32, V), list(range(1, 2 * V, 2)))
            prow = 2 * 4 * V * 4    # bytes from one pair row of the panel to the next (two float32 rows)

            def step(c, carried):
                j = b.mul(c, _c(2 * KP))
                for m in range(mr):   # a[m, j:j+32] as 16 words of bfloat16 pairs
                    row = b.gep(pa, [b.add(b.mul(lda, _c(m)), j)])
                    x0 = vb.load(row, _c(0))
                    x1 = vb.load(row, _c(V))
                    bx0, bx1 = vb.bf16_bits(x0), vb.bf16_bits(x1)
                    word = b.or_(b.shuffle_vector(bx0, bx1, even), b.shl(b.shuffle_vector(bx0, bx1, odd),
                                                                          vb.iconst(16)))
                    b.store(word, b.bitcast(b.gep(pbuf, [_c(m * KP)]), vb.ivty.as_pointer()), align=64)
                tiles.load(4, b.bitcast(pbuf, _I8P), _c(64))
                wq = b.gep(pw, [b.mul(c, _c(KP * prow))])
                for v in range(4):   # B tiles in turn 5, 6, 7, 5: a load need not wait for the last dp
                    tiles.load(5 + v % 3, b.gep(wq, [_c(64 * v)]), _c(prow))
                    tiles.dp(v, 4, 5 + v % 3)
                return carried

            _loop(b, _c(0), lambda c: b.icmp_signed("<", c, nfull), _c(1), [], step)
            for v in range(4):
                tiles.store(v, b.gep(pco, [_c(64 * v)]), b.mul(ldcout, _c(4)))
            tiles.release()   # the tiles back to their init state: no 8 KiB of state on every switch
            done = b.mul(nfull, _c(2 * KP))
            with b.if_then(b.icmp_signed("<", done, k)):   # the last k (< 32) on vdpbf16ps
                on_vdpbf16ps(b.add(a, b.mul(done, _c(4))), b.add(w, b.mul(nfull, _c(KP * prow))), b.sub(k, done),
                             cout, ldcout)
    b.ret_void()
    return fn


def define_mkamx_dispatch(module, bits):
    """``void mkamx(mr, a, lda, w, k, cin, ldcin, cout, ldcout)``: ``mkbf``'s dispatch over these
    kernels, mr 1..16."""
    return define_mkbf_dispatch(module, bits, "lstmb_mkamx_f32", _define_mkamx, MR)
