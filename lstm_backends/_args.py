"""The argument types a backend's kernels receive: the public plugin contract.

:class:`~lstm_backends.Backend` validates every argument once, converts the inputs and
allocates the outputs (through the backend's hooks), and hands a kernel one of these
objects.  A kernel reads the inputs, writes the outputs, and returns nothing; it never
sees a bad shape, a mixed dtype or an unchecked overlap.

Array types are those of the backend: NumPy arrays for host backends, device arrays for
a device backend (whatever its ``_input``/``_empty`` hooks return).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

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
#: ``device-arrays``
#:     inputs with ``__cuda_array_interface__`` stay on the device
CAPABILITIES: frozenset[str] = frozenset(
    {"forward", "cell", "backward", "projection", "peephole", "clip", "device-arrays"}
)


@dataclass
class ForwardArgs:
    """What a forward kernel gets: one layer, one direction, a whole sequence.

    Inputs are read-only and C-contiguous; outputs are to be written.  ``T, B >= 1``
    (the base class handles empty problems itself).

    Attributes
    ----------
    x : array, shape (T, B, I)
        Time-major input.
    w_ih : array, shape (4H, I)
        Input weights, gates ``i, f, g, o`` stacked along the first axis.
    w_hh : array, shape (4H, H)
        Recurrent weights.
    b_ih, b_hh : array, shape (4H,)
        Biases (zeros when the caller passed ``None``); only their sum matters.
    h0, c0 : array, shape (B, H)
        Initial state (zeros when the caller passed ``None``).  ``h0`` may be the very
        array ``h_n`` and ``c0`` the very array ``c_n`` (an in-place state update): copy
        them into the outputs before writing anything else.
    lengths : numpy.ndarray of int64, shape (B,)
        Valid steps per row, in ``[0, T]``; always a host array, ``T`` everywhere when the
        caller passed none.  Row ``b`` runs steps ``t < lengths[b]`` only.
    reverse : bool
        Row ``b`` runs ``t = lengths[b]-1 … 0``.
    y : array, shape (T, B, H)
        Output at every valid step.  Write ``y[t, b]`` for ``t < lengths[b]`` only: the
        base class zeroes the rest after the kernel.  May be a strided view whose last
        axis is contiguous (a direction's half of a bidirectional layer's output); never
        overlaps an input.
    h_n, c_n : array, shape (B, H)
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

    @property
    def params(self) -> LSTMParams:
        """``(w_ih, w_hh, b_ih, b_hh)`` as an :class:`~lstm_backends.LSTMParams`."""
        return LSTMParams(self.w_ih, self.w_hh, self.b_ih, self.b_hh)


@dataclass
class CellArgs:
    """What a cell kernel gets: one step of a batch.  ``B >= 1``.

    Attributes
    ----------
    x : array, shape (B, I)
        Input at this step.
    h, c : array, shape (B, H)
        State before the step.
    w_ih, w_hh, b_ih, b_hh : arrays, shapes (4H, I), (4H, H), (4H,), (4H,)
        As in :class:`ForwardArgs`.
    h_out, c_out : array, shape (B, H)
        New state, to write.  ``h_out`` may be the very array ``h`` and ``c_out`` the very
        array ``c`` (an in-place update: read all of ``h`` and ``c`` a row needs before
        writing that row); no other overlap with an input or with each other is possible.
    batch, input_size, hidden_size : int
        ``B, I, H``.
    dtype : numpy.dtype
    context : object
        What the backend's ``_call_context`` hook returned (``None`` for host backends).
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

    @property
    def params(self) -> LSTMParams:
        """``(w_ih, w_hh, b_ih, b_hh)`` as an :class:`~lstm_backends.LSTMParams`."""
        return LSTMParams(self.w_ih, self.w_hh, self.b_ih, self.b_hh)
