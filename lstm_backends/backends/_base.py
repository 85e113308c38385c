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
aliasing rule for ``out=``, the capability check of every optional feature (projection,
peepholes, clip / input_forget, activations: refused with
:class:`~lstm_backends.UnsupportedFeatureError` when the backend lacks it), empty problems
(``T = 0`` or ``B = 0``), zeroing ``y`` past each row's length, and the stacked /
bidirectional composition (:meth:`Backend.forward_layers`), in which each direction writes
straight into its part of the layer's output.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, NamedTuple

import numpy as np

from .._activations import describe_activations
from .._args import CAPABILITIES, CellArgs, ForwardArgs
from .._errors import UnsupportedFeatureError
from .._params import LSTMParams
from .._validation import (
    DEFAULT_DTYPES,
    PLAIN,
    CellOptions,
    ForwardSpec,
    ParamsSpec,
    _check_placement,
    check_cell_out,
    check_forward_out,
    describe,
    fast_cell,
    validate_cell,
    validate_forward,
    validate_options,
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
    def test_variants(cls) -> dict[str, dict[str, Any]]:
        """Constructor keyword arguments forcing each internal path of this backend, by label.

        A backend whose kernels dispatch between several paths (e.g. by problem size) lists
        here how to force each one; the conformance suite and the shared tests then run on
        every one (``NAME[label]``), so no path goes untested because the small test sizes
        never select it.  Empty by default.

        Returns
        -------
        dict of str to dict
        """
        return {}

    @classmethod
    def version(cls) -> str:
        """Version of the library doing the work (e.g. Numba's); ``""`` when not applicable."""
        return ""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} backend {self.name!r}>"

    def _require(self, feature: str, what: str | None = None) -> None:
        """Raise :class:`~lstm_backends.UnsupportedFeatureError` unless ``feature`` is a capability.

        ``what`` names what the call asked for (e.g. ``"clip=3"``); the message then names the
        capability too.
        """
        if feature not in self.capabilities:
            from .._registry import backends_with

            others = [n for n in backends_with(feature) if n != self.name]
            asked = f"{what}, capability {feature!r}" if what else repr(feature)
            raise UnsupportedFeatureError(
                f"backend {self.name!r} does not support {asked} (its capabilities: "
                f"{', '.join(sorted(self.capabilities)) or 'none'})"
                + (f"; backends that do: {', '.join(others)}" if others else "; no registered backend does")
            )

    def _require_features(self, p: ParamsSpec, opts: CellOptions) -> None:
        """Refuse every optional feature of a call that this backend lacks (never a silent fallback)."""
        if p.w_hr is not None:
            self._require("projection", f"params.w_hr (a projection to P={p.proj_size}, LSTMP)")
        if p.w_peep is not None:
            self._require("peephole", "params.w_peep (peepholes)")
        if opts.clip is not None:
            self._require("clip", f"clip={opts.clip:g}")
        if opts.input_forget:
            self._require("clip", "input_forget=True")
        if opts.activations is not None:
            self._require("activations", f"the activations {describe_activations(opts.activations)}")

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
        clip: float | None = None,
        input_forget: bool = False,
        activations: Sequence[Any] | None = None,
        **options: Any,
    ) -> tuple[Any, Any, Any]:
        """Run one LSTM layer in one direction over a whole sequence.

        ``S`` below is the width of ``h``: ``P`` with a projection (``params.w_hr``), else ``H``.

        Parameters
        ----------
        x : array, shape (T, B, I)
            Time-major input.
        params : LSTMParams or tuple of 4 to 6 items
            ``w_ih`` (4H, I), ``w_hh`` (4H, S), ``b_ih`` (4H,), ``b_hh`` (4H,), gates i, f, g, o;
            a bias may be ``None`` (zeros).  Optionally ``w_hr`` (P, H), a projection
            (capability ``projection``), and ``w_peep`` (3, H), peepholes of i, f, o
            (capability ``peephole``).
        h0 : array, shape (B, S), optional
        c0 : array, shape (B, H), optional
            Initial hidden and cell state; zeros when omitted.
        lengths : array_like of int, shape (B,), optional
            Valid steps per batch row, ``0 <= lengths[b] <= T``.  Row b runs steps
            ``t < lengths[b]`` only; ``y[t, b] = 0`` beyond; ``h_n[b], c_n[b]`` are the
            state after its last valid step (the initial state when the length is 0).
        reverse : bool
            Run each row backwards over its valid part, ``t = lengths[b]-1 … 0``.
        out : tuple (y, h_n, c_n), optional
            Preallocated C-contiguous, writeable outputs of shapes (T, B, S), (B, S), (B, H).
            No output may overlap an input, except that ``h_n`` may be ``h0`` and ``c_n``
            may be ``c0`` (the very arrays: the state advanced in place).
        clip : float, optional
            Bound every gate pre-activation (bias and peephole term included) to
            ``[-clip, clip]`` before its activation, as ONNX's ``clip`` (capability ``clip``).
        input_forget : bool
            Couple the input and forget gates, ``f = 1 - i`` (ONNX; capability ``clip``).
        activations : sequence of 3, optional
            The functions ``(f, g, h)`` (default ``Sigmoid, Tanh, Tanh``), each a name of ONNX's
            list or ``(name, alpha[, beta])`` (capability ``activations`` unless the defaults).
        **options
            Backend-specific keyword options (e.g. ``stream=`` for ``cuda``); a backend
            refuses options it does not know with ``TypeError``.

        Returns
        -------
        y : array, shape (T, B, S)
            Hidden state at every step.
        h_n : array, shape (B, S)
        c_n : array, shape (B, H)
            Final hidden and cell state.

        Raises
        ------
        UnsupportedFeatureError
            An optional feature the backend lacks (see :attr:`capabilities`).
        """
        self._require("forward")
        opts = validate_options(clip, input_forget, activations)
        ctx = self._call_context("forward", x, options)
        spec = self._validate_forward(x, params, h0, c0, lengths, reverse)
        self._require_features(spec.params, opts)
        user_out = None if out is None else check_forward_out(out, spec)
        if user_out is None:
            y = self._empty((spec.steps, spec.batch, spec.state_size), spec.dtype, ctx)
            h_n = self._empty((spec.batch, spec.state_size), spec.dtype, ctx)
            c_n = self._empty((spec.batch, spec.hidden_size), spec.dtype, ctx)
        else:
            y, h_n, c_n = (self._output(a, ctx) for a in user_out)
        args = self._forward_args(spec, ctx, self._input(x, ctx), y, h_n, c_n, opts=opts)
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
        clip: float | None = None,
        input_forget: bool = False,
        activations: Sequence[Any] | None = None,
        **options: Any,
    ) -> tuple[Any, Any]:
        """Advance the LSTM by one step (streaming inference).

        Parameters
        ----------
        x : array, shape (B, I)
            Input at this step.
        h : array, shape (B, S)
        c : array, shape (B, H)
            Current hidden and cell state (``S = P`` with a projection, else ``H``).
        params : LSTMParams or tuple of 4 to 6 items
            As for :meth:`forward`.
        out : tuple (h_out, c_out), optional
            Preallocated C-contiguous, writeable outputs of shapes (B, S), (B, H).  They may
            be ``h`` and ``c`` themselves (the very arrays) to update the state in place; no
            other overlap with an input or with each other is allowed.
        clip, input_forget, activations
            Cell options, as for :meth:`forward`.
        **options
            Backend-specific keyword options (e.g. ``stream=`` for ``cuda``).

        Returns
        -------
        h_new : array, shape (B, S)
        c_new : array, shape (B, H)
        """
        self._require("cell")
        plain = clip is None and input_forget is False and activations is None
        if plain and not options and "device-arrays" not in self.capabilities:
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
        opts = validate_options(clip, input_forget, activations)
        ctx = self._call_context("cell", x, options)
        spec = validate_cell(x, h, c, params, dtypes=self.dtypes, device_ok=self._device_ok)
        p = spec.params
        self._require_features(p, opts)
        user_out = None if out is None else check_cell_out(out, spec)
        if user_out is None:
            h_out = self._empty((spec.batch, spec.state_size), spec.dtype, ctx)
            c_out = self._empty((spec.batch, spec.hidden_size), spec.dtype, ctx)
        else:
            h_out, c_out = (self._output(a, ctx) for a in user_out)
        b_ih, b_hh = (self._input(b, ctx) if b is not None else self._zeros((4 * spec.hidden_size,), spec.dtype, ctx)
                      for b in (p.b_ih, p.b_hh))
        args = CellArgs(
            self._input(x, ctx), self._input(h, ctx), self._input(c, ctx), self._input(p.w_ih, ctx),
            self._input(p.w_hh, ctx), b_ih, b_hh, h_out, c_out, spec.batch, spec.input_size,
            spec.hidden_size, spec.dtype, ctx,
            w_hr=None if p.w_hr is None else self._input(p.w_hr, ctx),
            w_peep=None if p.w_peep is None else self._input(p.w_peep, ctx),
            proj_size=p.proj_size, clip=opts.clip, input_forget=opts.input_forget, activations=opts.activations,
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
        clip: float | None = None,
        input_forget: bool = False,
        activations: Sequence[Any] | None = None,
        **options: Any,
    ) -> tuple[Any, Any, Any]:
        """Run a stacked, optionally bidirectional LSTM, composed from the ``_forward`` kernel.

        Each direction writes straight into its part of the layer's (T, B, D * S) output,
        which is the next layer's input; for a device backend every intermediate stays on
        the device and only the final outputs are handed back.  ``S`` is the width of ``h``:
        ``P`` when the layers have a projection (``w_hr``), else ``H``.

        Parameters
        ----------
        x : array, shape (T, B, I)
        layers : sequence over layers of sequences over directions of LSTMParams
            ``layers[l][0]`` runs forward, ``layers[l][1]`` (if present) in reverse.
            Layer ``l > 0`` takes inputs of size ``S * num_directions``.  Every layer and
            direction has the same ``H`` and the same ``S``.
        h0 : array, shape (L * D, B, S), optional
        c0 : array, shape (L * D, B, H), optional
            Initial states, index ``l * D + d`` like PyTorch.
        lengths : array_like of int, shape (B,), optional
        clip, input_forget : optional
            Cell options of every layer and direction, as for :meth:`forward`.
        activations : sequence of 3 or of 3 * D, optional
            ``(f, g, h)`` for every direction, or ONNX-style one triple per direction
            (forward first), the same in every layer.
        **options
            Backend-specific keyword options, as for :meth:`forward`.

        Returns
        -------
        y : array, shape (T, B, D * S)
        h_n : array, shape (L * D, B, S)
        c_n : array, shape (L * D, B, H)
        """
        self._require("forward")
        num_layers, num_dirs = _stack_shape(layers)
        per_dir = _split_activations(activations, num_dirs)
        dir_opts = [validate_options(clip, input_forget, a) for a in per_dir]
        ctx = self._call_context("forward_layers", x, options)
        layer_input = x
        y_layer = h_all = c_all = None
        for layer_index, layer in enumerate(layers):
            for d, p in enumerate(layer):
                k = layer_index * num_dirs + d
                spec = self._validate_forward(layer_input, p, None, None, lengths, d == 1)
                self._require_features(spec.params, dir_opts[d])
                hidden, width, dtype = spec.hidden_size, spec.state_size, spec.dtype
                if h_all is None:
                    h_shape = (num_layers * num_dirs, spec.batch, width)
                    c_shape = (num_layers * num_dirs, spec.batch, hidden)
                    states = _check_stack_states(h0, c0, h_shape, c_shape, self._device_ok)
                    h0_all, c0_all = (None if s is None else self._input(s, ctx) for s in states)
                    h_all, c_all = self._empty(h_shape, dtype, ctx), self._empty(c_shape, dtype, ctx)
                elif c_all.shape[2] != hidden or h_all.shape[2] != width:
                    raise ValueError(f"every layer and direction must have the same hidden size (and projection); "
                                     f"layers[0][0] has H={c_all.shape[2]}, S={h_all.shape[2]}, "
                                     f"layers[{layer_index}][{d}] has H={hidden}, S={width}")
                if d == 0:
                    x_kernel = self._input(layer_input, ctx)
                    y_layer = self._empty((spec.steps, spec.batch, num_dirs * width), dtype, ctx)
                y = y_layer if num_dirs == 1 else y_layer[:, :, d * width:(d + 1) * width]
                for name, s in (("h0", h0_all), ("c0", c0_all)):
                    if s is not None:
                        _check_state_dtype(name, describe(s)[1], dtype)
                args = self._forward_args(spec, ctx, x_kernel, y, h_all[k], c_all[k],
                                          None if h0_all is None else h0_all[k],
                                          None if c0_all is None else c0_all[k], opts=dir_opts[d])
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
                      h0: Any = None, c0: Any = None, *, opts: CellOptions = PLAIN) -> ForwardArgs:
        """Convert the inputs of a checked call (x already converted) and bundle them with the outputs."""
        p = spec.params
        hidden, dtype = spec.hidden_size, spec.dtype
        h0 = h0 if h0 is not None else (self._input(spec.h0, ctx) if spec.h0 is not None
                                        else self._zeros((spec.batch, spec.state_size), dtype, ctx))
        c0 = c0 if c0 is not None else (self._input(spec.c0, ctx) if spec.c0 is not None
                                        else self._zeros((spec.batch, hidden), dtype, ctx))
        b_ih, b_hh = (self._input(b, ctx) if b is not None else self._zeros((4 * hidden,), dtype, ctx)
                      for b in (p.b_ih, p.b_hh))
        return ForwardArgs(
            x=x, w_ih=self._input(p.w_ih, ctx), w_hh=self._input(p.w_hh, ctx), b_ih=b_ih, b_hh=b_hh,
            h0=h0, c0=c0, lengths=spec.lengths, reverse=spec.reverse, y=y, h_n=h_n, c_n=c_n,
            steps=spec.steps, batch=spec.batch, input_size=spec.input_size, hidden_size=hidden,
            dtype=dtype, full=spec.full, context=ctx,
            w_hr=None if p.w_hr is None else self._input(p.w_hr, ctx),
            w_peep=None if p.w_peep is None else self._input(p.w_peep, ctx),
            proj_size=p.proj_size, clip=opts.clip, input_forget=opts.input_forget, activations=opts.activations,
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
                        f"cast with .astype(np.{expected.name})")
