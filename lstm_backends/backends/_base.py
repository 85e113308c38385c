"""The backend protocol: one class per backend, the same methods everywhere.

The base class owns the flow of every call — validate, convert and allocate, run the
kernel, finish — and a backend fills in small pieces:

Kernels (over validated, converted, preallocated arrays; see :mod:`lstm_backends._args`)
    ``_forward(args: ForwardArgs)`` writes ``args.y`` (valid steps only), ``args.h_n``,
    ``args.c_n`` for one layer and direction; ``_cell(args: CellArgs)`` writes
    ``args.h_out``, ``args.c_out``.

Hooks (host defaults here; a device backend overrides them, never the public methods)
    ``_call_context(kind, x, options)``: per-call state, e.g. a stream, from
    backend-specific keyword options (handed to kernels as ``args.context``);
    ``_input(a, ctx)``: an input as the array a kernel reads;
    ``_empty``/``_zeros(shape, dtype, ctx)``: allocation; ``_output(a, ctx)``: a caller's
    ``out=`` array as the array a kernel writes; ``_copy(dst, src, ctx)``;
    ``_zero_past_lengths(y, lengths, ctx)``; ``_hand_back(results, out, ctx)``: the
    kernel's outputs as the caller receives them.

The base class does, once and in one place: validation (which never allocates), the
aliasing rule for ``out=``, empty problems (``T = 0`` or ``B = 0``), zeroing ``y`` past each
row's length, and the stacked / bidirectional composition (:meth:`Backend.forward_layers`),
in which each direction writes straight into its half of the layer's output.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, NamedTuple

import numpy as np

from .._args import CAPABILITIES, CellArgs, ForwardArgs
from .._errors import UnsupportedFeatureError
from .._params import LSTMParams
from .._validation import (
    DEFAULT_DTYPES,
    ForwardSpec,
    _check_placement,
    check_cell_out,
    check_forward_out,
    describe,
    fast_cell,
    validate_cell,
    validate_forward,
)

__all__ = ["Availability", "Backend"]


class Availability(NamedTuple):
    """Whether a backend can run here, and if not, why.

    Truthy exactly when ``available`` is true, so ``if Backend.is_available():`` works.
    """

    available: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return bool(self.available)


class Backend:
    """Base class of every backend (built-in or plugin).

    Attributes
    ----------
    name : str
        Registry name (``"numpy"``, ``"numba"``, …).
    description : str
        One line saying what it is.
    dtypes : tuple of numpy.dtype
        Dtypes it computes in.
    capabilities : frozenset of str
        What it can do, from :data:`lstm_backends.CAPABILITIES`; a call that needs a
        missing one raises :class:`~lstm_backends.UnsupportedFeatureError`.
    install_hint : str
        What to do when unavailable (e.g. ``pip install "lstm-backends[cuda]"``).
    url : str
        Where to read more (shown by ``lstm-backends info``).
    auto_priority : int or None
        Rank for ``get_backend("auto")`` (higher wins); ``None``: never picked by ``auto``.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    dtypes: ClassVar[tuple[np.dtype, ...]] = DEFAULT_DTYPES
    capabilities: ClassVar[frozenset[str]] = frozenset({"forward", "cell"})
    install_hint: ClassVar[str] = ""
    url: ClassVar[str] = ""
    auto_priority: ClassVar[int | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        caps = cls.__dict__.get("capabilities")
        if caps is not None:
            unknown = set(caps) - CAPABILITIES
            if unknown:
                raise TypeError(
                    f"{cls.__qualname__}.capabilities has unknown entries {sorted(unknown)}; "
                    f"known: {', '.join(sorted(CAPABILITIES))}"
                )
            cls.capabilities = frozenset(caps)

    # ------------------------------------------------------------------ metadata
    @classmethod
    def is_available(cls) -> Availability:
        """Whether this backend can run here; never imports heavy modules or has side effects.

        Returns
        -------
        Availability
            ``(available, reason)``; ``reason`` explains an unavailable backend.
        """
        return Availability(True, "")

    @classmethod
    def auto_eligible(cls) -> bool:
        """Whether ``auto`` may pick this (available) backend, e.g. not a simulator."""
        return True

    @classmethod
    def version(cls) -> str:
        """Version of the library doing the work (e.g. Numba's); ``""`` when not applicable."""
        return ""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} backend {self.name!r}>"

    def _require(self, feature: str) -> None:
        if feature not in self.capabilities:
            from .._registry import backends_with

            others = [n for n in backends_with(feature) if n != self.name]
            raise UnsupportedFeatureError(
                f"backend {self.name!r} does not support {feature!r} (its capabilities: "
                f"{', '.join(sorted(self.capabilities)) or 'none'})"
                + (f"; backends that do: {', '.join(others)}" if others else "")
            )

    # ------------------------------------------------------------------ public API
    def forward(
        self,
        x: Any,
        params: LSTMParams | Sequence[Any],
        h0: Any = None,
        c0: Any = None,
        *,
        lengths: Any = None,
        reverse: bool = False,
        out: tuple[Any, Any, Any] | None = None,
        **options: Any,
    ) -> tuple[Any, Any, Any]:
        """Run one LSTM layer in one direction over a whole sequence.

        Parameters
        ----------
        x : array, shape (T, B, I)
            Time-major input.
        params : LSTMParams or 4-tuple
            ``w_ih`` (4H, I), ``w_hh`` (4H, H), ``b_ih`` (4H,), ``b_hh`` (4H,), gates i, f, g, o;
            a bias may be ``None`` (zeros).
        h0, c0 : array, shape (B, H), optional
            Initial hidden and cell state; zeros when omitted.
        lengths : array_like of int, shape (B,), optional
            Valid steps per batch row, ``0 <= lengths[b] <= T``.  Row b runs steps
            ``t < lengths[b]`` only; ``y[t, b] = 0`` beyond; ``h_n[b], c_n[b]`` are the
            state after its last valid step (the initial state when the length is 0).
        reverse : bool
            Run each row backwards over its valid part, ``t = lengths[b]-1 … 0``.
        out : tuple (y, h_n, c_n), optional
            Preallocated C-contiguous, writeable outputs of shapes (T, B, H), (B, H), (B, H).
            No output may overlap an input, except that ``h_n`` may be ``h0`` and ``c_n``
            may be ``c0`` (the very arrays: the state advanced in place).
        **options
            Backend-specific keyword options (e.g. ``stream=`` for ``cuda``); a backend
            refuses options it does not know with ``TypeError``.

        Returns
        -------
        y : array, shape (T, B, H)
            Hidden state at every step.
        h_n, c_n : array, shape (B, H)
            Final hidden and cell state.
        """
        self._require("forward")
        ctx = self._call_context("forward", x, options)
        spec = self._validate_forward(x, params, h0, c0, lengths, reverse)
        user_out = None if out is None else check_forward_out(out, spec)
        if user_out is None:
            shapes = ((spec.steps, spec.batch, spec.hidden_size), (spec.batch, spec.hidden_size))
            y = self._empty(shapes[0], spec.dtype, ctx)
            h_n, c_n = self._empty(shapes[1], spec.dtype, ctx), self._empty(shapes[1], spec.dtype, ctx)
        else:
            y, h_n, c_n = (self._output(a, ctx) for a in user_out)
        args = self._forward_args(spec, ctx, self._input(x, ctx), y, h_n, c_n)
        self._run_forward(args, ctx)
        return self._hand_back((args.y, args.h_n, args.c_n), user_out, ctx)

    def cell(
        self,
        x: Any,
        h: Any,
        c: Any,
        params: LSTMParams | Sequence[Any],
        *,
        out: tuple[Any, Any] | None = None,
        **options: Any,
    ) -> tuple[Any, Any]:
        """Advance the LSTM by one step (streaming inference).

        Parameters
        ----------
        x : array, shape (B, I)
            Input at this step.
        h, c : array, shape (B, H)
            Current hidden and cell state.
        params : LSTMParams or 4-tuple
            As for :meth:`forward`.
        out : tuple (h_out, c_out), optional
            Preallocated C-contiguous, writeable outputs of shape (B, H).  They may be ``h``
            and ``c`` themselves (the very arrays) to update the state in place; no other
            overlap with an input or with each other is allowed.
        **options
            Backend-specific keyword options (e.g. ``stream=`` for ``cuda``).

        Returns
        -------
        h_new, c_new : array, shape (B, H)
        """
        self._require("cell")
        if not options and "device-arrays" not in self.capabilities:
            fast = fast_cell(x, h, c, params, out, self.dtypes)
            if fast is not None:  # contiguous NumPy arrays: checked in a few microseconds
                x, h, c, w_ih, w_hh, b_ih, b_hh, h_out, c_out = fast
                batch, hidden = h.shape
                if h_out is None:
                    h_out, c_out = np.empty((batch, hidden), x.dtype), np.empty((batch, hidden), x.dtype)
                if batch:
                    self._cell(CellArgs(x, h, c, w_ih, w_hh, b_ih, b_hh, h_out, c_out, batch, x.shape[1], hidden,
                                        x.dtype))
                return h_out, c_out
        ctx = self._call_context("cell", x, options)
        spec = validate_cell(x, h, c, params, dtypes=self.dtypes, device_ok=self._device_ok)
        user_out = None if out is None else check_cell_out(out, spec)
        shape = (spec.batch, spec.hidden_size)
        if user_out is None:
            h_out, c_out = self._empty(shape, spec.dtype, ctx), self._empty(shape, spec.dtype, ctx)
        else:
            h_out, c_out = (self._output(a, ctx) for a in user_out)
        p = spec.params
        b_ih, b_hh = (self._input(b, ctx) if b is not None else self._zeros((4 * spec.hidden_size,), spec.dtype, ctx)
                      for b in (p.b_ih, p.b_hh))
        args = CellArgs(
            self._input(x, ctx), self._input(h, ctx), self._input(c, ctx), self._input(p.w_ih, ctx),
            self._input(p.w_hh, ctx), b_ih, b_hh, h_out, c_out, spec.batch, spec.input_size,
            spec.hidden_size, spec.dtype, ctx,
        )
        if args.batch:
            self._cell(args)
        return self._hand_back((args.h_out, args.c_out), user_out, ctx)

    def forward_layers(
        self,
        x: Any,
        layers: Sequence[Sequence[LSTMParams]],
        h0: Any = None,
        c0: Any = None,
        *,
        lengths: Any = None,
        **options: Any,
    ) -> tuple[Any, Any, Any]:
        """Run a stacked, optionally bidirectional LSTM, composed from the ``_forward`` kernel.

        Each direction writes straight into its half of the layer's (T, B, D * H) output,
        which is the next layer's input; for a device backend every intermediate stays on
        the device and only the final outputs are handed back.

        Parameters
        ----------
        x : array, shape (T, B, I)
        layers : sequence over layers of sequences over directions of LSTMParams
            ``layers[l][0]`` runs forward, ``layers[l][1]`` (if present) in reverse.
            Layer ``l > 0`` takes inputs of size ``H * num_directions``.
        h0, c0 : array, shape (L * D, B, H), optional
            Initial states, index ``l * D + d`` like PyTorch.
        lengths : array_like of int, shape (B,), optional
        **options
            Backend-specific keyword options, as for :meth:`forward`.

        Returns
        -------
        y : array, shape (T, B, D * H)
        h_n, c_n : array, shape (L * D, B, H)
        """
        self._require("forward")
        num_layers, num_dirs = _stack_shape(layers)
        ctx = self._call_context("forward_layers", x, options)
        layer_input = x
        y_layer = h_all = c_all = None
        for layer_index, layer in enumerate(layers):
            for d, p in enumerate(layer):
                k = layer_index * num_dirs + d
                spec = self._validate_forward(layer_input, p, None, None, lengths, d == 1)
                hidden, dtype = spec.hidden_size, spec.dtype
                if h_all is None:
                    stack_shape = (num_layers * num_dirs, spec.batch, hidden)
                    states = _check_stack_states(h0, c0, stack_shape, self._device_ok)
                    h0_all, c0_all = (None if s is None else self._input(s, ctx) for s in states)
                    h_all, c_all = self._empty(stack_shape, dtype, ctx), self._empty(stack_shape, dtype, ctx)
                elif h_all.shape[2] != hidden:
                    raise ValueError(f"every layer and direction must have the same hidden size; layers[0][0] has "
                                     f"H={h_all.shape[2]}, layers[{layer_index}][{d}] has H={hidden}")
                if d == 0:
                    x_kernel = self._input(layer_input, ctx)
                    y_layer = self._empty((spec.steps, spec.batch, num_dirs * hidden), dtype, ctx)
                y = y_layer if num_dirs == 1 else y_layer[:, :, d * hidden:(d + 1) * hidden]
                for name, s in (("h0", h0_all), ("c0", c0_all)):
                    if s is not None:
                        _check_state_dtype(name, describe(s)[1], dtype)
                args = self._forward_args(spec, ctx, x_kernel, y, h_all[k], c_all[k],
                                          None if h0_all is None else h0_all[k],
                                          None if c0_all is None else c0_all[k])
                self._run_forward(args, ctx)
            layer_input = y_layer
        return self._hand_back((y_layer, h_all, c_all), None, ctx)

    # ------------------------------------------------------------------ the flow
    @property
    def _device_ok(self) -> bool:
        return "device-arrays" in self.capabilities

    def _validate_forward(self, x: Any, params: Any, h0: Any, c0: Any, lengths: Any, reverse: bool) -> ForwardSpec:
        return validate_forward(x, params, h0, c0, lengths=lengths, reverse=reverse, dtypes=self.dtypes,
                                device_ok=self._device_ok)

    def _forward_args(self, spec: ForwardSpec, ctx: Any, x: Any, y: Any, h_n: Any, c_n: Any,
                      h0: Any = None, c0: Any = None) -> ForwardArgs:
        """Convert the inputs of a checked call (x already converted) and bundle them with the outputs."""
        p = spec.params
        hidden, dtype = spec.hidden_size, spec.dtype
        state = (spec.batch, hidden)
        h0 = h0 if h0 is not None else (self._input(spec.h0, ctx) if spec.h0 is not None
                                        else self._zeros(state, dtype, ctx))
        c0 = c0 if c0 is not None else (self._input(spec.c0, ctx) if spec.c0 is not None
                                        else self._zeros(state, dtype, ctx))
        b_ih, b_hh = (self._input(b, ctx) if b is not None else self._zeros((4 * hidden,), dtype, ctx)
                      for b in (p.b_ih, p.b_hh))
        return ForwardArgs(
            x=x, w_ih=self._input(p.w_ih, ctx), w_hh=self._input(p.w_hh, ctx), b_ih=b_ih, b_hh=b_hh,
            h0=h0, c0=c0, lengths=spec.lengths, reverse=spec.reverse, y=y, h_n=h_n, c_n=c_n,
            steps=spec.steps, batch=spec.batch, input_size=spec.input_size, hidden_size=hidden,
            dtype=dtype, full=spec.full, context=ctx,
        )

    def _run_forward(self, args: ForwardArgs, ctx: Any) -> None:
        """Empty problems, the kernel, and zeros past each row's length."""
        if args.steps == 0 or args.batch == 0:
            self._copy(args.h_n, args.h0, ctx)
            self._copy(args.c_n, args.c0, ctx)
            return
        self._forward(args)
        if not args.full:
            self._zero_past_lengths(args.y, args.lengths, ctx)

    # ------------------------------------------------------------------ kernels
    def _forward(self, args: ForwardArgs) -> None:
        """Write ``args.y`` (valid steps), ``args.h_n``, ``args.c_n``; see :class:`~lstm_backends.ForwardArgs`."""
        raise NotImplementedError(f"backend {self.name!r} declares 'forward' but does not implement _forward")

    def _cell(self, args: CellArgs) -> None:
        """Write ``args.h_out``, ``args.c_out``; see :class:`~lstm_backends.CellArgs`."""
        raise NotImplementedError(f"backend {self.name!r} declares 'cell' but does not implement _cell")

    # ------------------------------------------------------------------ hooks (host defaults)
    def _call_context(self, kind: str, x: Any, options: dict[str, Any]) -> Any:
        """Per-call state (``kind``: ``"forward"``, ``"cell"`` or ``"forward_layers"``) from
        backend-specific keyword options; host backends take none."""
        if options:
            raise TypeError(
                f"backend {self.name!r} takes no option {', '.join(map(repr, options))} "
                "(backend-specific options such as stream= belong to device backends)"
            )
        return None

    def _input(self, a: Any, ctx: Any) -> Any:
        """A checked input as the array kernels read: C-contiguous (copied only when it is not)."""
        return np.ascontiguousarray(a)

    def _empty(self, shape: tuple[int, ...], dtype: np.dtype, ctx: Any) -> Any:
        return np.empty(shape, dtype)

    def _zeros(self, shape: tuple[int, ...], dtype: np.dtype, ctx: Any) -> Any:
        return np.zeros(shape, dtype)

    def _output(self, a: Any, ctx: Any) -> Any:
        """A caller's (checked) ``out=`` array as the array the kernel writes."""
        if not isinstance(a, np.ndarray):
            raise TypeError(f"backend {self.name!r} writes into numpy.ndarray outputs; got {type(a).__name__}")
        return a

    def _copy(self, dst: Any, src: Any, ctx: Any) -> None:
        if dst is not src:
            dst[...] = src

    def _zero_past_lengths(self, y: Any, lengths: np.ndarray, ctx: Any) -> None:
        """``y[t, b] = 0`` for ``t >= lengths[b]``."""
        y[np.arange(y.shape[0])[:, None] >= lengths[None, :]] = 0

    def _hand_back(self, results: tuple[Any, ...], out: tuple[Any, ...] | None, ctx: Any) -> tuple[Any, ...]:
        """The kernel's outputs as the caller receives them (the ``out=`` arrays when given)."""
        return results


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


def _check_stack_states(h0: Any, c0: Any, shape: tuple[int, int, int], device_ok: bool) -> tuple[Any, Any]:
    _check_placement({"h0": h0, "c0": c0}, device_ok)
    for name, s in (("h0", h0), ("c0", c0)):
        if s is not None:
            got = tuple(describe(s)[0])
            if got != shape:
                raise ValueError(f"{name} must have shape (L * D, B, H) = {shape}; got shape {got}")
    return h0, c0


def _check_state_dtype(name: str, dtype: np.dtype, expected: np.dtype) -> None:
    if dtype != expected:
        raise TypeError(f"mixed dtypes: {name} is {dtype.name} but x and params are {expected.name}; "
                        f"cast with .astype(np.{expected.name})")
