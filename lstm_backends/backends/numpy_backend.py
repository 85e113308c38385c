"""The ``numpy`` backend: the reference implementation, and so the spec.

Plain NumPy, one time step at a time, written to be read.  Every other backend
is checked against this one run in float64.  It computes in the input dtype, and it
implements every optional feature: projection (LSTMP), peepholes, ``clip``,
``input_forget`` and ONNX's whole list of activations.

Math of one step (gates stacked i, f, g, o along the 4H axis; ``σ, φ, ψ`` are the
activations ``f, g, h``, by default sigmoid, tanh, tanh; ``clip`` is the identity unless
``clip=`` is given; ``p_i, p_f, p_o`` the peephole rows, zero without ``w_peep``)::

    z = x_t @ W_ih.T + h @ W_hh.T + b_ih + b_hh           # (B, 4H)
    i = σ(clip(z_i + p_i * c))
    f = 1 - i  if input_forget  else  σ(clip(z_f + p_f * c))
    g = φ(clip(z_g))
    c = f * c + i * g
    o = σ(clip(z_o + p_o * c))                           # sees the new c
    h = o * ψ(c)
    h = h @ W_hr.T                                       # with a projection

This is onnxruntime's order of operations (``uni_directional_lstm.cc``,
``GateComputations``): the peephole term is added before the bias and the clip, the
output gate's peephole reads the updated cell state, and ``input_forget`` takes
``1 - i`` after the activation of ``i``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np
from scipy.special import expit  # overflow-free sigmoid, keeps float32 as float32

from .._activations import Activation, apply_activation
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
    *,
    w_hr: np.ndarray | None = None,
    w_peep: np.ndarray | None = None,
    clip: float | None = None,
    input_forget: bool = False,
    activations: Sequence[Activation] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One LSTM step for a batch, in the dtype of the inputs.

    ``S`` is the width of ``h``: ``P`` with a projection, else ``H``.

    Parameters
    ----------
    x_t : array, shape (B, I)
    h : array, shape (B, S)
    c : array, shape (B, H)
        State before the step.
    w_ih : array, shape (4H, I)
    w_hh : array, shape (4H, S)
    bias : array, shape (4H,)
        ``b_ih + b_hh``.
    w_hr : array, shape (P, H), optional
        Projection: ``h_new = (o * ψ(c_new)) @ w_hr.T``.
    w_peep : array, shape (3, H), optional
        Peepholes of gates i, f (on ``c``) and o (on ``c_new``).
    clip : float, optional
        Bound of every gate pre-activation, applied before its activation.
    input_forget : bool
        ``f = 1 - i``.
    activations : sequence of 3 Activation, optional
        ``(f, g, h)``; sigmoid, tanh, tanh when omitted.

    Returns
    -------
    h_new : array, shape (B, S)
    c_new : array, shape (B, H)
        Fresh arrays; the inputs are not modified.
    """
    hidden = c.shape[1]
    gates = x_t @ w_ih.T + h @ w_hh.T + bias
    z_i, z_f, z_g, z_o = (gates[:, k * hidden: (k + 1) * hidden] for k in range(4))
    if activations is None:
        act_f, act_g, act_h = expit, np.tanh, np.tanh
    else:
        act_f, act_g, act_h = (lambda z, a=a: apply_activation(a, z) for a in activations)

    def bound(z: np.ndarray) -> np.ndarray:
        return z if clip is None else np.clip(z, -clip, clip)  # NaN stays NaN

    if w_peep is not None:
        z_i = z_i + w_peep[0] * c
        z_f = z_f + w_peep[1] * c
    i = act_f(bound(z_i))
    f = 1 - i if input_forget else act_f(bound(z_f))
    g = act_g(bound(z_g))
    c_new = f * c + i * g
    if w_peep is not None:
        z_o = z_o + w_peep[2] * c_new  # the output gate peeps at the new cell state
    o = act_f(bound(z_o))
    h_new = o * act_h(c_new)
    if w_hr is not None:
        h_new = h_new @ w_hr.T
    return h_new, c_new


def _options(args: ForwardArgs | CellArgs) -> dict:
    return {"w_hr": args.w_hr, "w_peep": args.w_peep, "clip": args.clip, "input_forget": args.input_forget,
            "activations": args.activations}


class NumpyBackend(Backend):
    """Reference backend: readable per-step NumPy; the spec the others are checked against."""

    name: ClassVar[str] = "numpy"
    description: ClassVar[str] = "Reference implementation in plain NumPy, one step at a time"
    capabilities: ClassVar[frozenset[str]] = frozenset(
        {"forward", "cell", "projection", "peephole", "clip", "activations"})
    auto_priority: ClassVar[int | None] = 0

    @classmethod
    def version(cls) -> str:
        return np.__version__

    def _forward(self, args: ForwardArgs) -> None:
        steps, batch = args.steps, args.batch
        lengths = args.lengths
        bias = args.b_ih + args.b_hh
        options = _options(args)
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
            h_new, c_new = lstm_step(x_s, h, c, args.w_ih, args.w_hh, bias, **options)
            h = np.where(active[:, None], h_new, h)
            c = np.where(active[:, None], c_new, c)
            args.y[t[active], rows[active]] = h_new[active]
        args.h_n[...] = h
        args.c_n[...] = c

    def _cell(self, args: CellArgs) -> None:
        # lstm_step allocates its temporaries: the reference favours clarity over allocation-free steps
        h_new, c_new = lstm_step(args.x, args.h, args.c, args.w_ih, args.w_hh, args.b_ih + args.b_hh,
                                 **_options(args))
        args.h_out[...] = h_new
        args.c_out[...] = c_new
