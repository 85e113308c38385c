"""The parameter container shared by every backend."""

from __future__ import annotations

from typing import Any, NamedTuple

__all__ = ["LSTMGrads", "LSTMParams"]


class LSTMParams(NamedTuple):
    """Weights of one LSTM layer in one direction, gates stacked ``i, f, g, o``.

    A plain tuple ``(w_ih, w_hh, b_ih, b_hh)`` (or with one or both optional trailing
    fields, 5 or 6 items) is accepted wherever an ``LSTMParams`` is.  A layer without bias
    passes zeros (or ``None``, which the validation layer turns into zeros).

    Iterating an ``LSTMParams`` yields all six fields, the optional ones ``None`` when
    absent: use ``params[:4]`` for the four arrays every layer has.

    Attributes
    ----------
    w_ih : array, shape (4H, I)
        Input-to-hidden weights, rows grouped by gate ``[i; f; g; o]``.
    w_hh : array, shape (4H, H), or (4H, P) with a projection
        Hidden-to-hidden (recurrent) weights, same row grouping.  They multiply ``h``,
        which has ``P`` columns when ``w_hr`` is given.
    b_ih : array, shape (4H,)
        Input bias.
    b_hh : array, shape (4H,)
        Recurrent bias.  Only ``b_ih + b_hh`` matters; both exist for PyTorch parity.
    w_hr : array, shape (P, H), optional
        Projection (LSTMP, PyTorch's ``proj_size``): ``h_t = W_hr (o ⊙ tanh(c_t))``, so
        ``h`` (and ``y``) have ``P`` columns while ``c`` keeps ``H``.  Needs the backend
        capability ``projection``.
    w_peep : array, shape (3, H), optional
        Peephole weights of the gates ``i, f, o``, in that order (ONNX's ``P`` is stored
        ``i, o, f``: :func:`lstm_backends.onnx.load` reorders).  ``i`` and ``f`` see
        ``c_{t-1}``, ``o`` sees the new ``c_t``.  Needs the capability ``peephole``.
    """

    w_ih: Any
    w_hh: Any
    b_ih: Any
    b_hh: Any
    w_hr: Any = None
    w_peep: Any = None


class LSTMGrads(NamedTuple):
    """Gradients from ``Backend.backward``: of the input, of the initial state, and of the weights.

    ``S`` is the width of ``h``: ``P`` with a projection, else ``H``.

    Attributes
    ----------
    dx : array, shape (T, B, I)
        Zero at steps past a row's length.
    dh0 : array, shape (B, S)
    dc0 : array, shape (B, H)
        Also when the caller passed ``h0``/``c0 = None`` (zeros): the gradient of the initial state.
    dparams : LSTMParams
        The gradient of every field of the call's params, ``None`` for a field that was
        ``None`` (an absent bias, projection or peephole).  From ``Backend.backward_layers``:
        a list over layers of lists over directions of ``LSTMParams``.
    """

    dx: Any
    dh0: Any
    dc0: Any
    dparams: Any
