"""The argument types a backend's kernels receive: the public plugin contract.

:class:`~lstm_backends.Backend` validates every argument once, converts the inputs and
allocates the outputs (through the backend's hooks), and hands a kernel one of these
objects.  A kernel reads the inputs, writes the outputs, and returns nothing; it never
sees a bad shape, a mixed dtype or an unchecked overlap.

Array types are those of the backend: NumPy arrays for host backends, device arrays for
a device backend (whatever its ``_input``/``_empty`` hooks return).

The optional features (projection, peepholes, clip, coupled input/forget gates,
non-default activations) arrive as fields that default to "off" (``None``, ``0`` or
``False``).  The base class hands a kernel a feature only when the backend declares its
capability, so a kernel of a backend without ``projection``, ``peephole``, ``clip`` or
``activations`` may ignore those fields: they are always off there.

One step of the full cell, for a row, with ``σ``, ``φ``, ``ψ`` the activations ``f``,
``g``, ``h`` (``sigmoid``, ``tanh``, ``tanh`` by default) and ``clip(z)`` the identity
when ``clip`` is ``None``::

    z = x_t @ W_ih.T + h_{t-1} @ W_hh.T + b_ih + b_hh           # (4H,), gates i, f, g, o
    i = σ(clip(z_i + p_i ⊙ c_{t-1}))
    f = 1 - i                if input_forget
        σ(clip(z_f + p_f ⊙ c_{t-1}))   otherwise
    g = φ(clip(z_g))
    c_t = f ⊙ c_{t-1} + i ⊙ g
    o = σ(clip(z_o + p_o ⊙ c_t))                                 # the new cell state
    m = o ⊙ ψ(c_t)
    h_t = m @ W_hr.T         with a projection, else m

(``p_i, p_f, p_o`` are the rows of ``w_peep``, zeros when it is ``None``.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._activations import Activation
from ._params import LSTMParams

__all__ = ["BACKWARD_FEATURES", "CAPABILITIES", "BackwardArgs", "CellArgs", "ForwardArgs", "StackTape", "Tape",
           "TrainArgs"]

#: Every capability a backend may declare in ``Backend.capabilities``:
#:
#: ``forward``
#:     ``forward`` and ``forward_layers`` (whole sequences)
#: ``cell``
#:     ``cell`` (one streaming step)
#: ``backward``
#:     ``forward_train`` / ``backward`` (training)
#: ``projection``
#:     ``params.w_hr`` (LSTMP, PyTorch's ``proj_size``)
#: ``peephole``
#:     ``params.w_peep`` (ONNX ``P``)
#: ``clip``
#:     the ``clip=`` and ``input_forget=`` cell options (ONNX)
#: ``activations``
#:     the ``activations=`` option with functions other than the defaults ``Sigmoid,
#:     Tanh, Tanh`` (ONNX's list: ``HardSigmoid``, ``Elu``, …).  An extension of the
#:     original list: ONNX models may choose their gate functions.
#: ``device-arrays``
#:     inputs with ``__cuda_array_interface__`` stay on the device
#: ``njit``
#:     kernels callable from the user's own ``@numba.njit`` code: the backend's attribute ``jit``
#:     has ``prepare``, ``cell`` and ``forward`` with the contract of :mod:`lstm_backends.jit`
#: ``bf16``, ``bf16x3``
#:     the precision modes of ``prepare(params, precision=...)``: products of bfloat16 operands
#:     (one, or three for hi/lo splits) accumulated in float32 (see :meth:`Backend.prepare`)
CAPABILITIES: frozenset[str] = frozenset(
    {"forward", "cell", "backward", "projection", "peephole", "clip", "activations", "device-arrays", "njit",
     "bf16", "bf16x3"}
)


@dataclass
class ForwardArgs:
    """What a forward kernel gets: one layer, one direction, a whole sequence.

    Inputs are read-only and C-contiguous; outputs are to be written.  ``T, B >= 1``
    (the base class handles empty problems itself).  ``S`` below is the width of ``h``:
    ``P`` (``proj_size``) with a projection, else ``H``.

    Attributes
    ----------
    x : array, shape (T, B, I)
        Time-major input.
    w_ih : array, shape (4H, I)
        Input weights, gates ``i, f, g, o`` stacked along the first axis.
    w_hh : array, shape (4H, S)
        Recurrent weights.
    b_ih, b_hh : array, shape (4H,)
        Biases (zeros when the caller passed ``None``); only their sum matters.
    h0 : array, shape (B, S)
    c0 : array, shape (B, H)
        Initial state (zeros when the caller passed ``None``).  ``h0`` may be the very
        array ``h_n`` and ``c0`` the very array ``c_n`` (an in-place state update): copy
        them into the outputs before writing anything else.
    lengths : numpy.ndarray of int64, shape (B,)
        Valid steps per row, in ``[0, T]``; always a host array, ``T`` everywhere when the
        caller passed none.  Row ``b`` runs steps ``t < lengths[b]`` only.
    reverse : bool
        Row ``b`` runs ``t = lengths[b]-1 … 0``.
    y : array, shape (T, B, S)
        Output at every valid step.  Write ``y[t, b]`` for ``t < lengths[b]`` only: the
        base class zeroes the rest after the kernel.  May be a strided view whose last
        axis is contiguous (a direction's part of a bidirectional layer's output); never
        overlaps an input.
    h_n : array, shape (B, S)
    c_n : array, shape (B, H)
        Final state: after each row's last valid step (``h0``/``c0`` for length 0).
    steps, batch, input_size, hidden_size : int
        ``T, B, I, H``.
    dtype : numpy.dtype
        The one floating dtype of every array.
    full : bool
        ``lengths`` is ``T`` for every row (no row stops early).
    context : object
        What the backend's ``_call_context`` hook returned for this call (e.g. a CUDA
        stream); ``None`` for host backends.
    w_hr : array, shape (P, H), or None
        Projection (capability ``projection``): ``h_t = (o ⊙ ψ(c_t)) @ W_hr.T``.
    w_peep : array, shape (3, H), or None
        Peephole weights of gates ``i, f, o`` (capability ``peephole``); ``o``'s sees ``c_t``.
    proj_size : int
        ``P``, or 0 without a projection.
    clip : float or None
        Bound every gate pre-activation (bias and peephole term included) to
        ``[-clip, clip]`` before its activation (capability ``clip``).  NaN stays NaN.
    input_forget : bool
        ``f = 1 - i`` (capability ``clip``).
    activations : tuple of 3 Activation, or None
        ``(f, g, h)`` functions, ``None`` for ``Sigmoid, Tanh, Tanh`` (capability
        ``activations``).
    precision : str or None
        ``"bf16"`` or ``"bf16x3"`` when the call's params were prepared with that mode
        (capability of the same name; see :meth:`Backend.prepare`), else ``None``.
    prepared : object or None
        What this backend's ``_prepare`` hook returned for the call's prepared params (only when
        this backend class and configuration prepared them), else ``None``.
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
    full: bool = True
    context: Any = None
    w_hr: Any = None
    w_peep: Any = None
    proj_size: int = 0
    clip: float | None = None
    input_forget: bool = False
    activations: tuple[Activation, Activation, Activation] | None = None
    precision: str | None = None
    prepared: Any = None

    @property
    def state_size(self) -> int:
        """``S``, the width of ``h`` and ``y``: ``proj_size`` or ``hidden_size``."""
        return self.proj_size or self.hidden_size

    @property
    def plain(self) -> bool:
        """No projection, peephole, clip, coupled gates or non-default activations."""
        return (self.w_hr is None and self.w_peep is None and self.clip is None and not self.input_forget
                and self.activations is None)

    @property
    def params(self) -> LSTMParams:
        """``(w_ih, w_hh, b_ih, b_hh, w_hr, w_peep)`` as an :class:`~lstm_backends.LSTMParams`."""
        return LSTMParams(self.w_ih, self.w_hh, self.b_ih, self.b_hh, self.w_hr, self.w_peep)


@dataclass
class CellArgs:
    """What a cell kernel gets: one step of a batch.  ``B >= 1``.

    ``S`` is the width of ``h``: ``P`` with a projection, else ``H``.

    Attributes
    ----------
    x : array, shape (B, I)
        Input at this step.
    h : array, shape (B, S)
    c : array, shape (B, H)
        State before the step.
    w_ih, w_hh, b_ih, b_hh : arrays, shapes (4H, I), (4H, S), (4H,), (4H,)
        As in :class:`ForwardArgs`.
    h_out : array, shape (B, S)
    c_out : array, shape (B, H)
        New state, to write.  ``h_out`` may be the very array ``h`` and ``c_out`` the very
        array ``c`` (an in-place update: read all of ``h`` and ``c`` a row needs before
        writing that row); no other overlap with an input or with each other is possible.
    batch, input_size, hidden_size : int
        ``B, I, H``.
    dtype : numpy.dtype
    context : object
        What the backend's ``_call_context`` hook returned (``None`` for host backends).
    w_hr, w_peep, proj_size, clip, input_forget, activations
        As in :class:`ForwardArgs` (off by default).
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
    context: Any = None
    w_hr: Any = None
    w_peep: Any = None
    proj_size: int = 0
    clip: float | None = None
    input_forget: bool = False
    activations: tuple[Activation, Activation, Activation] | None = None
    precision: str | None = None
    prepared: Any = None

    @property
    def state_size(self) -> int:
        """``S``, the width of ``h``: ``proj_size`` or ``hidden_size``."""
        return self.proj_size or self.hidden_size

    @property
    def plain(self) -> bool:
        """No projection, peephole, clip, coupled gates or non-default activations."""
        return (self.w_hr is None and self.w_peep is None and self.clip is None and not self.input_forget
                and self.activations is None)

    @property
    def params(self) -> LSTMParams:
        """``(w_ih, w_hh, b_ih, b_hh, w_hr, w_peep)`` as an :class:`~lstm_backends.LSTMParams`."""
        return LSTMParams(self.w_ih, self.w_hh, self.b_ih, self.b_hh, self.w_hr, self.w_peep)


# ---------------------------------------------------------------------------- training
#: The optional features a backend's training pass (``forward_train``/``backward``) may
#: support, declared in ``Backend.backward_features``: a subset of the capabilities
#: ``projection``, ``peephole``, ``clip`` (with ``input_forget``) and ``activations``.
BACKWARD_FEATURES: frozenset[str] = frozenset({"projection", "peephole", "clip", "activations"})


@dataclass
class TrainArgs(ForwardArgs):
    """What a training forward kernel (``_forward_train``) gets: :class:`ForwardArgs` plus the
    tape's arrays to fill.

    The kernel writes everything a forward kernel writes (``y`` at valid steps, ``h_n``,
    ``c_n``) and, at each valid step ``t < lengths[b]`` of each row ``b``, what the backward
    pass needs.  Entries at steps past a row's length are never read: leave them as they are.
    ``h0``/``c0`` are never ``h_n``/``c_n`` here (no ``out=``).

    Attributes
    ----------
    gates : array, shape (T, B, 4H)
        The gate activations ``i, f, g, o`` (after their nonlinearities, and for ``f`` after
        ``input_forget``'s ``1 - i``), stacked like the weights.
    cells : array, shape (T, B, H)
        The cell state ``c_t`` after the step.
    clipped : array of bool, shape (T, B, 4H), or None
        With ``clip``: whether each gate's pre-activation (bias and peephole term included)
        lay outside ``[-clip, clip]``, i.e. was clipped (its gradient is then 0).  ``None``
        without ``clip``.
    extras : dict
        Anything else a backend's own backward kernel wants to keep (backend-specific; the
        base class only carries it to :attr:`Tape.extras`).  Empty by default.
    """

    gates: Any = None
    cells: Any = None
    clipped: Any = None
    extras: dict = field(default_factory=dict)


@dataclass(eq=False, repr=False)
class Tape:
    """What ``forward_train`` records for ``backward``: opaque to users, documented for kernels.

    A tape belongs to the backend that recorded it (``backend``) and to its call's shapes;
    ``backward`` refuses any other.  ``backward`` only reads it, so one tape may be used for
    any number of ``backward`` calls.

    It **references** the call's inputs — ``x``, ``h0``, ``c0`` and the weights, as the
    arrays the kernels read (for host backends the caller's own arrays when they were
    C-contiguous; for ``cuda`` with host inputs, their device copies) — and **owns** the saved
    activations: ``gates`` (``4H`` numbers per row and step), ``cells`` (``H``) and, with
    ``clip``, the ``clipped`` mask (``4H`` bytes), allocated for all ``T`` steps (entries past
    a row's length are unused).  So :attr:`nbytes` is ``T * B * 5H * itemsize`` (plus
    ``T * B * 4H`` with ``clip``), whatever the projection.  ``h_{t-1}``, which the weight
    gradient of ``w_hh`` needs, is not stored: it is recomputed from the saved ``o`` and
    ``c`` (``h = o ⊙ tanh(c)``, times ``W_hr.T`` with a projection).  The returned ``y``,
    ``h_n``, ``c_n`` are not referenced and may be modified freely; the referenced inputs
    must not be modified until the last ``backward`` that uses the tape.

    Attributes
    ----------
    backend : str
        Name of the backend that recorded it.
    x : array, shape (T, B, I)
    h0 : array, shape (B, S)
    c0 : array, shape (B, H)
    w_ih, w_hh : arrays, shapes (4H, I), (4H, S)
    w_hr : array, shape (P, H), or None
    w_peep : array, shape (3, H), or None
        References to the inputs, as the kernels read them (``h0``/``c0`` zeros when the
        caller passed ``None``).
    gates : array, shape (T, B, 4H)
    cells : array, shape (T, B, H)
    clipped : array of bool, shape (T, B, 4H), or None
        Saved by the training forward kernel at valid steps (see :class:`TrainArgs`).
    lengths : numpy.ndarray of int64, shape (B,)
    reverse : bool
    full : bool
        Every row runs all ``T`` steps.
    steps, batch, input_size, hidden_size, proj_size : int
        ``T, B, I, H, P`` (``P = 0`` without a projection).
    dtype : numpy.dtype
    clip : float or None
    input_forget : bool
        The cell options of the call.
    has_bias : tuple of 2 bool
        Whether ``b_ih``/``b_hh`` were given (a bias passed as ``None`` gets no gradient).
    device_inputs : bool
        ``x`` was a device array: ``backward`` then returns device arrays.
    extras : dict
        Backend-specific saved values (see :class:`TrainArgs`).
    """

    backend: str
    x: Any
    h0: Any
    c0: Any
    w_ih: Any
    w_hh: Any
    w_hr: Any
    w_peep: Any
    gates: Any
    cells: Any
    clipped: Any
    lengths: np.ndarray
    reverse: bool
    full: bool
    steps: int
    batch: int
    input_size: int
    hidden_size: int
    proj_size: int
    dtype: np.dtype
    clip: float | None = None
    input_forget: bool = False
    has_bias: tuple[bool, bool] = (True, True)
    device_inputs: bool = False
    extras: dict = field(default_factory=dict)

    @property
    def state_size(self) -> int:
        """``S``, the width of ``h`` and ``y``: ``proj_size`` or ``hidden_size``."""
        return self.proj_size or self.hidden_size

    @property
    def nbytes(self) -> int:
        """Bytes the tape owns (the saved activations and extras), not counting the inputs it references."""
        owned = [self.gates, self.cells, self.clipped, *self.extras.values()]
        return sum(int(getattr(a, "nbytes", 0)) for a in owned if a is not None)

    def __repr__(self) -> str:
        t, b, i, h = self.steps, self.batch, self.input_size, self.hidden_size
        proj = f" P={self.proj_size}" if self.proj_size else ""
        return (f"<Tape of {self.backend!r}: T={t} B={b} I={i} H={h}{proj} {self.dtype.name}"
                f"{' reverse' if self.reverse else ''}, {self.nbytes} bytes>")


@dataclass(eq=False, repr=False)
class StackTape:
    """The tape of a stacked, optionally bidirectional LSTM (``forward_layers_train``,
    :meth:`lstm_backends.LSTM.forward_train`): one :class:`Tape` per layer and direction.

    Attributes
    ----------
    backend : str
    tapes : list of list of Tape
        ``tapes[layer][direction]``; layer ``l > 0``'s tapes reference layer ``l - 1``'s
        output (kept alive by the tape, never handed to the caller).
    steps, batch, input_size, hidden_size, state_size : int
        ``T, B, I`` (of the first layer), ``H``, ``S``.
    num_layers, num_directions : int
    dtype : numpy.dtype
    lengths : numpy.ndarray of int64, shape (B,)
    device_inputs : bool
    layout : str
        How :class:`~lstm_backends.LSTM` received ``x``: ``"TBI"``, ``"BTI"`` (``batch_first``)
        or ``"TI"`` (unbatched); ``backward`` takes and returns arrays in the same layout.
    """

    backend: str
    tapes: list
    steps: int
    batch: int
    input_size: int
    hidden_size: int
    state_size: int
    num_layers: int
    num_directions: int
    dtype: np.dtype
    lengths: np.ndarray
    device_inputs: bool = False
    layout: str = "TBI"

    @property
    def nbytes(self) -> int:
        """Bytes the tapes own (see :attr:`Tape.nbytes`), plus the inner layers' outputs they keep."""
        inner = sum(int(getattr(layer[0].x, "nbytes", 0)) for layer in self.tapes[1:])
        return sum(t.nbytes for layer in self.tapes for t in layer) + inner

    def __repr__(self) -> str:
        return (f"<StackTape of {self.backend!r}: {self.num_layers} layers x {self.num_directions} directions, "
                f"T={self.steps} B={self.batch}, {self.nbytes} bytes>")


@dataclass
class BackwardArgs:
    """What a backward kernel (``_backward``) gets: one layer, one direction.

    Inputs are read-only; outputs are to be written, each completely except ``dx`` (valid
    steps only: the base class zeroes ``dx[t, b]`` for ``t >= lengths[b]`` after the kernel).
    Outputs are fresh C-contiguous arrays that overlap nothing.  ``T, B >= 1``.

    The gradients are those of a scalar loss ``L`` given ``dy = ∂L/∂y``, ``dh_n = ∂L/∂h_n``,
    ``dc_n = ∂L/∂c_n`` (zeros where the caller passed ``None``), with PyTorch's packed-sequence
    semantics: ``dy[t, b]`` for ``t >= lengths[b]`` is ignored, and ``dh_n[b]``/``dc_n[b]``
    flow into row ``b``'s last valid step (straight to ``dh0``/``dc0`` for length 0).

    Attributes
    ----------
    tape : Tape
        What ``forward_train`` saved (see :class:`Tape`): inputs, weights, ``gates``, ``cells``,
        ``clipped``, ``lengths``, ``reverse``, the cell options.
    dy : array, shape (T, B, S)
        May be a strided view whose last axis is contiguous (a direction's part of a
        bidirectional layer's output gradient).
    dh_n : array, shape (B, S)
    dc_n : array, shape (B, H)
    dx : array, shape (T, B, I)
    dh0 : array, shape (B, S)
    dc0 : array, shape (B, H)
        Gradients of the input and of the initial state.
    dw_ih : array, shape (4H, I)
    dw_hh : array, shape (4H, S)
    db : array, shape (4H,)
        Gradient of ``b_ih``, which is also that of ``b_hh`` (the base class copies it).
    dw_hr : array, shape (P, H), or None
        With a projection.
    dw_peep : array, shape (3, H), or None
        With peepholes.
    context : object
        What the backend's ``_call_context`` hook returned for this call.
    """

    tape: Tape
    dy: Any
    dh_n: Any
    dc_n: Any
    dx: Any
    dh0: Any
    dc0: Any
    dw_ih: Any
    dw_hh: Any
    db: Any
    dw_hr: Any = None
    dw_peep: Any = None
    context: Any = None

    @property
    def steps(self) -> int:
        return self.tape.steps

    @property
    def batch(self) -> int:
        return self.tape.batch

    @property
    def input_size(self) -> int:
        return self.tape.input_size

    @property
    def hidden_size(self) -> int:
        return self.tape.hidden_size

    @property
    def proj_size(self) -> int:
        return self.tape.proj_size

    @property
    def state_size(self) -> int:
        return self.tape.state_size

    @property
    def dtype(self) -> np.dtype:
        return self.tape.dtype

    @property
    def lengths(self) -> np.ndarray:
        return self.tape.lengths

    @property
    def reverse(self) -> bool:
        return self.tape.reverse
