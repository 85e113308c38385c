"""The LSTM step and sequence as functions of your own ``@njit`` code: no Python per step.

>>> import numba, numpy as np, lstm_backends as lb
>>> from lstm_backends import jit as lj
>>> params = lb.testing.random_params(3, 8, rng=0)          # I=3, H=8, float32
>>> w = lj.prepare(params)                                  # packed once, read-only
>>> @numba.njit
... def run(w, xs, h, c):
...     for t in range(xs.shape[0]):
...         lj.cell(xs[t], h, c, w, h, c)                    # in place: h, c updated
...     return h
>>> xs = np.ones((5, 1, 3), np.float32)
>>> h, c = np.zeros((1, 8), np.float32), np.zeros((1, 8), np.float32)
>>> y, h_n, c_n = lb.get_backend("numba").forward(xs, params)
>>> bool(np.array_equal(run(w, xs, h, c), h_n))             # bitwise the backend's forward
True

:func:`cell` and :func:`forward` are callable inside ``@njit`` functions (also in
``@njit(parallel=True)`` bodies and ``prange`` loops: each call runs on the calling thread) and
from plain Python, where they validate their arguments fully.  They write into arrays the caller
owns and allocate nothing.  The weights come from :func:`prepare`, once: a :class:`JitWeights`,
a NamedTuple of read-only arrays that Numba types, float32 or float64 (each a compiled
specialisation of its own), with the projection, the peepholes and the cell options (``clip``,
``input_forget``) it was prepared with.

Inside compiled code, types are checked when your function compiles (a ``TypingError`` naming the
argument) and shapes on every call (a ``ValueError`` with a fixed message): a wrong-shape call
never reads or writes out of bounds.  (Inside a ``prange`` loop Numba itself reports such an
error as a ``SystemError`` whose ``__cause__`` is the ``ValueError`` with the OpenMP threading
layer, and loses it with the workqueue layer, numba issue 9673: check shapes before a parallel
loop.)  Inside ``@njit`` the outputs may be the inputs' own state arrays (``h_out`` is ``h``,
``c_out`` is ``c``); other overlaps are the caller's responsibility there (from Python they are
refused).

Compiling: the step itself is compiled once per kind of weights (float32, float64, a precision
mode) by the first :func:`prepare` that needs it in a process, and cached on disk with the numba
backend's kernels; a function of yours compiles only small wrappers that call it by address.
Caching: the type of :class:`JitWeights` names the version of the kernels, so after an upgrade
of lstm_backends (or any change of its kernels) a ``cache=True`` function of yours no longer
matches the weights from the new :func:`prepare` and recompiles once: it never runs stale
kernel code.

Sizes: one block of rows needs ``(ceil(S/4V) 4V + ceil(H/V) V)`` elements per row on the
calling thread's stack (``V`` = 16 float32 / 8 float64 lanes), within a fixed 128 KiB buffer:
``S + H`` up to about 32,000 float32 / 16,000 float64 units; :func:`prepare` says when a layer is
larger.

See the docs page "Calling the kernels from your own Numba code".
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._prepared import validate_precision
from ._validation import _check_out_array, check_aliasing, validate_lengths, validate_options, validate_params
from .backends._compile_notice import watched as _watched

__all__ = ["JitWeights", "cell", "forward", "prepare"]


from .backends._numba import embed as _embed
from .backends._numba.embed import JitWeights


def prepare(params: Any, *, dtype: Any = None, clip: float | None = None, input_forget: bool = False,
            precision: str | None = None) -> Any:
    """Pack one layer's weights (one direction) for :func:`cell` and :func:`forward`.

    Parameters
    ----------
    params : LSTMParams or tuple of 4 to 6 arrays
        ``w_ih`` (4H, I), ``w_hh`` (4H, S), ``b_ih``, ``b_hh`` (4H,), optional ``w_hr`` (P, H)
        (then ``S = P``) and ``w_peep`` (3, H); float32 or float64.  Copied: editing them
        afterwards changes nothing.
    dtype : numpy dtype, optional
        ``float32`` or ``float64``: convert the weights to it.  Default: their own dtype.
    clip : positive float, optional
        Bound of every gate pre-activation (ONNX ``clip``).
    input_forget : bool
        Couple the gates, ``f = 1 - i`` (ONNX ``input_forget``).
    precision : {None, "bf16", "bf16x3"}
        The products' precision mode (float32 weights; see ``Backend.prepare``): the weights are
        rounded / split here, ``x`` and ``h`` at every step, as the numba backend does (bitwise its
        ``forward`` in the mode).

    Returns
    -------
    JitWeights
        A NamedTuple of read-only arrays, for your ``@njit`` functions (pass it as an argument;
        a global is frozen into your function's code).

    Raises
    ------
    TypeError, ValueError
        The weights' shapes or dtypes, or an option, as for ``Backend.forward``; a layer too large
        for the per-call stack buffer.
    """
    if dtype is not None:
        dt = np.dtype(dtype)
        if dt not in (np.float32, np.float64):
            raise TypeError(f"dtype must be float32 or float64; got {dt}")
        params = tuple(None if p is None else np.asarray(p, dt) for p in tuple(params))
    spec = validate_params(params, dtypes=(np.dtype(np.float32), np.dtype(np.float64)))
    opts = validate_options(clip, input_forget)
    mode = validate_precision(precision)
    what = "lstm_backends.jit step" + (f" ({mode})" if mode else "")
    return _watched((what, spec.dtype), _embed.pack, spec, opts.clip, opts.input_forget, mode)


def _check_weights(w: Any, fn: str) -> Any:
    embed = _embed
    if not isinstance(w, embed.JitWeights):
        raise TypeError(f"lstm_backends.jit.{fn}: w must be the weights from lstm_backends.jit.prepare (a "
                        f"JitWeights); got {type(w).__name__}")
    if w.meta.dtype != embed.meta_dtype():
        raise ValueError(f"lstm_backends.jit.{fn}: w was prepared by another version of lstm_backends; call "
                         "lstm_backends.jit.prepare again")
    return w.meta[0]


def _check_in(name: str, a: Any, shape: tuple[int, ...], dtype: np.dtype, fn: str) -> None:
    if not isinstance(a, np.ndarray):
        raise TypeError(f"lstm_backends.jit.{fn}: {name} must be a numpy array; got {type(a).__name__}")
    if a.dtype != dtype:
        raise TypeError(f"lstm_backends.jit.{fn}: {name} is {a.dtype} but the weights were prepared as "
                        f"{dtype}: use {name}.astype(np.{dtype})")
    if a.shape != shape:
        raise ValueError(f"lstm_backends.jit.{fn}: {name} must have shape {shape}; got {a.shape}")
    if not a.flags.c_contiguous:
        raise ValueError(f"lstm_backends.jit.{fn}: {name} must be C-contiguous (np.ascontiguousarray({name}))")


def cell(x: Any, h: Any, c: Any, w: Any, h_out: Any, c_out: Any) -> None:
    """One LSTM step for a batch of rows, into caller-owned ``h_out`` and ``c_out``.

    Callable inside ``@njit`` code and from Python (which checks everything, as ``Backend.cell``
    does).  Bitwise the numba backend's step.

    Parameters
    ----------
    x : ndarray, shape (B, I)
    h : ndarray, shape (B, S)
        ``S = P`` with a projection, else ``H``.
    c : ndarray, shape (B, H)
    w : JitWeights
        From :func:`prepare`; float32 or float64, the dtype of every array here.
    h_out : ndarray, shape (B, S)
        Written; may be ``h`` itself.
    c_out : ndarray, shape (B, H)
        Written; may be ``c`` itself.
    """
    m = _check_weights(w, "cell")
    dt = w.zero.dtype
    if not isinstance(x, np.ndarray) or x.ndim != 2:
        raise ValueError(f"lstm_backends.jit.cell: x must be a (B, I) numpy array; got {getattr(x, 'shape', x)!r}")
    B = x.shape[0]
    for name, a, shape in (("x", x, (B, int(m["I"]))), ("h", h, (B, int(m["S"]))), ("c", c, (B, int(m["H"])))):
        _check_in(name, a, shape, dt, "cell")
    _check_out_array("h_out", h_out, h.shape, dt)
    _check_out_array("c_out", c_out, c.shape, dt)
    check_aliasing({"h_out": h_out, "c_out": c_out}, {"x": x, "h": h, "c": c}, {"h_out": "h", "c_out": "c"})
    _embed.cell_entry(x, h, c, w, h_out, c_out)


def forward(x: Any, w: Any, h0: Any, c0: Any, y: Any, h_n: Any, c_n: Any, lengths: Any = None,
            reverse: bool = False) -> None:
    """A whole sequence into caller-owned ``y``, ``h_n``, ``c_n``.

    Callable inside ``@njit`` code and from Python (which checks everything, as ``Backend.forward``
    does).  Bitwise the numba backend's ``forward``, lengths and ``reverse`` included.

    Parameters
    ----------
    x : ndarray, shape (T, B, I)
    w : JitWeights
        From :func:`prepare`.
    h0 : ndarray, shape (B, S)
        May be ``h_n`` itself (updated in place).
    c0 : ndarray, shape (B, H)
        May be ``c_n`` itself.
    y : ndarray, shape (T, B, S)
        Written; zero at the steps past a row's length.
    h_n : ndarray, shape (B, S)
    c_n : ndarray, shape (B, H)
        Written: the state after each row's last valid step.
    lengths : ndarray of int, shape (B,), optional
        Valid steps per row, each in ``[0, T]`` (default: all ``T``).
    reverse : bool
        Run each row from its last valid step back to step 0.
    """
    m = _check_weights(w, "forward")
    dt = w.zero.dtype
    if not isinstance(x, np.ndarray) or x.ndim != 3:
        raise ValueError(f"lstm_backends.jit.forward: x must be a (T, B, I) numpy array; got "
                         f"{getattr(x, 'shape', x)!r}")
    T, B = x.shape[:2]
    S, H = int(m["S"]), int(m["H"])
    for name, a, shape in (("x", x, (T, B, int(m["I"]))), ("h0", h0, (B, S)), ("c0", c0, (B, H))):
        _check_in(name, a, shape, dt, "forward")
    _check_out_array("y", y, (T, B, S), dt)
    _check_out_array("h_n", h_n, (B, S), dt)
    _check_out_array("c_n", c_n, (B, H), dt)
    check_aliasing({"y": y, "h_n": h_n, "c_n": c_n}, {"x": x, "h0": h0, "c0": c0}, {"h_n": "h0", "c_n": "c0"})
    lens = validate_lengths(lengths, B, T)
    if not isinstance(reverse, (bool, np.bool_)):
        raise TypeError(f"lstm_backends.jit.forward: reverse must be a bool; got {reverse!r}")
    _embed.forward_entry(x, w, h0, c0, y, h_n, c_n, lens, bool(reverse))


_embed.register(cell, forward)
