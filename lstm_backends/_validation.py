"""Validation of every argument of ``forward`` and ``cell``, in one place.

Backends call :func:`prepare_forward` / :func:`prepare_cell` and get back
C-contiguous arrays of one floating dtype with checked shapes, plus output arrays
to write into; kernels then never see a bad input.  Host inputs that are
Fortran-ordered, strided or read-only are copied to fresh C-contiguous arrays
(never written to).  The rules:

* wrong shape -> ``ValueError`` naming the argument, the received and the expected shape;
* non-floating, unsupported or mixed dtypes -> ``TypeError`` saying how to fix it
  (nothing is silently up-cast);
* ``lengths`` of the wrong count, out of ``[0, T]`` or not integers -> ``ValueError``.

The functions work on objects exposing ``shape`` and ``dtype`` or
``__cuda_array_interface__`` so that the ``cuda`` backend can validate device
arrays without copying them to the host; ``convert`` says how an input becomes
the array the kernel reads.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._params import LSTMParams

__all__ = [
    "CellArgs",
    "ForwardArgs",
    "describe",
    "prepare_cell",
    "prepare_forward",
    "prepare_lengths",
    "prepare_params",
]

DEFAULT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def describe(a: Any) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and NumPy dtype of a host array, device array or array-like.

    Parameters
    ----------
    a : array_like or object with ``__cuda_array_interface__``

    Returns
    -------
    shape : tuple of int
    dtype : numpy.dtype
    """
    if isinstance(a, np.ndarray):
        return a.shape, a.dtype
    cai = getattr(a, "__cuda_array_interface__", None)
    if cai is not None:
        return tuple(int(s) for s in cai["shape"]), np.dtype(cai["typestr"])
    if hasattr(a, "copy_to_host") and hasattr(a, "shape"):  # Numba device arrays, simulated ones too
        return tuple(a.shape), np.dtype(a.dtype)
    arr = np.asarray(a)
    return arr.shape, arr.dtype


def _fmt_dtypes(dtypes: Sequence[np.dtype]) -> str:
    return ", ".join(np.dtype(d).name for d in dtypes)


def _check_floating(name: str, dtype: np.dtype, dtypes: Sequence[np.dtype]) -> None:
    if dtype not in dtypes:
        if np.issubdtype(dtype, np.floating):
            problem = f"{name} has dtype {dtype.name}, which this backend does not support"
        else:
            problem = f"{name} has dtype {dtype.name}, but LSTM arrays must be floating point"
        raise TypeError(
            f"{problem} (supported: {_fmt_dtypes(dtypes)}); convert it explicitly, "
            f"e.g. {name} = np.asarray({name}, dtype=np.float32)"
        )


def _check_same_dtype(named: dict[str, np.dtype]) -> np.dtype:
    items = list(named.items())
    first_name, first = items[0]
    for name, dtype in items[1:]:
        if dtype != first:
            raise TypeError(
                f"mixed dtypes: {first_name} is {first.name} but {name} is {dtype.name}; "
                "all arrays of one call must share one dtype (nothing is up-cast "
                f"silently): cast with .astype(np.{first.name}) or convert the params "
                f"with LSTMParams(*(np.asarray(p, dtype=np.{first.name}) for p in params))"
            )
    return first


def _check_shape(name: str, shape: tuple[int, ...], expected: tuple[int, ...], meaning: str) -> None:
    if tuple(shape) != tuple(expected):
        raise ValueError(
            f"{name} must have shape {meaning} = {tuple(expected)}; got shape {tuple(shape)}"
        )


def _host(a: Any) -> np.ndarray:
    # ascontiguousarray copies Fortran-ordered and strided inputs and leaves
    # read-only ones alone (kernels never write to inputs).
    return np.ascontiguousarray(a)


def _unpack_params(params: Any) -> tuple[Any, Any, Any, Any]:
    if isinstance(params, LSTMParams):
        return tuple(params)
    try:
        n = len(params)
    except TypeError:
        n = -1
    if n != 4 or isinstance(params, (str, bytes, np.ndarray)):
        raise TypeError(
            "params must be an LSTMParams or a 4-tuple (w_ih, w_hh, b_ih, b_hh); "
            f"got {type(params).__name__}"
            + (f" of length {n}" if n >= 0 and not isinstance(params, np.ndarray) else "")
        )
    return tuple(params)


@dataclass
class ParamsInfo:
    """Validated parameters plus the sizes they imply."""

    w_ih: Any
    w_hh: Any
    b_ih: Any
    b_hh: Any
    input_size: int
    hidden_size: int
    dtype: np.dtype


def prepare_params(
    params: Any,
    *,
    dtypes: Sequence[np.dtype] = DEFAULT_DTYPES,
    convert: Callable[[Any], Any] = _host,
    zeros: Callable[[tuple[int, ...], np.dtype], Any] = np.zeros,
) -> ParamsInfo:
    """Check ``(w_ih, w_hh, b_ih, b_hh)`` and derive ``I`` and ``H``.

    Parameters
    ----------
    params : LSTMParams or 4-tuple
        ``w_ih`` (4H, I), ``w_hh`` (4H, H), ``b_ih`` (4H,), ``b_hh`` (4H,); a bias
        may be ``None`` for "no bias" (zeros).
    dtypes : sequence of numpy.dtype
        Dtypes the backend supports.
    convert : callable
        Turns an accepted input into the array the kernel reads.
    zeros : callable
        Allocates a zero bias when one is ``None``.

    Returns
    -------
    ParamsInfo
    """
    w_ih, w_hh, b_ih, b_hh = _unpack_params(params)
    if w_ih is None or w_hh is None:
        raise TypeError("params.w_ih and params.w_hh are required (got None)")
    named = {"w_ih": w_ih, "w_hh": w_hh, "b_ih": b_ih, "b_hh": b_hh}
    meta = {k: describe(v) for k, v in named.items() if v is not None}
    for k, (_, dt) in meta.items():
        _check_floating(f"params.{k}", dt, dtypes)
    dtype = _check_same_dtype({f"params.{k}": dt for k, (_, dt) in meta.items()})

    hh_shape = meta["w_hh"][0]
    if len(hh_shape) != 2 or hh_shape[0] != 4 * hh_shape[1] or hh_shape[1] < 1:
        raise ValueError(
            "params.w_hh must have shape (4H, H) with H >= 1 (gates i, f, g, o stacked "
            f"along the first axis); got shape {tuple(hh_shape)}"
        )
    hidden = hh_shape[1]
    ih_shape = meta["w_ih"][0]
    if len(ih_shape) != 2 or ih_shape[0] != 4 * hidden or ih_shape[1] < 1:
        raise ValueError(
            f"params.w_ih must have shape (4H, I) = ({4 * hidden}, I) with I >= 1 "
            f"(H={hidden} from w_hh); got shape {tuple(ih_shape)}"
        )
    for k in ("b_ih", "b_hh"):
        if k in meta:
            _check_shape(f"params.{k}", meta[k][0], (4 * hidden,), f"(4H,) with H={hidden}")
    out = {k: (convert(v) if v is not None else zeros((4 * hidden,), dtype)) for k, v in named.items()}
    return ParamsInfo(out["w_ih"], out["w_hh"], out["b_ih"], out["b_hh"], ih_shape[1], hidden, dtype)


def prepare_lengths(lengths: Any, batch: int, steps: int) -> np.ndarray | None:
    """Check variable sequence lengths.

    Parameters
    ----------
    lengths : array_like of int, shape (B,), or None
        Valid steps per batch row, each in ``[0, T]``.
    batch, steps : int
        ``B`` and ``T``.

    Returns
    -------
    numpy.ndarray of int64, shape (B,), or None
    """
    if lengths is None:
        return None
    if hasattr(lengths, "__cuda_array_interface__"):
        raise TypeError(
            "lengths must be a host array (like PyTorch's pack_padded_sequence); "
            "copy it to the host first"
        )
    arr = np.asarray(lengths)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(
            f"lengths must be integers; got dtype {arr.dtype.name} "
            "(pass e.g. np.asarray(lengths, dtype=np.int64))"
        )
    if arr.shape != (batch,):
        raise ValueError(f"lengths must have shape (B,) = ({batch},); got shape {arr.shape}")
    if arr.size and (arr.min() < 0 or arr.max() > steps):
        bad = int(np.flatnonzero((arr < 0) | (arr > steps))[0])
        raise ValueError(
            f"lengths must lie in [0, T] = [0, {steps}]; lengths[{bad}] = {int(arr[bad])}"
        )
    return np.ascontiguousarray(arr, dtype=np.int64)


def _check_out(name: str, arr: Any, shape: tuple[int, ...], dtype: np.dtype, host: bool) -> None:
    if host and not isinstance(arr, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray to write into; got {type(arr).__name__}")
    got_shape, got_dtype = describe(arr)
    if tuple(got_shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}; got shape {tuple(got_shape)}")
    if got_dtype != dtype:
        raise TypeError(f"{name} must have dtype {dtype.name} (that of the inputs); got {got_dtype.name}")
    if host:
        if not arr.flags.c_contiguous:
            raise ValueError(f"{name} must be C-contiguous to be written in place")
        if not arr.flags.writeable:
            raise ValueError(f"{name} is read-only; pass a writeable array")


def _unpack_out(out: Any, n: int, names: str) -> tuple[Any, ...]:
    if not isinstance(out, (tuple, list)) or len(out) != n:
        raise TypeError(f"out must be a tuple {names} of preallocated arrays")
    return tuple(out)


def check_forward_out(
    out: Any, steps: int, batch: int, hidden: int, dtype: np.dtype, *, host: bool, inputs: Sequence[Any] = ()
) -> tuple[Any, Any, Any]:
    """Check ``forward``'s ``out=(y, h_n, c_n)``: shapes (T, B, H), (B, H), (B, H), the dtype,
    and for host arrays C order, writeability and no overlap with any of ``inputs``.

    Returns
    -------
    y, h_n, c_n
    """
    y, h_n, c_n = _unpack_out(out, 3, "(y, h_n, c_n)")
    _check_out("out[0] (y)", y, (steps, batch, hidden), dtype, host)
    _check_out("out[1] (h_n)", h_n, (batch, hidden), dtype, host)
    _check_out("out[2] (c_n)", c_n, (batch, hidden), dtype, host)
    if host:
        for o_name, o in (("y", y), ("h_n", h_n), ("c_n", c_n)):
            if any(isinstance(a, np.ndarray) and np.may_share_memory(o, a) for a in inputs):
                raise ValueError(f"out {o_name} overlaps an input; forward outputs may not alias inputs")
    return y, h_n, c_n


def check_cell_out(
    out: Any, batch: int, hidden: int, dtype: np.dtype, *, host: bool, x: Any, h: Any, c: Any, params: Any
) -> tuple[Any, Any]:
    """Check ``cell``'s ``out=(h_out, c_out)``: shapes (B, H), the dtype, and for host arrays
    C order, writeability and no overlap with the inputs — except exactly ``out=(h, c)``.

    Returns
    -------
    h_out, c_out
    """
    h_out, c_out = _unpack_out(out, 2, "(h_out, c_out)")
    _check_out("out[0] (h_out)", h_out, (batch, hidden), dtype, host)
    _check_out("out[1] (c_out)", c_out, (batch, hidden), dtype, host)
    if host:
        if np.may_share_memory(h_out, c_out):
            raise ValueError("out h_out and c_out overlap; pass two separate arrays")
        for o_name, o in (("h_out", h_out), ("c_out", c_out)):
            for a_name, a in (("x", x), *zip(("w_ih", "w_hh", "b_ih", "b_hh"), params), ("h", h), ("c", c)):
                same = a is o and a_name == o_name[0]
                if isinstance(a, np.ndarray) and not same and np.may_share_memory(o, a):
                    raise ValueError(
                        f"out {o_name} overlaps input {a_name}; only out=(h, c) "
                        "(exactly the state arrays, for an in-place update) may alias inputs"
                    )
    return h_out, c_out


@dataclass
class ForwardArgs:
    """Everything a forward kernel needs: validated inputs and outputs to write.

    Attributes
    ----------
    x : array, shape (T, B, I)
    w_ih, w_hh, b_ih, b_hh : arrays, shapes (4H, I), (4H, H), (4H,), (4H,)
    h0, c0 : arrays, shape (B, H)
    lengths : int64 array, shape (B,); all T when the caller passed none
    y : array, shape (T, B, H)   output; rows past their length are zeroed by the caller
    h_n, c_n : arrays, shape (B, H)   outputs
    """

    x: Any
    w_ih: Any
    w_hh: Any
    b_ih: Any
    b_hh: Any
    h0: Any
    c0: Any
    lengths: np.ndarray
    reverse: bool
    y: Any
    h_n: Any
    c_n: Any
    steps: int
    batch: int
    input_size: int
    hidden_size: int
    dtype: np.dtype

    @property
    def params(self) -> LSTMParams:
        return LSTMParams(self.w_ih, self.w_hh, self.b_ih, self.b_hh)


def prepare_forward(
    x: Any,
    params: Any,
    h0: Any = None,
    c0: Any = None,
    *,
    lengths: Any = None,
    reverse: bool = False,
    out: Any = None,
    dtypes: Sequence[np.dtype] = DEFAULT_DTYPES,
    convert: Callable[[Any], Any] = _host,
    empty: Callable[[tuple[int, ...], np.dtype], Any] = np.empty,
    zeros: Callable[[tuple[int, ...], np.dtype], Any] = np.zeros,
    host: bool = True,
) -> ForwardArgs:
    """Validate the arguments of ``Backend.forward`` and allocate its outputs.

    Parameters
    ----------
    x : array, shape (T, B, I)
    params : LSTMParams or 4-tuple
    h0, c0 : array, shape (B, H), or None for zeros
    lengths : array_like of int, shape (B,), or None
    reverse : bool
    out : tuple (y, h_n, c_n) of arrays shaped (T, B, H), (B, H), (B, H), or None
    dtypes : supported dtypes; convert, empty, zeros : array factories for the target.
    host : bool
        Whether outputs must be NumPy arrays.

    Returns
    -------
    ForwardArgs
    """
    x_shape, x_dtype = describe(x)
    _check_floating("x", x_dtype, dtypes)
    p = prepare_params(params, dtypes=dtypes, convert=convert, zeros=zeros)
    named = {"x": x_dtype, "params": p.dtype}
    if len(x_shape) != 3:
        raise ValueError(
            f"x must have shape (T, B, I) (time-major, 3-D); got shape {tuple(x_shape)} "
            "(use batch_first=True in lstm_backends.LSTM for (B, T, I))"
        )
    steps, batch, in_size = x_shape
    if in_size != p.input_size:
        raise ValueError(
            f"x must have shape (T, B, I) with I={p.input_size} (from params.w_ih); "
            f"got shape {tuple(x_shape)}"
        )
    hidden = p.hidden_size
    states = {}
    for name, s in (("h0", h0), ("c0", c0)):
        if s is not None:
            s_shape, s_dtype = describe(s)
            _check_floating(name, s_dtype, dtypes)
            named[name] = s_dtype
            _check_shape(name, s_shape, (batch, hidden), f"(B, H) with B={batch}, H={hidden}")
        states[name] = s
    dtype = _check_same_dtype(named)
    lens = prepare_lengths(lengths, batch, steps)
    if lens is None:
        lens = np.full(batch, steps, np.int64)
    if out is None:
        y, h_n, c_n = empty((steps, batch, hidden), dtype), empty((batch, hidden), dtype), empty(
            (batch, hidden), dtype
        )
    else:
        y, h_n, c_n = check_forward_out(out, steps, batch, hidden, dtype, host=host, inputs=(x, *params, h0, c0))
    h0c = convert(states["h0"]) if states["h0"] is not None else zeros((batch, hidden), dtype)
    c0c = convert(states["c0"]) if states["c0"] is not None else zeros((batch, hidden), dtype)
    return ForwardArgs(
        x=convert(x), w_ih=p.w_ih, w_hh=p.w_hh, b_ih=p.b_ih, b_hh=p.b_hh, h0=h0c, c0=c0c,
        lengths=lens, reverse=bool(reverse), y=y, h_n=h_n, c_n=c_n, steps=steps, batch=batch,
        input_size=in_size, hidden_size=hidden, dtype=dtype,
    )


@dataclass
class CellArgs:
    """Validated arguments of one cell step.

    Attributes
    ----------
    x : array, shape (B, I)
    h, c : arrays, shape (B, H)
    w_ih, w_hh, b_ih, b_hh : parameter arrays
    h_out, c_out : arrays, shape (B, H), to write; may be ``h`` and ``c`` themselves
    """

    x: Any
    h: Any
    c: Any
    w_ih: Any
    w_hh: Any
    b_ih: Any
    b_hh: Any
    h_out: Any
    c_out: Any
    batch: int
    input_size: int
    hidden_size: int
    dtype: np.dtype


def prepare_cell(
    x: Any,
    h: Any,
    c: Any,
    params: Any,
    *,
    out: Any = None,
    dtypes: Sequence[np.dtype] = DEFAULT_DTYPES,
    convert: Callable[[Any], Any] = _host,
    empty: Callable[[tuple[int, ...], np.dtype], Any] = np.empty,
    zeros: Callable[[tuple[int, ...], np.dtype], Any] = np.zeros,
    host: bool = True,
) -> CellArgs:
    """Validate the arguments of ``Backend.cell`` and allocate its outputs.

    Parameters
    ----------
    x : array, shape (B, I)
    h, c : array, shape (B, H)
    params : LSTMParams or 4-tuple
    out : tuple (h_out, c_out) of arrays shaped (B, H), or None.  They may be
        ``h`` and ``c`` themselves (update in place) but must not partially overlap them.

    Returns
    -------
    CellArgs
    """
    if host:
        fast = _fast_cell(x, h, c, params, out, dtypes)
        if fast is not None:
            return fast
    x_shape, x_dtype = describe(x)
    _check_floating("x", x_dtype, dtypes)
    p = prepare_params(params, dtypes=dtypes, convert=convert, zeros=zeros)
    if len(x_shape) != 2:
        raise ValueError(f"x must have shape (B, I) for one cell step; got shape {tuple(x_shape)}")
    batch, in_size = x_shape
    if in_size != p.input_size:
        raise ValueError(
            f"x must have shape (B, I) with I={p.input_size} (from params.w_ih); "
            f"got shape {tuple(x_shape)}"
        )
    named = {"x": x_dtype, "params": p.dtype}
    hidden = p.hidden_size
    for name, s in (("h", h), ("c", c)):
        if s is None:
            raise TypeError(f"{name} is required for cell(); pass zeros of shape (B, H) to start")
        s_shape, s_dtype = describe(s)
        _check_floating(name, s_dtype, dtypes)
        named[name] = s_dtype
        _check_shape(name, s_shape, (batch, hidden), f"(B, H) with B={batch}, H={hidden}")
    dtype = _check_same_dtype(named)
    if out is None:
        h_out, c_out = empty((batch, hidden), dtype), empty((batch, hidden), dtype)
    else:
        h_out, c_out = check_cell_out(out, batch, hidden, dtype, host=host, x=x, h=h, c=c, params=params)
    return CellArgs(
        x=convert(x), h=convert(h), c=convert(c), w_ih=p.w_ih, w_hh=p.w_hh, b_ih=p.b_ih,
        b_hh=p.b_hh, h_out=h_out, c_out=c_out, batch=batch, input_size=in_size,
        hidden_size=hidden, dtype=dtype,
    )


def _ok(a: Any, dtype: np.dtype, shape: tuple[int, ...]) -> bool:
    return type(a) is np.ndarray and a.dtype == dtype and a.shape == shape and a.flags.c_contiguous


def _fast_cell(x: Any, h: Any, c: Any, params: Any, out: Any, dtypes: Sequence[np.dtype]) -> CellArgs | None:
    """The common streaming case, checked in a few microseconds: contiguous NumPy arrays
    of one supported dtype with the right shapes.  Returns None to take the full path
    (which also produces the error messages)."""
    if type(x) is not np.ndarray or x.ndim != 2 or not x.flags.c_contiguous:
        return None
    dtype = x.dtype
    if dtype not in dtypes:
        return None
    try:
        w_ih, w_hh, b_ih, b_hh = params
    except (TypeError, ValueError):
        return None
    if type(w_hh) is not np.ndarray or w_hh.ndim != 2:
        return None
    hidden = w_hh.shape[1]
    batch, in_size = x.shape
    if not (_ok(w_hh, dtype, (4 * hidden, hidden)) and _ok(w_ih, dtype, (4 * hidden, in_size))
            and _ok(b_ih, dtype, (4 * hidden,)) and _ok(b_hh, dtype, (4 * hidden,))
            and _ok(h, dtype, (batch, hidden)) and _ok(c, dtype, (batch, hidden)) and hidden >= 1 and in_size >= 1):
        return None
    if out is None:
        h_out, c_out = np.empty((batch, hidden), dtype), np.empty((batch, hidden), dtype)
    else:
        if type(out) is not tuple or len(out) != 2:
            return None
        h_out, c_out = out
        if not (_ok(h_out, dtype, (batch, hidden)) and _ok(c_out, dtype, (batch, hidden))
                and h_out.flags.writeable and c_out.flags.writeable):
            return None
        share = np.may_share_memory
        if share(h_out, c_out):
            return None
        for o, own in ((h_out, h), (c_out, c)):
            if o is own:
                continue  # the documented in-place update
            if share(o, x) or share(o, h) or share(o, c) or share(o, w_ih) or share(o, w_hh) \
                    or share(o, b_ih) or share(o, b_hh):
                return None
        if (h_out is h and share(h_out, c)) or (c_out is c and share(c_out, h)):
            return None
    return CellArgs(x=x, h=h, c=c, w_ih=w_ih, w_hh=w_hh, b_ih=b_ih, b_hh=b_hh, h_out=h_out, c_out=c_out,
                    batch=batch, input_size=in_size, hidden_size=hidden, dtype=dtype)
