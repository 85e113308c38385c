"""The parameter container shared by every backend."""

from __future__ import annotations

from typing import Any, NamedTuple

__all__ = ["LSTMParams"]


class LSTMParams(NamedTuple):
    """Weights of one LSTM layer in one direction, gates stacked ``i, f, g, o``.

    A plain 4-tuple ``(w_ih, w_hh, b_ih, b_hh)`` is accepted wherever an
    ``LSTMParams`` is.  A layer without bias passes zeros (or ``None``, which the
    validation layer turns into zeros).

    Attributes
    ----------
    w_ih : array, shape (4H, I)
        Input-to-hidden weights, rows grouped by gate ``[i; f; g; o]``.
    w_hh : array, shape (4H, H)
        Hidden-to-hidden (recurrent) weights, same row grouping.
    b_ih : array, shape (4H,)
        Input bias.
    b_hh : array, shape (4H,)
        Recurrent bias.  Only ``b_ih + b_hh`` matters; both exist for PyTorch parity.
    """

    w_ih: Any
    w_hh: Any
    b_ih: Any
    b_hh: Any
