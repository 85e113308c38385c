"""The ``numpy`` backend: the reference implementation, and so the spec.

Plain NumPy, one time step at a time, written to be read.  Every other backend
is checked against this one run in float64.  It computes in the input dtype.

Math of one step (gates stacked i, f, g, o along the 4H axis)::

    gates = x_t @ W_ih.T + b_ih + h @ W_hh.T + b_hh      # (B, 4H)
    i, f, o = sigmoid(gates[i]), sigmoid(gates[f]), sigmoid(gates[o])
    g = tanh(gates[g])
    c = f * c + i * g
    h = o * tanh(c)
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from scipy.special import expit  # overflow-free sigmoid, keeps float32 as float32

from .._args import CellArgs, ForwardArgs
from ._base import Backend

__all__ = ["NumpyBackend", "lstm_step"]


def lstm_step(
    x_t: np.ndarray,
    h: np.ndarray,
    c: np.ndarray,
    w_ih: np.ndarray,
    w_hh: np.ndarray,
    bias: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """One LSTM step for a batch, in the dtype of the inputs.

    Parameters
    ----------
    x_t : array, shape (B, I)
    h, c : array, shape (B, H)
        State before the step.
    w_ih : array, shape (4H, I)
    w_hh : array, shape (4H, H)
    bias : array, shape (4H,)
        ``b_ih + b_hh``.

    Returns
    -------
    h_new, c_new : array, shape (B, H)
        Fresh arrays; the inputs are not modified.
    """
    hidden = h.shape[1]
    gates = x_t @ w_ih.T + h @ w_hh.T + bias
    i = expit(gates[:, 0 * hidden : 1 * hidden])
    f = expit(gates[:, 1 * hidden : 2 * hidden])
    g = np.tanh(gates[:, 2 * hidden : 3 * hidden])
    o = expit(gates[:, 3 * hidden : 4 * hidden])
    c_new = f * c + i * g
    h_new = o * np.tanh(c_new)
    return h_new, c_new


class NumpyBackend(Backend):
    """Reference backend: readable per-step NumPy; the spec the others are checked against."""

    name: ClassVar[str] = "numpy"
    description: ClassVar[str] = "Reference implementation in plain NumPy, one step at a time"
    capabilities: ClassVar[frozenset[str]] = frozenset({"forward", "cell"})
    auto_priority: ClassVar[int | None] = 0

    @classmethod
    def version(cls) -> str:
        return np.__version__

    def _forward(self, args: ForwardArgs) -> None:
        steps, batch = args.steps, args.batch
        lengths = args.lengths
        bias = args.b_ih + args.b_hh
        rows = np.arange(batch)
        h, c = args.h0.copy(), args.c0.copy()
        for s in range(steps):
            active = s < lengths  # (B,) rows that still have a step to run
            if not active.any():
                break
            # Each row's time index at step s: forward runs t = s; reverse runs
            # t = lengths[b]-1-s, so a row walks back over its own valid part.
            t = lengths - 1 - s if args.reverse else np.full(batch, s)
            t = np.where(active, t, 0)
            x_s = args.x[t, rows]  # (B, I)
            h_new, c_new = lstm_step(x_s, h, c, args.w_ih, args.w_hh, bias)
            h = np.where(active[:, None], h_new, h)
            c = np.where(active[:, None], c_new, c)
            args.y[t[active], rows[active]] = h_new[active]
        args.h_n[...] = h
        args.c_n[...] = c

    def _cell(self, args: CellArgs) -> None:
        # lstm_step allocates its temporaries: the reference favours clarity over allocation-free steps
        h_new, c_new = lstm_step(args.x, args.h, args.c, args.w_ih, args.w_hh, args.b_ih + args.b_hh)
        args.h_out[...] = h_new
        args.c_out[...] = c_new
