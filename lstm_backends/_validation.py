"""Validation of every argument of ``forward`` and ``cell``, in one place.

Validation only checks: it never converts, copies or allocates (the base class does
that next, through the backend's hooks).  It works on anything exposing ``shape`` and
``dtype``, or ``__cuda_array_interface__``, so device arrays are checked without
touching their data.  The rules:

* wrong shape -> ``ValueError`` naming the argument, the received and the expected shape;
* non-floating, unsupported or mixed dtypes -> ``TypeError`` saying how to fix it
  (nothing is silently up-cast);
* ``lengths`` of the wrong count, out of ``[0, T]`` or not integers -> ``ValueError``;
* ``out=`` arrays of the wrong shape or dtype, not C-contiguous or read-only -> an error;
* **one aliasing rule** for ``forward(out=)`` and ``cell(out=)``: an output may share
  memory with an input only when it *is* that input's own state — ``h_n``/``c_n`` may be
  ``h0``/``c0`` and ``h_out``/``c_out`` may be ``h``/``c`` (the same array, for an
  in-place state update).  Any other overlap, with an input or between two outputs,
  is a ``ValueError`` naming both.

Inputs that are Fortran-ordered or strided are accepted (the host backends' ``_input``
hook makes a C-contiguous copy); read-only inputs are used as they are, since kernels
never write to inputs.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._activations import Activation, normalize_activations
from ._params import LSTMParams
from ._prepared import PreparedParams

__all__ = [
    "CellOptions",
    "CellSpec",
    "ForwardSpec",
    "check_cell_out",
    "check_forward_out",
    "check_output_grads",
    "describe",
    "is_device_array",
    "validate_cell",
    "validate_forward",
    "validate_lengths",
    "validate_options",
    "validate_params",
]

DEFAULT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def is_device_array(a: Any) -> bool:
    """Whether ``a`` is a device array: ``__cuda_array_interface__`` (CuPy, PyTorch, Numba)
    or a device array of Numba's CUDA simulator (which has none but ``copy_to_host``)."""
    if a is None or isinstance(a, np.ndarray):
        return False
    return hasattr(a, "__cuda_array_interface__") or (hasattr(a, "copy_to_host") and hasattr(a, "shape"))


def describe(a: Any) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and NumPy dtype of a host array, device array or array-like, without copying
    device data.

    Parameters
    ----------
    a : array_like or device array

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
    if hasattr(a, "copy_to_host") and hasattr(a, "shape"):  # simulated Numba device arrays
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
        target = np.dtype(dtypes[0]).name if len(dtypes) else "float32"
        raise TypeError(
            f"{problem} (supported: {_fmt_dtypes(dtypes)}); convert it explicitly, "
            f"e.g. {name} = np.asarray({name}, dtype=np.{target})"
        )


def _check_same_dtype(named: dict[str, np.dtype]) -> np.dtype:
    items = list(named.items())
    first_name, first = items[0]
    for name, dtype in items[1:]:
        if dtype != first:
            raise TypeError(f"mixed dtypes: {first_name} is {first.name} but {name} is {dtype.name}; all arrays "
                            f"of one call must share one dtype (nothing is cast silently): {_cast_hint(named)}")
    return first


def _convert_params(dtype: np.dtype) -> str:
    return f"LSTMParams(*(None if p is None else np.asarray(p, dtype=np.{dtype.name}) for p in params))"


def _cast_hint(named: dict[str, np.dtype]) -> str:
    """How to make the arrays of a call agree: cast the others to the params' dtype, or convert the params."""
    wanted = named.get("params")
    if wanted is None:   # the params among themselves (params.w_ih first)
        return f"convert them all with {_convert_params(next(iter(named.values())))}"
    odd = [n for n, d in named.items() if d != wanted]
    casts = ", ".join(f"{n}.astype(np.{wanted.name})" for n in odd)
    others = {d for n, d in named.items() if n != "params"}
    if len(others) > 1:   # the params' dtype is the one to keep: some arrays already have it
        return f"cast with {casts}"
    other = others.pop()
    return f"cast with {casts}, or convert the params to {other.name} with {_convert_params(other)}"


def _check_shape(name: str, shape: tuple[int, ...], expected: tuple[int, ...], meaning: str) -> None:
    if tuple(shape) != tuple(expected):
        raise ValueError(
            f"{name} must have shape {meaning} = {tuple(expected)}; got shape {tuple(shape)}"
        )


def _check_placement(named: dict[str, Any], device_ok: bool) -> None:
    if device_ok:
        return
    for name, a in named.items():
        if is_device_array(a):
            raise TypeError(
                f"{name} is a device array ({type(a).__name__}), but this backend computes on the host: "
                "copy it to the host first (e.g. .copy_to_host(), .get() or .cpu().numpy()), or use a "
                "backend with the 'device-arrays' capability such as 'cuda'"
            )


def _unpack_params(params: Any) -> tuple[Any, Any, Any, Any, Any, Any]:
    """``(w_ih, w_hh, b_ih, b_hh, w_hr, w_peep)`` from an LSTMParams, a PreparedParams or a tuple of 4
    to 6 items."""
    if isinstance(params, PreparedParams):
        return tuple(params.params)  # type: ignore[return-value]
    if isinstance(params, LSTMParams):
        return tuple(params)  # type: ignore[return-value]
    try:
        n = len(params)
    except TypeError:
        n = -1
    if not 4 <= n <= 6 or isinstance(params, (str, bytes, np.ndarray)):
        raise TypeError(
            "params must be an LSTMParams or a 4-tuple (w_ih, w_hh, b_ih, b_hh), optionally followed by "
            f"w_hr and w_peep; got {type(params).__name__}"
            + (f" of length {n}" if n >= 0 and not isinstance(params, np.ndarray) else "")
        )
    return (*tuple(params), None, None)[:6]  # type: ignore[return-value]


@dataclass(frozen=True)
class ParamsSpec:
    """Checked parameters (the caller's objects, unconverted) and the sizes they imply.

    ``b_ih``/``b_hh`` are ``None`` for "no bias" (zeros); ``w_hr``/``w_peep`` are ``None``
    when absent, and ``proj_size`` is 0 without a projection.
    """

    w_ih: Any
    w_hh: Any
    b_ih: Any
    b_hh: Any
    input_size: int
    hidden_size: int
    dtype: np.dtype
    w_hr: Any = None
    w_peep: Any = None
    proj_size: int = 0
    prepared: Any = None   # the PreparedParams the arrays came from, if any

    @property
    def state_size(self) -> int:
        """Width of ``h``: ``proj_size`` with a projection, else ``hidden_size``."""
        return self.proj_size or self.hidden_size

    @property
    def arrays(self) -> tuple[Any, ...]:
        return tuple(a for a in (self.w_ih, self.w_hh, self.b_ih, self.b_hh, self.w_hr, self.w_peep)
                     if a is not None)

    def named(self) -> dict[str, Any]:
        """Name -> array of every parameter (``None`` when absent), for the aliasing rule."""
        return {"w_ih": self.w_ih, "w_hh": self.w_hh, "b_ih": self.b_ih, "b_hh": self.b_hh, "w_hr": self.w_hr,
                "w_peep": self.w_peep}


def validate_params(
    params: Any, *, dtypes: Sequence[np.dtype] = DEFAULT_DTYPES, device_ok: bool = False
) -> ParamsSpec:
    """Check ``(w_ih, w_hh, b_ih, b_hh[, w_hr[, w_peep]])`` and derive ``I``, ``H`` and ``P``.

    Parameters
    ----------
    params : LSTMParams, PreparedParams or tuple of 4 to 6 items
        ``w_ih`` (4H, I), ``w_hh`` (4H, H) — or (4H, P) with a projection —, ``b_ih`` (4H,),
        ``b_hh`` (4H,), ``w_hr`` (P, H) or ``None``, ``w_peep`` (3, H) or ``None``; a bias may
        be ``None`` for "no bias" (zeros).
    dtypes : sequence of numpy.dtype
        Dtypes the backend supports.
    device_ok : bool
        Whether device arrays are acceptable.

    Returns
    -------
    ParamsSpec
    """
    w_ih, w_hh, b_ih, b_hh, w_hr, w_peep = _unpack_params(params)
    if w_ih is None or w_hh is None:
        raise TypeError("params.w_ih and params.w_hh are required (got None)")
    named = {"w_ih": w_ih, "w_hh": w_hh, "b_ih": b_ih, "b_hh": b_hh, "w_hr": w_hr, "w_peep": w_peep}
    _check_placement({f"params.{k}": v for k, v in named.items()}, device_ok)
    meta = {k: describe(v) for k, v in named.items() if v is not None}
    for k, (_, dt) in meta.items():
        _check_floating(f"params.{k}", dt, dtypes)
    dtype = _check_same_dtype({f"params.{k}": dt for k, (_, dt) in meta.items()})

    hh_shape = meta["w_hh"][0]
    if w_hr is None:
        if len(hh_shape) != 2 or hh_shape[0] != 4 * hh_shape[1] or hh_shape[1] < 1:
            raise ValueError(
                "params.w_hh must have shape (4H, H) with H >= 1 (gates i, f, g, o stacked "
                f"along the first axis); got shape {tuple(hh_shape)}"
            )
        hidden, proj = hh_shape[1], 0
    else:
        if len(hh_shape) != 2 or hh_shape[0] % 4 or hh_shape[0] < 4:
            raise ValueError(
                "params.w_hh must have shape (4H, P) with a projection (gates i, f, g, o stacked along the "
                f"first axis; P from params.w_hr); got shape {tuple(hh_shape)}"
            )
        hidden = hh_shape[0] // 4
        hr_shape = meta["w_hr"][0]
        if len(hr_shape) != 2 or hr_shape[1] != hidden or hr_shape[0] < 1:
            raise ValueError(
                f"params.w_hr must have shape (P, H) with H={hidden} (from params.w_hh: 4H = {4 * hidden}) "
                f"and P >= 1; got shape {tuple(hr_shape)}"
            )
        proj = hr_shape[0]
        _check_shape("params.w_hh", hh_shape, (4 * hidden, proj),
                     f"(4H, P) with H={hidden}, P={proj} (P from params.w_hr)")
    ih_shape = meta["w_ih"][0]
    if len(ih_shape) != 2 or ih_shape[0] != 4 * hidden or ih_shape[1] < 1:
        raise ValueError(
            f"params.w_ih must have shape (4H, I) = ({4 * hidden}, I) with I >= 1 "
            f"(H={hidden} from w_hh); got shape {tuple(ih_shape)}"
        )
    for k in ("b_ih", "b_hh"):
        if k in meta:
            _check_shape(f"params.{k}", meta[k][0], (4 * hidden,), f"(4H,) with H={hidden}")
    if "w_peep" in meta:
        _check_shape("params.w_peep", meta["w_peep"][0], (3, hidden),
                     f"(3, H) with H={hidden} (peepholes of gates i, f, o)")
    return ParamsSpec(w_ih, w_hh, b_ih, b_hh, ih_shape[1], hidden, dtype, w_hr, w_peep, proj,
                      params if isinstance(params, PreparedParams) else None)


@dataclass(frozen=True)
class CellOptions:
    """Checked cell options: ``clip`` (a positive float or None), ``input_forget`` and
    ``activations`` (None for the defaults)."""

    clip: float | None = None
    input_forget: bool = False
    activations: tuple[Activation, Activation, Activation] | None = None


PLAIN = CellOptions()


def validate_options(clip: Any = None, input_forget: Any = False, activations: Any = None) -> CellOptions:
    """Check the cell options of ``forward``/``cell``/``forward_layers``.

    Parameters
    ----------
    clip : positive float or None
        Bound of every gate pre-activation.
    input_forget : bool
        Couple the gates: ``f = 1 - i``.
    activations : None or sequence of 3
        See :func:`lstm_backends._activations.normalize_activations`.

    Returns
    -------
    CellOptions
    """
    if clip is not None:
        if isinstance(clip, (bool, np.bool_)) or not isinstance(clip, (int, float, np.integer, np.floating)) \
                or not clip > 0:
            raise ValueError(f"clip must be a positive number (or None for no clipping); got {clip!r}")
        clip = float(clip)
    if not isinstance(input_forget, (bool, np.bool_)) and input_forget not in (0, 1):
        raise ValueError(f"input_forget must be True or False; got {input_forget!r}")
    return CellOptions(clip, bool(input_forget), normalize_activations(activations))


def validate_lengths(lengths: Any, batch: int, steps: int) -> np.ndarray | None:
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
        A host array (a copy only when the input was not one already).
    """
    if lengths is None:
        return None
    if is_device_array(lengths):
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


# ---------------------------------------------------------------------------- aliasing
def _host_base(a: Any) -> np.ndarray | None:
    """The NumPy array behind a host array or a simulated device array (else None)."""
    if isinstance(a, np.ndarray):
        return a
    ary = getattr(a, "_ary", None)  # Numba's simulated device arrays wrap one
    return ary if isinstance(ary, np.ndarray) else None


def _device_extent(a: Any) -> tuple[int, int, tuple[int, ...], tuple[int, ...] | None] | None:
    cai = getattr(a, "__cuda_array_interface__", None)
    if cai is None:
        return None
    start = int(cai["data"][0])
    shape = tuple(int(s) for s in cai["shape"])
    itemsize = np.dtype(cai["typestr"]).itemsize
    strides = cai.get("strides")
    if any(s == 0 for s in shape):
        return start, start, shape, strides
    if strides is None:
        span = int(np.prod(shape)) * itemsize
    else:
        span = sum((n - 1) * abs(s) for n, s in zip(shape, strides)) + itemsize
    return start, start + span, shape, strides


def _overlap(a: Any, b: Any) -> bool:
    """Whether two arrays (host or device) may share memory (bounds-based, like
    ``numpy.may_share_memory``)."""
    ha, hb = _host_base(a), _host_base(b)
    if ha is not None and hb is not None:
        return bool(np.may_share_memory(ha, hb))
    ea, eb = _device_extent(a), _device_extent(b)
    if ea is None or eb is None or ea[0] == ea[1] or eb[0] == eb[1]:
        return False
    return ea[0] < eb[1] and eb[0] < ea[1]


def _same_array(a: Any, b: Any) -> bool:
    """Whether ``a`` and ``b`` are one array: the same object, or the same memory with the
    same shape and strides (e.g. ``h`` and ``h[...]``)."""
    if a is b:
        return True
    ha, hb = _host_base(a), _host_base(b)
    if ha is not None and hb is not None:
        return (ha.__array_interface__["data"][0] == hb.__array_interface__["data"][0]
                and ha.shape == hb.shape and ha.strides == hb.strides)
    ea, eb = _device_extent(a), _device_extent(b)
    return ea is not None and ea == eb


def check_aliasing(outputs: dict[str, Any], inputs: dict[str, Any], own: dict[str, str]) -> None:
    """Apply the one aliasing rule: an output may overlap only its own state input, and
    only by being that very array.

    Parameters
    ----------
    outputs : dict of str to array
        Output name -> array.
    inputs : dict of str to array or None
        Input name -> array (``None`` entries are skipped).
    own : dict of str to str
        Output name -> the input it may be (e.g. ``{"h_n": "h0"}``).

    Raises
    ------
    ValueError
        Two outputs overlap, or an output overlaps an input other than by being its own state.
    """
    names = list(outputs)
    for k, o_name in enumerate(names):
        for other in names[k + 1:]:
            if _overlap(outputs[o_name], outputs[other]):
                raise ValueError(
                    f"out {o_name} and {other} overlap; pass separate arrays for every output"
                )
    for o_name, o in outputs.items():
        for i_name, a in inputs.items():
            if a is None or not _overlap(o, a):
                continue
            if own.get(o_name) == i_name and _same_array(o, a):
                continue  # the documented in-place state update
            allowed = ", ".join(f"{k}={v}" for k, v in own.items())
            raise ValueError(
                f"out {o_name} overlaps input {i_name}: an output may share memory with an input only "
                f"by being exactly its own state array ({allowed}) for an in-place update"
            )


def _check_out_array(name: str, arr: Any, shape: tuple[int, ...], dtype: np.dtype) -> None:
    if isinstance(arr, np.ndarray):
        host = True
    elif is_device_array(arr):
        host = False
    else:
        raise TypeError(f"{name} must be an array to write into (numpy.ndarray or a device array); "
                        f"got {type(arr).__name__}")
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
    elif not _device_c_contiguous(arr):
        raise ValueError(f"{name} must be C-contiguous to be written in place")


def _device_c_contiguous(a: Any) -> bool:
    cai = getattr(a, "__cuda_array_interface__", None)
    if cai is None:  # a simulated Numba device array
        check = getattr(a, "is_c_contiguous", None)
        return bool(check()) if callable(check) else True
    strides = cai.get("strides")
    if strides is None:
        return True
    shape = tuple(int(s) for s in cai["shape"])
    expected = np.dtype(cai["typestr"]).itemsize
    for n, s in zip(reversed(shape), reversed(tuple(strides))):
        if n > 1 and s != expected:
            return False
        expected *= n
    return True


def _unpack_out(out: Any, n: int, names: str) -> tuple[Any, ...]:
    if not isinstance(out, (tuple, list)) or len(out) != n:
        raise TypeError(f"out must be a tuple {names} of preallocated arrays")
    return tuple(out)


# ---------------------------------------------------------------------------- forward
@dataclass(frozen=True)
class ForwardSpec:
    """A checked ``forward`` call: the caller's objects (unconverted) and the sizes.

    ``lengths`` is a host int64 array (``T`` everywhere when the caller passed none);
    ``full`` says whether every row runs all ``T`` steps.  ``h0`` and ``y`` have
    ``state_size`` columns (``P`` with a projection), ``c0`` has ``hidden_size``.
    """

    x: Any
    params: ParamsSpec
    h0: Any
    c0: Any
    lengths: np.ndarray
    full: bool
    reverse: bool
    steps: int
    batch: int
    input_size: int
    hidden_size: int
    dtype: np.dtype

    @property
    def state_size(self) -> int:
        """Width of ``h`` and ``y``: ``P`` with a projection, else ``H``."""
        return self.params.state_size

    def inputs(self) -> dict[str, Any]:
        """Name -> array of every input (for the aliasing rule)."""
        return {"x": self.x, **self.params.named(), "h0": self.h0, "c0": self.c0}


def validate_forward(
    x: Any,
    params: Any,
    h0: Any = None,
    c0: Any = None,
    *,
    lengths: Any = None,
    reverse: bool = False,
    dtypes: Sequence[np.dtype] = DEFAULT_DTYPES,
    device_ok: bool = False,
) -> ForwardSpec:
    """Check the arguments of ``Backend.forward`` (no conversion, no allocation).

    Parameters
    ----------
    x : array, shape (T, B, I)
    params : LSTMParams or tuple of 4 to 6 items
    h0 : array, shape (B, S), or None for zeros (S = P with a projection, else H)
    c0 : array, shape (B, H), or None for zeros
    lengths : array_like of int, shape (B,), or None
    reverse : bool
    dtypes : sequence of numpy.dtype
        Dtypes the backend supports.
    device_ok : bool
        Whether device arrays are acceptable.

    Returns
    -------
    ForwardSpec
    """
    _check_placement({"x": x, "h0": h0, "c0": c0}, device_ok)
    x_shape, x_dtype = describe(x)
    _check_floating("x", x_dtype, dtypes)
    p = validate_params(params, dtypes=dtypes, device_ok=device_ok)
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
    for name, s, width in (("h0", h0, _state_width(p)), ("c0", c0, ("H", hidden))):
        if s is not None:
            s_shape, s_dtype = describe(s)
            _check_floating(name, s_dtype, dtypes)
            named[name] = s_dtype
            _check_shape(name, s_shape, (batch, width[1]), f"(B, {width[0]}) with B={batch}, {width[0]}={width[1]}")
    dtype = _check_same_dtype(named)
    lens = validate_lengths(lengths, batch, steps)
    full = lens is None or bool((lens == steps).all())
    if lens is None:
        lens = np.full(batch, steps, np.int64)
    return ForwardSpec(x, p, h0, c0, lens, full, bool(reverse), steps, batch, in_size, hidden, dtype)


def _state_width(p: ParamsSpec) -> tuple[str, int]:
    """The width of ``h`` and its letter: ``("P", P)`` with a projection, else ``("H", H)``."""
    return ("P", p.proj_size) if p.proj_size else ("H", p.hidden_size)


def check_forward_out(out: Any, spec: ForwardSpec) -> tuple[Any, Any, Any]:
    """Check ``forward``'s ``out=(y, h_n, c_n)``: shapes (T, B, S), (B, S), (B, H), the dtype,
    C order, writeability, and the aliasing rule (``h_n``/``c_n`` may be ``h0``/``c0``).

    Returns
    -------
    y, h_n, c_n
    """
    y, h_n, c_n = _unpack_out(out, 3, "(y, h_n, c_n)")
    t, b, h, s = spec.steps, spec.batch, spec.hidden_size, spec.state_size
    _check_out_array("out[0] (y)", y, (t, b, s), spec.dtype)
    _check_out_array("out[1] (h_n)", h_n, (b, s), spec.dtype)
    _check_out_array("out[2] (c_n)", c_n, (b, h), spec.dtype)
    check_aliasing({"y": y, "h_n": h_n, "c_n": c_n}, spec.inputs(), {"h_n": "h0", "c_n": "c0"})
    return y, h_n, c_n


# ---------------------------------------------------------------------------- cell
@dataclass(frozen=True)
class CellSpec:
    """A checked ``cell`` call: the caller's objects (unconverted) and the sizes."""

    x: Any
    params: ParamsSpec
    h: Any
    c: Any
    batch: int
    input_size: int
    hidden_size: int
    dtype: np.dtype

    @property
    def state_size(self) -> int:
        """Width of ``h``: ``P`` with a projection, else ``H``."""
        return self.params.state_size

    def inputs(self) -> dict[str, Any]:
        """Name -> array of every input (for the aliasing rule)."""
        return {"x": self.x, **self.params.named(), "h": self.h, "c": self.c}


def validate_cell(
    x: Any,
    h: Any,
    c: Any,
    params: Any,
    *,
    dtypes: Sequence[np.dtype] = DEFAULT_DTYPES,
    device_ok: bool = False,
) -> CellSpec:
    """Check the arguments of ``Backend.cell`` (no conversion, no allocation).

    Parameters
    ----------
    x : array, shape (B, I)
    h : array, shape (B, S) (S = P with a projection, else H)
    c : array, shape (B, H)
    params : LSTMParams or tuple of 4 to 6 items
    dtypes : sequence of numpy.dtype
    device_ok : bool

    Returns
    -------
    CellSpec
    """
    _check_placement({"x": x, "h": h, "c": c}, device_ok)
    x_shape, x_dtype = describe(x)
    _check_floating("x", x_dtype, dtypes)
    p = validate_params(params, dtypes=dtypes, device_ok=device_ok)
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
    for name, s, width in (("h", h, _state_width(p)), ("c", c, ("H", hidden))):
        if s is None:
            raise TypeError(f"{name} is required for cell(); pass zeros of shape (B, {width[0]}) to start")
        s_shape, s_dtype = describe(s)
        _check_floating(name, s_dtype, dtypes)
        named[name] = s_dtype
        _check_shape(name, s_shape, (batch, width[1]), f"(B, {width[0]}) with B={batch}, {width[0]}={width[1]}")
    dtype = _check_same_dtype(named)
    return CellSpec(x, p, h, c, batch, in_size, hidden, dtype)


def check_cell_out(out: Any, spec: CellSpec) -> tuple[Any, Any]:
    """Check ``cell``'s ``out=(h_out, c_out)``: shapes (B, S), (B, H), the dtype, C order,
    writeability, and the aliasing rule (``h_out``/``c_out`` may be ``h``/``c``).

    Returns
    -------
    h_out, c_out
    """
    h_out, c_out = _unpack_out(out, 2, "(h_out, c_out)")
    b, h = spec.batch, spec.hidden_size
    _check_out_array("out[0] (h_out)", h_out, (b, spec.state_size), spec.dtype)
    _check_out_array("out[1] (c_out)", c_out, (b, h), spec.dtype)
    check_aliasing({"h_out": h_out, "c_out": c_out}, spec.inputs(), {"h_out": "h", "c_out": "c"})
    return h_out, c_out


_accepted = threading.local()  # fast_cell's last accepted (h, c, weights, outputs), as weak references


def _ok(a: Any, dtype: np.dtype, shape: tuple[int, ...]) -> bool:
    return type(a) is np.ndarray and a.dtype == dtype and a.shape == shape and a.flags.c_contiguous


def fast_cell(x: Any, h: Any, c: Any, params: Any, out: Any, dtypes: Sequence[np.dtype]) -> tuple | None:
    """The common streaming case, checked in a few microseconds: C-contiguous NumPy arrays of
    one supported dtype with the right shapes and biases, and ``out`` either None or two
    writeable arrays that obey the aliasing rule.

    Returns
    -------
    tuple (x, h, c, w_ih, w_hh, b_ih, b_hh, h_out_or_None, c_out_or_None) or None
        ``None`` sends the call down the full path, which gives the error messages.
    """
    if type(x) is not np.ndarray or x.ndim != 2 or not x.flags.c_contiguous:
        return None
    dtype = x.dtype
    if dtype not in dtypes:
        return None
    if type(params) is LSTMParams:
        w_ih, w_hh, b_ih, b_hh, w_hr, w_peep = params
        if w_hr is not None or w_peep is not None:
            return None  # projection / peepholes: the full path checks them
    else:
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
        return x, h, c, w_ih, w_hh, b_ih, b_hh, None, None
    if type(out) is not tuple or len(out) != 2:
        return None
    h_out, c_out = out
    if not (_ok(h_out, dtype, (batch, hidden)) and _ok(c_out, dtype, (batch, hidden))
            and h_out.flags.writeable and c_out.flags.writeable):
        return None
    share = np.may_share_memory
    if share(h_out, x) or share(c_out, x):
        return None
    # The rest depends only on these arrays, which a streaming loop passes again and again:
    # an accepted set is remembered (weakly).  Sound because an ndarray's buffer never moves
    # to memory another live array uses, and shapes, dtypes and contiguity (hence extents)
    # were checked above on this call.
    stable = (h, c, w_ih, w_hh, b_ih, b_hh, h_out, c_out)
    last = getattr(_accepted, "refs", None)
    if last is not None and all(r() is a for r, a in zip(last, stable)):
        return x, h, c, w_ih, w_hh, b_ih, b_hh, h_out, c_out
    if share(h_out, c_out):
        return None
    for o, own, other in ((h_out, h, c), (c_out, c, h)):
        if not (o is own or not share(o, own)):
            return None
        if share(o, other) or share(o, w_ih) or share(o, w_hh) or share(o, b_ih) or share(o, b_hh):
            return None
    _accepted.refs = tuple(weakref.ref(a) for a in stable)
    return x, h, c, w_ih, w_hh, b_ih, b_hh, h_out, c_out


# ---------------------------------------------------------------------------- backward
def check_output_grads(
    named: dict[str, tuple[Any, tuple[int, ...], str]], dtype: np.dtype, device_ok: bool, source: str
) -> None:
    """Check the output gradients of a ``backward`` call against the call that recorded the tape.

    Parameters
    ----------
    named : dict of str to (array or None, expected shape, meaning)
        E.g. ``{"dy": (dy, (T, B, S), "(T, B, S)")}``; ``None`` arrays (zeros) are skipped.
    dtype : numpy.dtype
        The dtype of the recorded call.
    device_ok : bool
        Whether device arrays are acceptable.
    source : str
        What recorded the tape, for messages (e.g. ``"forward_train"``).

    Raises
    ------
    ValueError
        A wrong shape (named, with both shapes).
    TypeError
        A wrong dtype, or a device array on a host backend.
    """
    _check_placement({k: v[0] for k, v in named.items()}, device_ok)
    for name, (a, shape, meaning) in named.items():
        if a is None:
            continue
        got_shape, got_dtype = describe(a)
        _check_shape(name, got_shape, shape, f"{meaning} (that of the {source} call's output)")
        if got_dtype != dtype:
            raise TypeError(f"{name} has dtype {got_dtype.name} but the {source} call computed in {dtype.name}; "
                            f"pass {name}.astype(np.{dtype.name})")
