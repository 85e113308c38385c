"""Checks the backend protocol makes beyond :mod:`lstm_backends._validation`: stacks of layers
(their shape, states and per-direction options), tapes handed back to ``backward``, the optional
features a call asks for, and the dtype of a stack's states."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from .._activations import describe_activations
from .._args import StackTape, Tape
from .._validation import CellOptions, ParamsSpec, _check_placement, describe, validate_options


def _stack_shape(layers: Any) -> tuple[int, int]:
    try:
        num_layers = len(layers)
        dirs = [len(layer) for layer in layers]
    except TypeError:
        raise TypeError("layers must be a sequence (over layers) of sequences (over directions) of LSTMParams") \
            from None
    if num_layers == 0 or dirs[0] not in (1, 2) or any(d != dirs[0] for d in dirs):
        raise ValueError(
            "layers must hold at least one layer, each with the same number of directions (1 or 2); "
            f"got directions per layer {dirs}"
        )
    return num_layers, dirs[0]


def _check_stack_states(h0: Any, c0: Any, h_shape: tuple[int, int, int], c_shape: tuple[int, int, int],
                        device_ok: bool) -> tuple[Any, Any]:
    _check_placement({"h0": h0, "c0": c0}, device_ok)
    h_letter = "H" if h_shape == c_shape else "P"
    for name, s, shape, letter in (("h0", h0, h_shape, h_letter), ("c0", c0, c_shape, "H")):
        if s is not None:
            got = tuple(describe(s)[0])
            if got != shape:
                raise ValueError(f"{name} must have shape (L * D, B, {letter}) = {shape}; got shape {got}")
    return h0, c0


def _asked_features(p: ParamsSpec, opts: CellOptions) -> Iterator[tuple[str, str]]:
    """(capability, what the call asked for) of every optional feature a call uses."""
    if p.prepared is not None and p.prepared.precision is not None:
        yield p.prepared.precision, f"params prepared with precision={p.prepared.precision!r}"
    if p.w_hr is not None:
        yield "projection", f"params.w_hr (a projection to P={p.proj_size}, LSTMP)"
    if p.w_peep is not None:
        yield "peephole", "params.w_peep (peepholes)"
    if opts.clip is not None:
        yield "clip", f"clip={opts.clip:g}"
    if opts.input_forget:
        yield "clip", "input_forget=True"
    if opts.activations is not None:
        yield "activations", f"the activations {describe_activations(opts.activations)}"


def _stack_options(layers: Any, clip: Any, input_forget: Any, activations: Any) -> list[CellOptions]:
    """The checked cell options of a stack, one per direction (``layers`` checked too)."""
    _, num_dirs = _stack_shape(layers)
    return [validate_options(clip, input_forget, a) for a in _split_activations(activations, num_dirs)]


def _check_tape(tape: Any, kind: type, backend: str, recorder: str, method: str) -> None:
    """``tape`` must be a ``kind`` recorded by ``backend``."""
    if not isinstance(tape, kind):
        hint = ""
        if isinstance(tape, (Tape, StackTape)):
            other = "backward" if isinstance(tape, Tape) else "backward_layers (or LSTM.backward)"
            hint = f"; a {type(tape).__name__} goes to {other}"
        raise TypeError(f"tape must be the {kind.__name__} returned by {recorder}; got {type(tape).__name__}{hint}")
    if tape.backend != backend:
        raise ValueError(f"tape was recorded by backend {tape.backend!r}, not {backend!r}: pass it to that backend's "
                         f"{method} (a tape holds that backend's arrays)")


def _split_activations(activations: Any, num_dirs: int) -> list[Any]:
    """``activations`` of :meth:`Backend.forward_layers` as one ``(f, g, h)`` (or None) per direction."""
    if activations is None:
        return [None] * num_dirs
    if isinstance(activations, str) or not isinstance(activations, Sequence):
        raise ValueError(f"activations must be a sequence of 3 (or 3 * num_directions) functions; got {activations!r}")
    if len(activations) == 3:
        return [activations] * num_dirs
    if len(activations) == 3 * num_dirs:
        return [activations[3 * d: 3 * d + 3] for d in range(num_dirs)]
    raise ValueError(f"activations must list 3 functions (f, g, h), or 3 per direction ({3 * num_dirs}); "
                     f"got {len(activations)}")


def _check_state_dtype(name: str, dtype: np.dtype, expected: np.dtype) -> None:
    if dtype != expected:
        raise TypeError(f"mixed dtypes: {name} is {dtype.name} but x and params are {expected.name}; "
                        f"cast with {name}.astype(np.{expected.name})")
