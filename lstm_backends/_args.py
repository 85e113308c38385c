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

from dataclasses import dataclass
from typing import Any

import numpy as np

from ._activations import Activation
from ._params import LSTMParams

__all__ = ["CAPABILITIES", "CellArgs", "ForwardArgs"]

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
CAPABILITIES: frozenset[str] = frozenset(
    {"forward", "cell", "backward", "projection", "peephole", "clip", "activations", "device-arrays"}
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
