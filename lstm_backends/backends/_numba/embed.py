"""The kernels as functions of the user's own compiled code (``lstm_backends.jit``): prepared
weights (``pack``), ``cell`` and ``forward`` as wrappers around the step of ``jitstep``, and
their Numba overloads, so a user's ``@njit`` function calls them with no Python per step.

A wrapper checks the arrays' shapes against the prepared sizes, writes the step's argument block
on its stack and calls the step kernel of the weights' kind by address, block of rows by block
of rows (``mr`` rows, chosen by ``prepare``); ``forward`` loops over the steps and the rows'
lengths.  Only the wrapper compiles into the user's function: the step itself is compiled once
per kind and cached (``jitstep``), and it is the serial forward kernel's step, so ``cell`` and
``forward`` are bitwise the numba backend's ``forward``.  Nothing is allocated per call, and no
parallel region runs: every call runs on the calling thread, so the functions nest in the user's
``prange`` loops.

Prepared weights (``JitWeights``, a NamedTuple of read-only arrays; ``lstm_backends.jit`` builds
them): ``meta`` a 1-element record array of the sizes (its last field's *name* carries the
package stamp, so the weights' Numba type changes with every version of these kernels: a user's
``cache=True`` function compiled against an older version no longer matches and recompiles),
``w_ih`` (NP, I, 4V), ``w_hh`` (NP, S, 4V), ``bias`` (NP, 4V) = ``b_ih + b_hh`` in the dtype,
``w_hr`` (NPP, H, 4V) or (0, 0, 4V), ``w_peep`` (3, H) or (0, H), ``zero`` (4V,) zeros.  Panel
``p`` column ``q V + u`` is unit ``p V + u`` of gate ``q`` (zero past H).
"""

# ruff: noqa: F405 (the argument-block names come from ``blocks``' star import)

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from numba import njit, types
from numba.core.errors import TypingError
from numba.extending import overload

from ._jit import _JIT, package_stamp
from .bf16 import pair_panels
from .blocks import *  # noqa: F403 -- the E_* words of the step's argument block, META_FIELDS
from .gates import CLIP, IFORGET, PEEP
from .intrinsics import _addr, _call_worker, _lanes_of, _stw, _zero_of
from .jitstep import STACK_BYTES, _copy, _step_of, _words, arm
from .microkernels import MRMAX
from .panels import aligned, panels
from .rows import _peep_of

__all__ = ["STACK_BYTES", "JitWeights", "cell_entry", "forward_entry", "meta_dtype", "pack", "register",
           "stamp_field"]



def stamp_field() -> str:
    """The name of the meta record's last field: ``v_`` and the first 16 hex digits of the kernel
    package's stamp (see ``_jit.package_stamp``)."""
    return "v_" + package_stamp()[:16]


def meta_dtype() -> np.dtype:
    """The record dtype of ``JitWeights.meta``: the int64 sizes, ``clip`` (float64) and the stamp field."""
    return np.dtype([(n, np.int64) for n in META_FIELDS] + [("clip", np.float64), (stamp_field(), np.int64)])


class JitWeights(NamedTuple):
    """Weights prepared for the njit-callable kernels (see :func:`lstm_backends.jit.prepare`).

    A NamedTuple of read-only arrays, so Numba types it and a user's ``@njit`` function takes it
    as an argument.  Its layout is this version's (``meta``'s last field names the version);
    build it with ``prepare``, never by hand.

    Attributes
    ----------
    meta : ndarray, shape (1,), a record dtype
        Sizes ``I, H, S, P`` (``S = P`` with a projection, else ``H``; ``P = 0`` without), the
        panel counts, rows per block ``mr``, the cell options (``flags``, ``clip``).
    w_ih : ndarray, shape (NP, I, 4V)
    w_hh : ndarray, shape (NP, S, 4V)
        The panels; in the ``bf16`` mode on a CPU with AVX512-BF16, uint32 words of bfloat16 pairs
        (``_numba/bf16.py``), which compile the step on ``vdpbf16ps``.
    bias : ndarray, shape (NP, 4V)
    w_hr : ndarray, shape (NPP, H, 4V)
    w_peep : ndarray, shape (3, H) or (0, H)
    zero : ndarray, shape (4V,)
    """

    meta: Any
    w_ih: Any
    w_hh: Any
    bias: Any
    w_hr: Any
    w_peep: Any
    zero: Any

    def __reduce__(self) -> tuple:
        # unpickled (another process, perhaps): aligned read-only copies, and the kernel loaded there
        return _unpickled, tuple(self)


def _unpickled(*arrays: np.ndarray) -> JitWeights:
    w = JitWeights(*(_readonly(a) for a in arrays))
    # another version's weights stay unloaded: every call refuses them ("prepared by another version")
    return arm(w) if w.meta.dtype == meta_dtype() else w


def _readonly(a: np.ndarray) -> np.ndarray:
    a = aligned(a)   # a copy of its own, on a cache-line boundary
    a.flags.writeable = False
    return a


def pack(spec: Any, clip: float | None, input_forget: bool, precision: str | None = None) -> JitWeights:
    """The :class:`JitWeights` of checked params (``lstm_backends._validation.ParamsSpec``) and options;
    with a ``precision`` mode, the split weights of ``modes.py`` (meta ``m``: products per operand pair,
    1 for bf16, 3 for bf16x3; 0 without a mode).

    Raises ValueError when a block of one row does not fit the stack buffer."""
    dt = spec.dtype
    m = {None: 0, "bf16": 1, "bf16x3": 3}[precision]
    if m and dt != np.float32:
        raise ValueError(f"precision={precision!r} takes float32 weights; got {dt.name} (prepare(..., "
                         "dtype=np.float32))")
    I, H, P = spec.input_size, spec.hidden_size, spec.proj_size  # noqa: E741
    S = P or H
    V = 16 if dt == np.float32 else 8
    NB = 4 * V
    NP = -(-H // V)
    NPP = -(-S // NB) if P else 0
    split = (NP + 1) // 2
    ks = min((NPP + 1) // 2 * NB, S) if NPP else min(split * V, H)
    per_row = -(-S // NB) * NB + NP * V + m * (NP * V + I + max(S, NP * V))   # (a mode: the split rows too)
    room = STACK_BYTES // dt.itemsize - MRMAX * NB
    # rows per block: up to MRMAX (the micro-kernel's accumulators fit the registers: AVX-512's
    # wide kernel, the narrow one elsewhere), fewer where the stack buffer has no room for them
    mr = min(MRMAX, room // per_row)
    if mr < 1:
        raise ValueError(f"lstm_backends.jit handles layers whose one-row block needs at most {room} elements of "
                         f"its stack buffer ({dt.name}); this one needs {per_row} (I={I}, H={H}, S={S}"
                         f"{', precision=' + repr(precision) if m else ''}): use Backend.forward")

    if m:
        from ..._params import LSTMParams
        from .amx import bf16_kernel
        from .modes import mode_panels, x3_panels

        params = LSTMParams(*(None if a is None else np.asarray(a, dt) for a in (
            spec.w_ih, spec.w_hh, spec.b_ih, spec.b_hh, spec.w_hr, None)))
        if P:   # the portable path's split panels
            w_ih, w_hh, bias, w_hr = mode_panels(params, m == 3)
        else:   # as the backend's float32 paths in the mode, and on its kernel: bfloat16 pairs on
            # vdpbf16ps (uint32 words) or on AMX tiles (int32 words: _mkx selects on the type)
            w_ih, w_hh, bias, w_hr = x3_panels(params) if m == 3 else mode_panels(params, False)
            kernel = bf16_kernel()
            if kernel != "fma":
                words = np.uint32 if kernel == "pairs" else np.int32
                w_ih, w_hh = pair_panels(w_ih).view(words), pair_panels(w_hh).view(words)
    else:
        w_ih, w_hh, bias, w_hr = panels(spec.w_ih, spec.w_hh, spec.b_ih, spec.b_hh, spec.w_hr, dt)
    w_peep = np.asarray(spec.w_peep, dt) if spec.w_peep is not None else np.zeros((0, H), dt)
    flags = (PEEP if spec.w_peep is not None else 0) | (CLIP if clip is not None else 0) | (IFORGET if input_forget
                                                                                           else 0)
    meta = np.zeros(1, meta_dtype())
    for name, value in zip(META_FIELDS, (I, H, S, P, NP, NPP, split, ks, mr, flags, m)):
        meta[name] = value
    meta["clip"] = clip if clip is not None else 0.0
    meta[stamp_field()] = 1
    return arm(JitWeights(*(_readonly(a) for a in (meta, w_ih, w_hh, bias, w_hr, w_peep, np.zeros(NB, dt)))))


# ---------------------------------------------------------------------------- cheap checks (compiled)

@njit(inline="always", **_JIT)
def _rows_ok(a, n, width):
    """``a`` is (n, width), rows ``width`` elements apart, elements contiguous (any n)."""
    isz = a.itemsize
    return a.shape[0] == n and a.shape[1] == width and (a.strides[1] == isz or width <= 1) \
        and (a.strides[0] == width * isz or n <= 1)


@njit(inline="always", **_JIT)
def _check_cell(x, h, c, w, h_out, c_out):
    m = w.meta[0]
    B = x.shape[0]
    if not _rows_ok(x, B, m.I):
        raise ValueError("lstm_backends.jit.cell: x must be a C-contiguous (B, I) array with the prepared I")
    if not (_rows_ok(h, B, m.S) and _rows_ok(h_out, B, m.S)):
        raise ValueError("lstm_backends.jit.cell: h and h_out must be C-contiguous (B, S) arrays (S = P with a "
                         "projection, else H), B from x")
    if not (_rows_ok(c, B, m.H) and _rows_ok(c_out, B, m.H)):
        raise ValueError("lstm_backends.jit.cell: c and c_out must be C-contiguous (B, H) arrays, B from x")


@njit(inline="always", **_JIT)
def _check_forward(x, w, h0, c0, y, h_n, c_n):
    m = w.meta[0]
    T = x.shape[0]
    B = x.shape[1]
    isz = x.itemsize
    if not (_rows_ok(x[0], B, m.I) and (x.strides[0] == B * m.I * isz or T <= 1)):
        raise ValueError("lstm_backends.jit.forward: x must be a C-contiguous (T, B, I) array with the prepared I")
    if not (y.shape[0] == T and _rows_ok(y[0], B, m.S) and (y.strides[0] == B * m.S * isz or T <= 1)):
        raise ValueError("lstm_backends.jit.forward: y must be a C-contiguous (T, B, S) array (S = P with a "
                         "projection, else H), T and B from x")
    if not (_rows_ok(h0, B, m.S) and _rows_ok(h_n, B, m.S)):
        raise ValueError("lstm_backends.jit.forward: h0 and h_n must be C-contiguous (B, S) arrays, B from x")
    if not (_rows_ok(c0, B, m.H) and _rows_ok(c_n, B, m.H)):
        raise ValueError("lstm_backends.jit.forward: c0 and c_n must be C-contiguous (B, H) arrays, B from x")


# ---------------------------------------------------------------------------- the implementations

@njit(inline="always", **_JIT)
def _sizes(w):
    """I, H, S and the rows per block of prepared weights."""
    m = w.meta[0]
    return m.I, m.H, m.S, m.mr


@njit(inline="always", **_JIT)
def _weights_words(proto, a, w):
    """Write the weights' words of the argument block ``a``; the address of their step kernel."""
    fn = _step_of(proto, w.w_ih, w.meta[0].m)
    if fn == 0:
        raise ValueError("lstm_backends.jit: the kernel of these weights is not loaded in this process; weights "
                         "come from lstm_backends.jit.prepare (or from unpickling what it returned)")
    _stw(a, E_META, _addr(w.meta))
    _stw(a, E_WIH, _addr(w.w_ih))
    _stw(a, E_WHH, _addr(w.w_hh))
    _stw(a, E_BIAS, _addr(w.bias))
    _stw(a, E_WHR, _addr(w.w_hr))
    peep, pstep, ldpeep = _peep_of(w.w_peep, _addr(w.zero), _lanes_of(proto))
    _stw(a, E_PEEP, peep)
    _stw(a, E_PSTEP, pstep)
    _stw(a, E_LDPEEP, ldpeep)
    _stw(a, E_ZERO, _addr(w.zero))
    return fn


@njit(inline="always", **_JIT)
def _run_step(proto, fn, a, mr, xa, ldx, ha, ldh, ho, ca, co, ldc, ya, ldy):
    """One step of ``mr`` rows on the kernel at ``fn`` (see ``_block`` for the rows' words)."""
    _stw(a, E_XA, xa)
    _stw(a, E_LDX, ldx)
    _stw(a, E_HA, ha)
    _stw(a, E_LDH, ldh)
    _stw(a, E_HO, ho)
    _stw(a, E_CA, ca)
    _stw(a, E_CO, co)
    _stw(a, E_LDC, ldc)
    _stw(a, E_YA, ya)
    _stw(a, E_LDY, ldy)
    _call_worker(fn, proto, mr, a)


def _cell_impl(x, h, c, w, h_out, c_out):
    _check_cell(x, h, c, w, h_out, c_out)
    proto = _zero_of(x)
    isz = 64 // _lanes_of(proto)
    I, H, S, MR = _sizes(w)  # noqa: E741
    B = x.shape[0]
    a = _words(proto)
    fn = _weights_words(proto, a, w)
    for r0 in range(0, B, MR):
        _run_step(proto, fn, a, min(MR, B - r0), _addr(x) + r0 * I * isz, I, _addr(h) + r0 * S * isz, S,
                  _addr(h_out) + r0 * S * isz, _addr(c) + r0 * H * isz, _addr(c_out) + r0 * H * isz, H, 0, 0)


@njit(inline="always", **_JIT)
def _len_of(lengths, b, T):
    if lengths is None:
        return T
    return lengths[b]


def _forward_impl(x, w, h0, c0, y, h_n, c_n, lengths=None, reverse=False):
    _check_forward(x, w, h0, c0, y, h_n, c_n)
    T = x.shape[0]
    B = x.shape[1]
    if lengths is not None:
        if lengths.shape[0] != B:
            raise ValueError("lstm_backends.jit.forward: lengths must have shape (B,), B from x")
        for b in range(B):
            if lengths[b] < 0 or lengths[b] > T:
                raise ValueError("lstm_backends.jit.forward: every length must be in [0, T]")
    proto = _zero_of(x)
    isz = 64 // _lanes_of(proto)
    I, H, S, MR = _sizes(w)  # noqa: E741
    a = _words(proto)
    fn = _weights_words(proto, a, w)
    hn = _addr(h_n)
    cn = _addr(c_n)
    _copy(proto, hn, _addr(h0), B * S)   # (a no-op copy when h0 is h_n)
    _copy(proto, cn, _addr(c0), B * H)
    if lengths is not None:
        for t in range(T):
            for b in range(B):
                if t >= lengths[b]:
                    for k in range(S):
                        y[t, b, k] = 0
    xa = _addr(x)
    ya = _addr(y)
    for s in range(T):
        b0 = 0
        while b0 < B:
            if s >= _len_of(lengths, b0, T):
                b0 += 1
                continue
            t0 = s
            if reverse:
                t0 = _len_of(lengths, b0, T) - 1 - s
            b1 = b0 + 1
            while b1 < B and b1 - b0 < MR and s < _len_of(lengths, b1, T):
                t1 = s
                if reverse:
                    t1 = _len_of(lengths, b1, T) - 1 - s
                if t1 != t0:
                    break
                b1 += 1
            _run_step(proto, fn, a, b1 - b0, xa + (t0 * B + b0) * I * isz, I, hn + b0 * S * isz, S,
                      hn + b0 * S * isz, cn + b0 * H * isz, cn + b0 * H * isz, H, ya + (t0 * B + b0) * S * isz, S)
            b0 = b1


# ---------------------------------------------------------------------------- public functions + overloads

def _typing_error(fn: str, msg: str) -> TypingError:
    return TypingError(f"lstm_backends.jit.{fn}: {msg}")


def _check_types(fn: str, w: Any, arrays: dict, writable: tuple) -> None:
    """Compile-time checks: ``w`` is this version's JitWeights, every array 2-D/3-D of its dtype."""
    if not (isinstance(w, types.BaseNamedTuple) and getattr(w, "instance_class", None) is JitWeights):
        raise _typing_error(fn, f"w must be the weights from lstm_backends.jit.prepare (a JitWeights); got {w}")
    meta_rec = w.types[0].dtype
    if not isinstance(meta_rec, types.Record) or stamp_field() not in meta_rec.fields:
        raise _typing_error(fn, "w was prepared by another version of lstm_backends; call lstm_backends.jit.prepare "
                                "again with this version")
    dtype = w.types[3].dtype   # the bias's (the panels are uint32 words in the bf16 mode on pairs)
    for name, (a, ndim) in arrays.items():
        if not isinstance(a, types.Array) or a.ndim != ndim:
            raise _typing_error(fn, f"{name} must be a {ndim}-D array; got {a}")
        if a.dtype != dtype:
            raise _typing_error(fn, f"{name} is {a.dtype} but the weights were prepared as {dtype}: "
                                    f"one dtype for x, the state, the outputs and the weights")
        if name in writable and not a.mutable:
            raise _typing_error(fn, f"{name} is read-only; it is written")


def register(cell: Any, forward: Any) -> None:
    """Attach the Numba overloads to ``lstm_backends.jit``'s ``cell`` and ``forward`` (once, at its
    import): inside compiled code those names compile to ``_cell_impl`` / ``_forward_impl`` after
    the compile-time checks."""
    options = {"error_model": "numpy", "nogil": True}

    @overload(cell, jit_options=options)
    def _cell_overload(x, h, c, w, h_out, c_out):
        _check_types("cell", w, {"x": (x, 2), "h": (h, 2), "c": (c, 2), "h_out": (h_out, 2), "c_out": (c_out, 2)},
                     ("h_out", "c_out"))
        return _cell_impl

    @overload(forward, jit_options=options)
    def _forward_overload(x, w, h0, c0, y, h_n, c_n, lengths=None, reverse=False):
        _check_types("forward", w, {"x": (x, 3), "h0": (h0, 2), "c0": (c0, 2), "y": (y, 3), "h_n": (h_n, 2),
                                    "c_n": (c_n, 2)}, ("y", "h_n", "c_n"))
        if not (lengths is None or isinstance(lengths, (types.NoneType, types.Omitted))
                or (isinstance(lengths, types.Array) and lengths.ndim == 1
                    and isinstance(lengths.dtype, types.Integer))):
            raise _typing_error("forward", f"lengths must be None or a 1-D integer array; got {lengths}")
        if not (isinstance(reverse, (types.Boolean, types.Omitted)) or reverse is False):
            raise _typing_error("forward", f"reverse must be a bool; got {reverse}")
        return _forward_impl


#: ``cell`` / ``forward`` from Python, after ``lstm_backends.jit`` checked everything
cell_entry = njit(**_JIT)(_cell_impl)
forward_entry = njit(**_JIT)(_forward_impl)
