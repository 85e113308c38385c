"""The backend protocol: one class per backend, the same methods everywhere.

The base class owns the flow of every call — validate, convert and allocate, run the
kernel, finish — and a backend fills in small pieces:

Kernels (over validated, converted, preallocated arrays; see :mod:`lstm_backends._args`)
    ``_forward(args: ForwardArgs)`` writes ``args.y`` (valid steps only), ``args.h_n``,
    ``args.c_n`` for one layer and direction; ``_cell(args: CellArgs)`` writes
    ``args.h_out``, ``args.c_out``.  Training (capability ``backward``):
    ``_forward_train(args: TrainArgs)`` writes what ``_forward`` writes plus the tape's
    ``args.gates``/``args.cells``/``args.clipped``; ``_backward(args: BackwardArgs)`` writes
    ``args.dx``, ``args.dh0``, ``args.dc0`` and the weight gradients.

Hooks (host defaults here; a device backend overrides them, never the public methods)
    ``_call_context(kind, x, options)``: per-call state, e.g. a stream, from
    backend-specific keyword options (handed to kernels as ``args.context``);
    ``_input(a, ctx)``: an input as the array a kernel reads;
    ``_empty``/``_zeros(shape, dtype, ctx)``: allocation; ``_output(a, ctx)``: a caller's
    ``out=`` array as the array a kernel writes; ``_copy(dst, src, ctx)``;
    ``_zero_past_lengths(y, lengths, ctx)``; ``_accumulate(dst, src, ctx)``: ``dst += src``;
    ``_hand_back(results, out, ctx)``: the kernel's outputs as the caller receives them.

The base class does, once and in one place: validation (which never allocates), the
aliasing rule for ``out=``, the capability check of every optional feature (projection,
peepholes, clip / input_forget, activations: refused with
:class:`~lstm_backends.UnsupportedFeatureError` when the backend lacks it), empty problems
(``T = 0`` or ``B = 0``), zeroing ``y`` past each row's length, and the stacked /
bidirectional composition (:meth:`Backend.forward_layers`), in which each direction writes
straight into its part of the layer's output.  The same for training: ``forward_train``
and ``backward`` validate once, allocate the tape and every gradient array once per call
(never per step), turn ``None`` output gradients into zeros, handle empty problems, zero
``dx`` past each row's length, refuse the features the backend's backward pass lacks
(:attr:`Backend.backward_features`), and compose stacked / bidirectional training
(:meth:`Backend.forward_layers_train`, :meth:`Backend.backward_layers`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar, NamedTuple

import numpy as np

from .._args import BACKWARD_FEATURES, CAPABILITIES, BackwardArgs, CellArgs, ForwardArgs, StackTape, Tape, TrainArgs
from .._errors import UnsupportedFeatureError
from .._params import LSTMGrads, LSTMParams
from .._prepared import PreparedParams, _owner_key, validate_precision
from .._validation import (
    DEFAULT_DTYPES,
    PLAIN,
    CellOptions,
    ForwardSpec,
    ParamsSpec,
    check_cell_out,
    check_forward_out,
    check_output_grads,
    describe,
    fast_cell,
    is_device_array,
    validate_cell,
    validate_forward,
    validate_options,
    validate_params,
)
from ._checks import (
    _asked_features,
    _check_stack_states,
    _check_state_dtype,
    _check_tape,
    _stack_options,
)

__all__ = ["Availability", "Backend"]


def _no_backends_with(feature: str, *, training: bool = False) -> list[str]:
    """The lookup before the registry installs its own: no backend is registered, none is named."""
    return []


# Names the registered backends that have a capability, for the refusal messages of
# ``Backend._require`` / ``_require_features`` only.  The registry installs
# ``lstm_backends.backends_with`` here when it is imported (it imports this module; this
# module never imports the registry, so the dependency runs one way).
_backends_with: Callable[..., list[str]] = _no_backends_with


def set_backends_with(lookup: Callable[..., list[str]]) -> None:
    """Install the lookup that names the backends having a capability in refusal messages.

    Called once by :mod:`lstm_backends._registry` on import; not part of the public API.

    Parameters
    ----------
    lookup : callable
        ``lookup(feature, *, training=False) -> list of str``, as
        :func:`lstm_backends.backends_with`.
    """
    global _backends_with
    _backends_with = lookup


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
    backward_features : frozenset of str
        The optional features (from :data:`lstm_backends.BACKWARD_FEATURES`: ``projection``,
        ``peephole``, ``clip`` — which covers ``input_forget`` —, ``activations``) that the
        training pass (``forward_train``/``backward``, capability ``backward``) supports; a
        training call with any other is refused with
        :class:`~lstm_backends.UnsupportedFeatureError` naming it.  Empty by default: the plain cell.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    dtypes: ClassVar[tuple[np.dtype, ...]] = DEFAULT_DTYPES
    capabilities: ClassVar[frozenset[str]] = frozenset({"forward", "cell"})
    install_hint: ClassVar[str] = ""
    url: ClassVar[str] = ""
    auto_priority: ClassVar[int | None] = None
    backward_features: ClassVar[frozenset[str]] = frozenset()
    #: the weights' dtypes that a precision mode of :meth:`prepare` takes
    precision_dtypes: ClassVar[tuple[np.dtype, ...]] = (np.dtype(np.float32),)

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
        features = cls.__dict__.get("backward_features")
        if features is not None:
            unknown = set(features) - BACKWARD_FEATURES
            if unknown:
                raise TypeError(
                    f"{cls.__qualname__}.backward_features has unknown entries {sorted(unknown)}; "
                    f"known: {', '.join(sorted(BACKWARD_FEATURES))}"
                )
            cls.backward_features = frozenset(features)

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
            others = [n for n in _backends_with(feature) if n != self.name]
            asked = f"{what}, capability {feature!r}" if what else repr(feature)
            raise UnsupportedFeatureError(
                f"backend {self.name!r} does not support {asked} (its capabilities: "
                f"{', '.join(sorted(self.capabilities)) or 'none'})"
                + (f"; backends that do: {', '.join(others)}" if others else "; no registered backend does")
            )

    def _require_features(self, p: ParamsSpec, opts: CellOptions, *, train: bool = False) -> None:
        """Refuse every optional feature of a call that this backend lacks (never a silent fallback);
        with ``train``, also those its backward pass lacks (:attr:`backward_features`)."""
        asked = list(_asked_features(p, opts))
        for feature, what in asked:
            self._require(feature, what)
        for feature, what in asked if train else ():
            if feature not in self.backward_features:
                others = [n for n in _backends_with(feature, training=True) if n != self.name]
                supported = ", ".join(sorted(self.backward_features)) or "none"
                raise UnsupportedFeatureError(
                    f"backend {self.name!r} cannot train (forward_train / backward) with {what}: its backward pass "
                    f"lacks the feature {feature!r} (it supports: {supported})"
                    + (f"; backends that train with it: {', '.join(others)}" if others
                       else "; no registered backend trains with it")
                )

    # ------------------------------------------------------------------ prepared weights
    def prepare(self, params: Any, precision: str | None = None) -> PreparedParams:
        """Check, convert and copy one layer's weights (one direction) once, for many calls.

        The result is accepted wherever ``params`` are (:meth:`forward`, :meth:`cell`,
        :meth:`forward_train`, :meth:`forward_layers`).  It holds its own read-only copies, placed
        and packed as this backend's kernels read them, so a call skips that work, and later edits
        of the arrays passed here never reach it.

        Parameters
        ----------
        params : LSTMParams or tuple of 4 to 6 items
            As for :meth:`forward`.
        precision : {None, "bf16", "bf16x3"}
            ``None``: the dtype's own arithmetic.  ``"bf16"``: every product's operands (x, h and
            the weights) rounded to bfloat16 (to nearest, ties to even), the products accumulated
            in float32; bias, gates, nonlinearities and the cell state in float32 (capability
            ``bf16``).  ``"bf16x3"``: each operand split ``hi + lo`` (both bfloat16) and three
            products ``hi·hi + hi·lo + lo·hi`` (capability ``bf16x3``), close to float32 accuracy.
            Both take float32 weights and float32 inputs; training (:meth:`forward_train`) is
            refused in these modes.

        Returns
        -------
        PreparedParams
            Opaque and immutable.

        Raises
        ------
        ValueError
            An unknown ``precision`` (the message lists the valid ones); a precision mode with
            weights that are not float32.
        UnsupportedFeatureError
            The backend lacks the precision mode (the message names the backends that have it).
        """
        precision = validate_precision(precision)
        if precision is not None:
            self._require(precision, f"precision={precision!r}")
        if isinstance(params, PreparedParams):
            params = params.params
        spec = validate_params(params, dtypes=self.dtypes, device_ok=self._device_ok)
        if precision is not None and spec.dtype not in self.precision_dtypes:
            raise ValueError(f"precision={precision!r} takes float32 weights (its inputs and outputs are float32); "
                             f"got {spec.dtype.name}: convert them, e.g. "
                             "LSTMParams(*(None if p is None else p.astype(np.float32) for p in params))")
        ctx = self._call_context("forward", spec.w_ih, {})
        copies = LSTMParams(*(None if a is None else self._own_copy(a, ctx) for a in
                              (spec.w_ih, spec.w_hh, spec.b_ih, spec.b_hh, spec.w_hr, spec.w_peep)))
        return PreparedParams(self.name, precision, copies, spec.dtype, spec.input_size, spec.hidden_size,
                              spec.proj_size, _owner_key(self), self._prepare(copies, precision, ctx))

    def prepare_key(self) -> Any:
        """What, besides the class, decides the layout of :meth:`_prepare`'s data (e.g. a GEMM
        choice): prepared params of an instance with another key are read from their arrays."""
        return None

    def _prepare(self, params: LSTMParams, precision: str | None, ctx: Any) -> Any:
        """Hook: whatever the kernels want packed once (handed back as ``args.prepared``); ``params``
        are the prepared copies.  ``None`` by default."""
        return None

    def _own_copy(self, a: Any, ctx: Any) -> Any:
        """A read-only, C-contiguous copy of a checked parameter array, placed for the kernels."""
        a = np.array(a, order="C", copy=True)
        a.flags.writeable = False
        return a

    def _prepared_fields(self, p: ParamsSpec) -> dict[str, Any]:
        """``precision`` and ``prepared`` of a call's Args, from its checked params."""
        if p.prepared is None:
            return {}
        return {"precision": p.prepared.precision, "prepared": p.prepared.data_for(self)}

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
            prepared = type(params) is PreparedParams
            mode = params.precision if prepared else None   # (a mode this backend lacks: refused below)
            fast = None if mode is not None and mode not in self.capabilities else \
                fast_cell(x, h, c, params.params if prepared else params, out, self.dtypes)
            if fast is not None:  # contiguous NumPy arrays: checked in a few microseconds
                x, h, c, w_ih, w_hh, b_ih, b_hh, h_out, c_out = fast
                batch, hidden = h.shape
                if h_out is None:
                    h_out, c_out = np.empty((batch, hidden), x.dtype), np.empty((batch, hidden), x.dtype)
                if batch:
                    self._cell(CellArgs(x, h, c, w_ih, w_hh, b_ih, b_hh, h_out, c_out, batch, x.shape[1], hidden,
                                        x.dtype, precision=mode, prepared=params.data_for(self) if prepared else None))
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
            **self._prepared_fields(p),
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
        dir_opts = _stack_options(layers, clip, input_forget, activations)
        ctx = self._call_context("forward_layers", x, options)
        y, h_n, c_n, _ = self._run_stack(x, layers, h0, c0, lengths, dir_opts, ctx, train=False)
        return self._hand_back((y, h_n, c_n), None, ctx)

    # ------------------------------------------------------------------ training
    def forward_train(
        self,
        x: Any,
        params: LSTMParams | Sequence[Any],
        h0: Any = None,
        c0: Any = None,
        *,
        lengths: Any = None,
        reverse: bool = False,
        clip: float | None = None,
        input_forget: bool = False,
        activations: Sequence[Any] | None = None,
        **options: Any,
    ) -> tuple[Any, Any, Any, Tape]:
        """:meth:`forward`, also recording the :class:`~lstm_backends.Tape` that :meth:`backward` needs.

        Parameters
        ----------
        x, params, h0, c0, lengths, reverse, clip, input_forget, activations, **options
            As for :meth:`forward` (there is no ``out=``).  The optional features must be
            in :attr:`backward_features`.

        Returns
        -------
        y : array, shape (T, B, S)
        h_n : array, shape (B, S)
        c_n : array, shape (B, H)
            As from :meth:`forward`; the tape does not reference them (modify them freely).
        tape : Tape
            References ``x``, ``h0``, ``c0`` and the weights — do not modify them before the
            last :meth:`backward` with this tape — and owns the saved activations,
            ``T * B * 5H`` numbers (see :class:`~lstm_backends.Tape`).

        Raises
        ------
        UnsupportedFeatureError
            The backend cannot train (no ``backward`` capability), or not with a feature of
            the call.
        """
        self._require("backward", "forward_train (training)")
        opts = validate_options(clip, input_forget, activations)
        ctx = self._call_context("forward_train", x, options)
        spec = self._validate_forward(x, params, h0, c0, lengths, reverse)
        self._require_features(spec.params, opts, train=True)
        y = self._empty((spec.steps, spec.batch, spec.state_size), spec.dtype, ctx)
        h_n = self._empty((spec.batch, spec.state_size), spec.dtype, ctx)
        c_n = self._empty((spec.batch, spec.hidden_size), spec.dtype, ctx)
        args = self._train_args(spec, ctx, self._input(x, ctx), y, h_n, c_n, opts=opts)
        self._run_forward(args, ctx, self._forward_train)
        tape = self._tape(args, spec.params, is_device_array(x))
        return (*self._hand_back((args.y, args.h_n, args.c_n), None, ctx), tape)

    def backward(self, tape: Tape, dy: Any = None, dh_n: Any = None, dc_n: Any = None,
                 **options: Any) -> LSTMGrads:
        """Back-propagate through the call that recorded ``tape`` (BPTT): deterministic, and
        equal to PyTorch autograd's gradients (packed-sequence semantics for lengths).

        ``S`` is the width of ``h``: ``P`` with a projection, else ``H``.

        Parameters
        ----------
        tape : Tape
            From this backend's :meth:`forward_train`; only read, so it may be used again.
        dy : array, shape (T, B, S), optional
            Gradient of the loss with respect to ``y``; ``dy[t, b]`` past ``lengths[b]`` is
            ignored.
        dh_n : array, shape (B, S), optional
        dc_n : array, shape (B, H), optional
            Gradients with respect to the final state; each flows to its row's last valid step.
            Any of the three may be ``None``: zeros.
        **options
            Backend-specific keyword options (e.g. ``stream=`` for ``cuda``).

        Returns
        -------
        LSTMGrads
            ``(dx, dh0, dc0, dparams)``: ``dx`` (T, B, I), zero past each row's length;
            ``dh0`` (B, S), ``dc0`` (B, H); ``dparams`` an :class:`~lstm_backends.LSTMParams`
            of the gradients of the call's params, ``None`` where a field was ``None``.
            Host arrays, or device arrays when ``forward_train`` was given device arrays.

        Raises
        ------
        TypeError
            ``tape`` is not a :class:`~lstm_backends.Tape`; an output gradient of the wrong dtype.
        ValueError
            ``tape`` was recorded by another backend; an output gradient of the wrong shape.
        """
        self._require("backward")
        _check_tape(tape, Tape, self.name, "forward_train", "backward")
        ctx = self._call_context("backward", tape.x if tape.device_inputs else tape.lengths, options)
        t, b, s, h = tape.steps, tape.batch, tape.state_size, tape.hidden_size
        letter = "P" if tape.proj_size else "H"
        grads = {"dy": (dy, (t, b, s), f"(T, B, {letter})"), "dh_n": (dh_n, (b, s), f"(B, {letter})"),
                 "dc_n": (dc_n, (b, h), "(B, H)")}
        dy, dh_n, dc_n = self._output_grads(grads, tape.dtype, ctx, "forward_train")
        args = self._backward_args(tape, ctx, dy, dh_n, dc_n)
        self._run_backward(args, ctx)
        dx, dh0, dc0, (dparams,) = self._hand_back_grads(args.dx, args.dh0, args.dc0, [self._dparams(args, ctx)], ctx)
        return LSTMGrads(dx, dh0, dc0, dparams)

    def forward_layers_train(
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
    ) -> tuple[Any, Any, Any, StackTape]:
        """:meth:`forward_layers`, also recording a :class:`~lstm_backends.StackTape` for
        :meth:`backward_layers` (the training pass of :class:`~lstm_backends.LSTM`).

        Parameters
        ----------
        x, layers, h0, c0, lengths, clip, input_forget, activations, **options
            As for :meth:`forward_layers`.

        Returns
        -------
        y : array, shape (T, B, D * S)
        h_n : array, shape (L * D, B, S)
        c_n : array, shape (L * D, B, H)
        tape : StackTape
            One :class:`~lstm_backends.Tape` per layer and direction.
        """
        self._require("backward", "forward_layers_train (training)")
        dir_opts = _stack_options(layers, clip, input_forget, activations)
        ctx = self._call_context("forward_layers_train", x, options)
        y, h_n, c_n, tapes = self._run_stack(x, layers, h0, c0, lengths, dir_opts, ctx, train=True)
        first = tapes[0][0]
        tape = StackTape(self.name, tapes, first.steps, first.batch, first.input_size, first.hidden_size,
                         first.state_size, len(tapes), len(tapes[0]), first.dtype, first.lengths,
                         is_device_array(x))
        return (*self._hand_back((y, h_n, c_n), None, ctx), tape)

    def backward_layers(self, tape: StackTape, dy: Any = None, dh_n: Any = None, dc_n: Any = None,
                        **options: Any) -> LSTMGrads:
        """Back-propagate through a stacked, optionally bidirectional LSTM (:meth:`forward_layers_train`).

        Layers run from the top down, each layer's directions in reverse order; the gradient of
        a layer's input is the sum of its directions' (a direction's ``dy`` is its part of the
        layer's output gradient).  For a device backend everything stays on the device.

        Parameters
        ----------
        tape : StackTape
            From this backend's :meth:`forward_layers_train`.
        dy : array, shape (T, B, D * S), optional
        dh_n : array, shape (L * D, B, S), optional
        dc_n : array, shape (L * D, B, H), optional
            Gradients of the outputs; ``None``: zeros.
        **options
            Backend-specific keyword options.

        Returns
        -------
        LSTMGrads
            ``dx`` (T, B, I), ``dh0`` (L * D, B, S), ``dc0`` (L * D, B, H), and ``dparams`` a
            list over layers of lists over directions of :class:`~lstm_backends.LSTMParams`.
        """
        self._require("backward")
        _check_tape(tape, StackTape, self.name, "forward_layers_train", "backward_layers")
        ctx = self._call_context("backward_layers", tape.tapes[0][0].x if tape.device_inputs else tape.lengths,
                                 options)
        layers, dirs, t, b = tape.num_layers, tape.num_directions, tape.steps, tape.batch
        s, h, dtype = tape.state_size, tape.hidden_size, tape.dtype
        letter = "P" if s != h else "H"
        grads = {"dy": (dy, (t, b, dirs * s), f"(T, B, D * {letter})"),
                 "dh_n": (dh_n, (layers * dirs, b, s), f"(L * D, B, {letter})"),
                 "dc_n": (dc_n, (layers * dirs, b, h), "(L * D, B, H)")}
        dy_layer, dh_all, dc_all = self._output_grads(grads, dtype, ctx, "forward_layers_train")
        dh0_all = self._empty((layers * dirs, b, s), dtype, ctx)
        dc0_all = self._empty((layers * dirs, b, h), dtype, ctx)
        dparams: list[list[Any]] = [[None] * dirs for _ in range(layers)]
        for layer in reversed(range(layers)):
            in_size = tape.tapes[layer][0].input_size
            dx_layer = self._empty((t, b, in_size), dtype, ctx)
            dx_other = self._empty((t, b, in_size), dtype, ctx) if dirs == 2 else None
            for d in reversed(range(dirs)):
                k = layer * dirs + d
                dy_d = dy_layer if dirs == 1 else dy_layer[:, :, d * s:(d + 1) * s]
                dx_d = dx_layer if d == dirs - 1 else dx_other
                args = self._backward_args(tape.tapes[layer][d], ctx, dy_d, dh_all[k], dc_all[k], dx=dx_d,
                                           dh0=dh0_all[k], dc0=dc0_all[k])
                self._run_backward(args, ctx)
                if dx_d is not dx_layer:
                    self._accumulate(dx_layer, dx_d, ctx)
                dparams[layer][d] = self._dparams(args, ctx)
            dy_layer = dx_layer
        dx, dh0, dc0, flat = self._hand_back_grads(dy_layer, dh0_all, dc0_all,
                                                   [p for layer in dparams for p in layer], ctx)
        return LSTMGrads(dx, dh0, dc0, [flat[k * dirs:(k + 1) * dirs] for k in range(layers)])

    def _output_grads(self, grads: dict[str, tuple[Any, tuple[int, ...], str]], dtype: np.dtype, ctx: Any,
                      source: str) -> list[Any]:
        """Check the output gradients of a backward call; convert them (zeros for ``None``)."""
        check_output_grads(grads, dtype, self._device_ok, source)
        return [self._input(a, ctx) if a is not None else self._zeros(shape, dtype, ctx)
                for a, shape, _ in grads.values()]

    def _hand_back_grads(self, dx: Any, dh0: Any, dc0: Any, dparams: list[LSTMParams],
                         ctx: Any) -> tuple[Any, Any, Any, list[LSTMParams]]:
        """Hand ``dx, dh0, dc0`` and every gradient in ``dparams`` back in one :meth:`_hand_back`."""
        back = iter(self._hand_back((dx, dh0, dc0, *(a for p in dparams for a in p if a is not None)), None, ctx))
        dx, dh0, dc0 = next(back), next(back), next(back)
        return dx, dh0, dc0, [LSTMParams(*(None if a is None else next(back) for a in p)) for p in dparams]

    # ------------------------------------------------------------------ the flow
    @property
    def _device_ok(self) -> bool:
        return "device-arrays" in self.capabilities

    def _validate_forward(self, x: Any, params: Any, h0: Any, c0: Any, lengths: Any, reverse: bool) -> ForwardSpec:
        return validate_forward(x, params, h0, c0, lengths=lengths, reverse=reverse, dtypes=self.dtypes,
                                device_ok=self._device_ok)

    def _forward_args(self, spec: ForwardSpec, ctx: Any, x: Any, y: Any, h_n: Any, c_n: Any,
                      h0: Any = None, c0: Any = None, *, opts: CellOptions = PLAIN, cls: type = ForwardArgs,
                      **extra: Any) -> Any:
        """Convert the inputs of a checked call (x already converted) and bundle them with the outputs
        (as ``cls``, :class:`ForwardArgs` or its subclass :class:`TrainArgs` with the ``extra`` fields)."""
        p = spec.params
        hidden, dtype = spec.hidden_size, spec.dtype
        h0 = h0 if h0 is not None else (self._input(spec.h0, ctx) if spec.h0 is not None
                                        else self._zeros((spec.batch, spec.state_size), dtype, ctx))
        c0 = c0 if c0 is not None else (self._input(spec.c0, ctx) if spec.c0 is not None
                                        else self._zeros((spec.batch, hidden), dtype, ctx))
        b_ih, b_hh = (self._input(b, ctx) if b is not None else self._zeros((4 * hidden,), dtype, ctx)
                      for b in (p.b_ih, p.b_hh))
        return cls(
            x=x, w_ih=self._input(p.w_ih, ctx), w_hh=self._input(p.w_hh, ctx), b_ih=b_ih, b_hh=b_hh,
            h0=h0, c0=c0, lengths=spec.lengths, reverse=spec.reverse, y=y, h_n=h_n, c_n=c_n,
            steps=spec.steps, batch=spec.batch, input_size=spec.input_size, hidden_size=hidden,
            dtype=dtype, full=spec.full, context=ctx,
            w_hr=None if p.w_hr is None else self._input(p.w_hr, ctx),
            w_peep=None if p.w_peep is None else self._input(p.w_peep, ctx),
            proj_size=p.proj_size, clip=opts.clip, input_forget=opts.input_forget, activations=opts.activations,
            **self._prepared_fields(p), **extra,
        )

    def _run_forward(self, args: ForwardArgs, ctx: Any, kernel: Callable[[Any], None] | None = None) -> None:
        """Empty problems, the kernel (``_forward``, or ``kernel``: ``_forward_train``), and zeros
        past each row's length."""
        if args.steps == 0 or args.batch == 0:
            self._copy(args.h_n, args.h0, ctx)
            self._copy(args.c_n, args.c0, ctx)
            return
        (kernel or self._forward)(args)
        if not args.full:
            self._zero_past_lengths(args.y, args.lengths, ctx)

    def _run_stack(self, x: Any, layers: Sequence[Sequence[LSTMParams]], h0: Any, c0: Any, lengths: Any,
                   dir_opts: list[CellOptions], ctx: Any, *, train: bool) -> tuple[Any, Any, Any, list[list[Tape]]]:
        """The stacked / bidirectional composition of :meth:`forward_layers` (and, with ``train``,
        of :meth:`forward_layers_train`, recording one tape per layer and direction)."""
        num_layers, num_dirs = len(layers), len(dir_opts)
        layer_input = x
        y_layer = h_all = c_all = None
        tapes: list[list[Tape]] = []
        for layer_index, layer in enumerate(layers):
            tapes.append([])
            for d, p in enumerate(layer):
                k = layer_index * num_dirs + d
                spec = self._validate_forward(layer_input, p, None, None, lengths, d == 1)
                self._require_features(spec.params, dir_opts[d], train=train)
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
                state = (None if h0_all is None else h0_all[k], None if c0_all is None else c0_all[k])
                if train:
                    args = self._train_args(spec, ctx, x_kernel, y, h_all[k], c_all[k], *state, opts=dir_opts[d])
                    self._run_forward(args, ctx, self._forward_train)
                    tapes[-1].append(self._tape(args, spec.params, is_device_array(x)))
                else:
                    args = self._forward_args(spec, ctx, x_kernel, y, h_all[k], c_all[k], *state, opts=dir_opts[d])
                    self._run_forward(args, ctx)
            layer_input = y_layer
        return y_layer, h_all, c_all, tapes

    def _train_args(self, spec: ForwardSpec, ctx: Any, x: Any, y: Any, h_n: Any, c_n: Any, h0: Any = None,
                    c0: Any = None, *, opts: CellOptions = PLAIN) -> TrainArgs:
        """:meth:`_forward_args` plus the tape's arrays, allocated once for all ``T`` steps."""
        shape = (spec.steps, spec.batch)
        hidden, dtype = spec.hidden_size, spec.dtype
        return self._forward_args(
            spec, ctx, x, y, h_n, c_n, h0, c0, opts=opts, cls=TrainArgs,
            gates=self._empty((*shape, 4 * hidden), dtype, ctx),
            cells=self._empty((*shape, hidden), dtype, ctx),
            clipped=None if opts.clip is None else self._empty((*shape, 4 * hidden), np.dtype(np.bool_), ctx),
        )

    def _tape(self, args: TrainArgs, p: ParamsSpec, device_inputs: bool) -> Tape:
        return Tape(
            backend=self.name, x=args.x, h0=args.h0, c0=args.c0, w_ih=args.w_ih, w_hh=args.w_hh, w_hr=args.w_hr,
            w_peep=args.w_peep, gates=args.gates, cells=args.cells, clipped=args.clipped, lengths=args.lengths,
            reverse=args.reverse, full=args.full, steps=args.steps, batch=args.batch, input_size=args.input_size,
            hidden_size=args.hidden_size, proj_size=args.proj_size, dtype=args.dtype, clip=args.clip,
            input_forget=args.input_forget, has_bias=(p.b_ih is not None, p.b_hh is not None),
            device_inputs=device_inputs, extras=args.extras,
        )

    def _backward_args(self, tape: Tape, ctx: Any, dy: Any, dh_n: Any, dc_n: Any, *, dx: Any = None,
                       dh0: Any = None, dc0: Any = None) -> BackwardArgs:
        """The kernel's arguments, every gradient array allocated once (zeros for empty problems)."""
        t, b, i, h, s, p = (tape.steps, tape.batch, tape.input_size, tape.hidden_size, tape.state_size,
                            tape.proj_size)
        dtype = tape.dtype
        alloc = self._zeros if t == 0 or b == 0 else self._empty
        return BackwardArgs(
            tape=tape, dy=dy, dh_n=dh_n, dc_n=dc_n,
            dx=dx if dx is not None else self._empty((t, b, i), dtype, ctx),
            dh0=dh0 if dh0 is not None else self._empty((b, s), dtype, ctx),
            dc0=dc0 if dc0 is not None else self._empty((b, h), dtype, ctx),
            dw_ih=alloc((4 * h, i), dtype, ctx), dw_hh=alloc((4 * h, s), dtype, ctx), db=alloc((4 * h,), dtype, ctx),
            dw_hr=None if tape.w_hr is None else alloc((p, h), dtype, ctx),
            dw_peep=None if tape.w_peep is None else alloc((3, h), dtype, ctx),
            context=ctx,
        )

    def _run_backward(self, args: BackwardArgs, ctx: Any) -> None:
        """Empty problems, the backward kernel, and zeros in ``dx`` past each row's length."""
        if args.steps == 0 or args.batch == 0:
            self._copy(args.dh0, args.dh_n, ctx)
            self._copy(args.dc0, args.dc_n, ctx)
            return
        self._backward(args)
        if not args.tape.full:
            self._zero_past_lengths(args.dx, args.lengths, ctx)

    def _dparams(self, args: BackwardArgs, ctx: Any) -> LSTMParams:
        """The weight gradients as an LSTMParams: ``None`` for the fields the call did not have; the
        kernel's one bias gradient serves ``b_ih`` and, as a copy, ``b_hh``."""
        has_ih, has_hh = args.tape.has_bias
        db_hh = None
        if has_hh:
            db_hh = args.db
            if has_ih:
                db_hh = self._empty(args.db.shape, args.dtype, ctx)
                self._copy(db_hh, args.db, ctx)
        return LSTMParams(args.dw_ih, args.dw_hh, args.db if has_ih else None, db_hh, args.dw_hr, args.dw_peep)

    # ------------------------------------------------------------------ kernels
    def _forward(self, args: ForwardArgs) -> None:
        """Write ``args.y`` (valid steps), ``args.h_n``, ``args.c_n``; see :class:`~lstm_backends.ForwardArgs`."""
        raise NotImplementedError(f"backend {self.name!r} declares 'forward' but does not implement _forward")

    def _cell(self, args: CellArgs) -> None:
        """Write ``args.h_out``, ``args.c_out``; see :class:`~lstm_backends.CellArgs`."""
        raise NotImplementedError(f"backend {self.name!r} declares 'cell' but does not implement _cell")

    def _forward_train(self, args: TrainArgs) -> None:
        """Write what ``_forward`` writes plus ``args.gates``, ``args.cells`` (and ``args.clipped``)
        at valid steps; see :class:`~lstm_backends.TrainArgs`."""
        raise NotImplementedError(f"backend {self.name!r} declares 'backward' but does not implement _forward_train")

    def _backward(self, args: BackwardArgs) -> None:
        """Write ``args.dx`` (valid steps), ``args.dh0``, ``args.dc0`` and the weight gradients
        ``args.dw_ih``, ``args.dw_hh``, ``args.db`` (and ``args.dw_hr``, ``args.dw_peep``); see
        :class:`~lstm_backends.BackwardArgs`."""
        raise NotImplementedError(f"backend {self.name!r} declares 'backward' but does not implement _backward")

    # ------------------------------------------------------------------ hooks (host defaults)
    def _call_context(self, kind: str, x: Any, options: dict[str, Any]) -> Any:
        """Per-call state from backend-specific keyword options; host backends take none.

        ``kind`` is the public method (``"forward"``, ``"cell"``, ``"forward_layers"``,
        ``"forward_train"``, ``"backward"``, ``"forward_layers_train"``, ``"backward_layers"``);
        ``x`` is its input, or for the two backward methods an array placed like the recorded
        call's ``x`` (a device array exactly when that ``x`` was one).
        """
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

    def _accumulate(self, dst: Any, src: Any, ctx: Any) -> None:
        """``dst += src`` (the input gradient of a bidirectional layer: the sum of its directions')."""
        dst += src

    def _hand_back(self, results: tuple[Any, ...], out: tuple[Any, ...] | None, ctx: Any) -> tuple[Any, ...]:
        """The kernel's outputs as the caller receives them (the ``out=`` arrays when given)."""
        return results
