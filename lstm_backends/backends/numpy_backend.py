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
from typing import Any, ClassVar

import numpy as np
from scipy.special import expit  # overflow-free sigmoid, keeps float32 as float32

from .._activations import Activation, apply_activation
from .._args import BackwardArgs, CellArgs, ForwardArgs, TrainArgs
from ._base import Backend

__all__ = ["NumpyBackend", "lstm_step", "lstm_step_backward", "lstm_step_train", "product"]


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
    precision: str | None = None,
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
    precision : {None, "bf16", "bf16x3"}
        The products' precision mode (see :func:`product`).

    Returns
    -------
    h_new : array, shape (B, S)
    c_new : array, shape (B, H)
        Fresh arrays; the inputs are not modified.
    """
    h_new, c_new, _, _ = _step(x_t, h, c, w_ih, w_hh, bias, w_hr, w_peep, clip, input_forget, activations, False,
                               precision)
    return h_new, c_new


def lstm_step_train(
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
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """:func:`lstm_step`, also returning what the backward pass needs from the step.

    Parameters
    ----------
    x_t, h, c, w_ih, w_hh, bias, w_hr, w_peep, clip, input_forget, activations
        As for :func:`lstm_step`.

    Returns
    -------
    h_new : array, shape (B, S)
    c_new : array, shape (B, H)
        Exactly those of :func:`lstm_step`.
    gates : array, shape (B, 4H)
        The activations ``i, f, g, o`` (``f = 1 - i`` with ``input_forget``).
    clipped : array of bool, shape (B, 4H), or None
        With ``clip``: whether each pre-activation lay outside ``[-clip, clip]``.
    """
    return _step(x_t, h, c, w_ih, w_hh, bias, w_hr, w_peep, clip, input_forget, activations, True)


def _bf16(a: np.ndarray) -> np.ndarray:
    """``a`` rounded to bfloat16 (to nearest, ties to even), as ``a``'s dtype."""
    import ml_dtypes

    return np.asarray(a).astype(ml_dtypes.bfloat16).astype(a.dtype)


def product(a: np.ndarray, w: np.ndarray, precision: str | None = None) -> np.ndarray:
    """``a @ w.T`` in a precision mode (see ``Backend.prepare``), in ``a``'s dtype.

    ``None``: the dtype's own product.  ``"bf16"``: both operands rounded to bfloat16, their
    products summed exactly enough (in float64) that only the operands' rounding shows.
    ``"bf16x3"``: each operand split ``hi + lo`` (``hi`` its bfloat16 rounding, ``lo`` that of the
    rest), and ``hi·hi + hi·lo + lo·hi`` (the ``lo·lo`` term dropped), also summed in float64.
    A backend's float32 accumulation differs from these by its summation order only.

    Parameters
    ----------
    a : array, shape (B, K)
    w : array, shape (N, K)
    precision : {None, "bf16", "bf16x3"}

    Returns
    -------
    array, shape (B, N)
    """
    if precision is None:
        return a @ w.T
    a_hi, w_hi = _bf16(a), _bf16(w)
    wide = np.float64
    out = a_hi.astype(wide) @ w_hi.T.astype(wide)
    if precision == "bf16x3":
        a_lo, w_lo = _bf16(a - a_hi), _bf16(w - w_hi)
        out += a_hi.astype(wide) @ w_lo.T.astype(wide) + a_lo.astype(wide) @ w_hi.T.astype(wide)
    return out.astype(a.dtype)


def _step(x_t: np.ndarray, h: np.ndarray, c: np.ndarray, w_ih: np.ndarray, w_hh: np.ndarray, bias: np.ndarray,
          w_hr: np.ndarray | None, w_peep: np.ndarray | None, clip: float | None, input_forget: bool,
          activations: Sequence[Activation] | None, save: bool, precision: str | None = None
          ) -> tuple[Any, Any, Any, Any]:
    """The step of :func:`lstm_step` (and, with ``save``, the activations and clip mask)."""
    hidden = c.shape[1]
    gates = product(x_t, w_ih, precision) + product(h, w_hh, precision) + bias
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
        h_new = product(h_new, w_hr, precision)
    if not save:
        return h_new, c_new, None, None
    clipped = None if clip is None else np.concatenate([np.abs(z) > clip for z in (z_i, z_f, z_g, z_o)], axis=1)
    return h_new, c_new, np.concatenate([i, f, g, o], axis=1), clipped


def lstm_step_backward(
    dm: np.ndarray,
    dc: np.ndarray,
    gates: np.ndarray,
    c: np.ndarray,
    c_prev: np.ndarray,
    *,
    clipped: np.ndarray | None = None,
    w_peep: np.ndarray | None = None,
    input_forget: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """One step of back-propagation through time for a batch of rows: the textbook recursions.

    With ``m = o ⊙ tanh(c)`` (``h`` itself without a projection), ``σ' = σ(1 - σ)`` and
    ``tanh' = 1 - tanh²``, written with the saved activations::

        do   = dm ⊙ tanh(c)
        dc  += dm ⊙ o ⊙ (1 - tanh²(c))
        dz_o = do ⊙ o ⊙ (1 - o)
        dc  += dz_o ⊙ p_o                          (peephole: o sees the new c)
        di = dc ⊙ g     dg = dc ⊙ i     df = dc ⊙ c_prev
        di -= df, df = 0                          (input_forget: f = 1 - i)
        dz_i = di ⊙ i ⊙ (1 - i)   dz_f = df ⊙ f ⊙ (1 - f)   dz_g = dg ⊙ (1 - g²)
        dc_prev = dc ⊙ f + dz_i ⊙ p_i + dz_f ⊙ p_f

    and every ``dz`` is 0 where its pre-activation was clipped.

    Parameters
    ----------
    dm : array, shape (B, H)
        Gradient of the loss with respect to ``m`` of this step (``dh @ W_hr`` with a projection).
    dc : array, shape (B, H)
        Gradient with respect to this step's cell state, from the later steps (``dc_n`` at a
        row's last step).
    gates : array, shape (B, 4H)
        The saved activations ``i, f, g, o`` of the step.
    c, c_prev : arrays, shape (B, H)
        The cell state after and before the step.
    clipped : array of bool, shape (B, 4H), optional
        Which pre-activations were clipped (``clip``).
    w_peep : array, shape (3, H), optional
        Peepholes of gates i, f, o.
    input_forget : bool
        ``f = 1 - i``: ``f`` has no pre-activation of its own.

    Returns
    -------
    dz : array, shape (B, 4H)
        Gradient with respect to the gate pre-activations ``z = x W_ih.T + h W_hh.T + b``
        (peephole terms included), gates ``i, f, g, o``.
    dc_prev : array, shape (B, H)
        Gradient with respect to the cell state before the step.
    """
    hidden = c.shape[1]
    i, f, g, o = (gates[:, k * hidden: (k + 1) * hidden] for k in range(4))
    tanh_c = np.tanh(c)
    do = dm * tanh_c
    dc = dc + dm * o * (1 - tanh_c * tanh_c)
    dz_o = do * o * (1 - o)
    if clipped is not None:
        dz_o = np.where(clipped[:, 3 * hidden:], 0, dz_o)
    if w_peep is not None:
        dc = dc + dz_o * w_peep[2]
    di, dg, df = dc * g, dc * i, dc * c_prev
    if input_forget:
        di = di - df
        df = np.zeros_like(df)
    dz_i = di * i * (1 - i)
    dz_f = df * f * (1 - f)
    dz_g = dg * (1 - g * g)
    dz = np.concatenate([dz_i, dz_f, dz_g, dz_o], axis=1)
    if clipped is not None:
        dz = np.where(clipped, 0, dz)
        dz_i, dz_f = dz[:, :hidden], dz[:, hidden: 2 * hidden]
    dc_prev = dc * f
    if w_peep is not None:
        dc_prev = dc_prev + dz_i * w_peep[0] + dz_f * w_peep[1]
    return dz, dc_prev


def _time(s: int, lengths: np.ndarray, reverse: bool) -> np.ndarray:
    """Each row's time index at step ``s``: forward runs ``t = s``; reverse runs
    ``t = lengths[b] - 1 - s``, so a row walks back over its own valid part."""
    return lengths - 1 - s if reverse else np.full(len(lengths), s)


def _output(gates: np.ndarray, c: np.ndarray, w_hr: np.ndarray | None) -> np.ndarray:
    """``h`` of a step recomputed from its saved ``o`` and ``c``: ``o ⊙ tanh(c)`` (times ``W_hr.T``)."""
    hidden = c.shape[1]
    m = gates[:, 3 * hidden:] * np.tanh(c)
    return m if w_hr is None else m @ w_hr.T


def _options(args: ForwardArgs | CellArgs) -> dict:
    options = {"w_hr": args.w_hr, "w_peep": args.w_peep, "clip": args.clip, "input_forget": args.input_forget,
               "activations": args.activations}
    if args.precision is not None:
        options["precision"] = args.precision
    return options


class NumpyBackend(Backend):
    """Reference backend: readable per-step NumPy; the spec the others are checked against."""

    name: ClassVar[str] = "numpy"
    description: ClassVar[str] = "Reference implementation in plain NumPy, one step at a time"
    capabilities: ClassVar[frozenset[str]] = frozenset(
        {"forward", "cell", "backward", "projection", "peephole", "clip", "activations", "bf16", "bf16x3"})
    #: the precision modes run on float64 too: float64 state and sums over the same bfloat16-rounded
    #: operands, the oracle of the modes
    precision_dtypes: ClassVar[tuple[np.dtype, ...]] = (np.dtype(np.float32), np.dtype(np.float64))
    backward_features: ClassVar[frozenset[str]] = frozenset({"projection", "peephole", "clip"})
    auto_priority: ClassVar[int | None] = 0

    @classmethod
    def version(cls) -> str:
        return np.__version__

    def _forward(self, args: ForwardArgs) -> None:
        self._run(args, None)

    def _forward_train(self, args: TrainArgs) -> None:
        self._run(args, args)

    def _run(self, args: ForwardArgs, train: TrainArgs | None) -> None:
        """The time loop of ``_forward`` (and of ``_forward_train``, saving each step's activations)."""
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
            t = np.where(active, _time(s, lengths, args.reverse), 0)
            x_s = args.x[t, rows]  # (B, I)
            if train is None:
                h_new, c_new = lstm_step(x_s, h, c, args.w_ih, args.w_hh, bias, **options)
            else:
                options.pop("precision", None)   # (training refuses the precision modes before this)
                h_new, c_new, gates, clipped = lstm_step_train(x_s, h, c, args.w_ih, args.w_hh, bias, **options)
                train.gates[t[active], rows[active]] = gates[active]
                train.cells[t[active], rows[active]] = c_new[active]
                if clipped is not None:
                    train.clipped[t[active], rows[active]] = clipped[active]
            h = np.where(active[:, None], h_new, h)
            c = np.where(active[:, None], c_new, c)
            args.y[t[active], rows[active]] = h_new[active]
        args.h_n[...] = h
        args.c_n[...] = c

    def _backward(self, args: BackwardArgs) -> None:
        """BPTT: the steps of :meth:`_run` in reverse order, each row over its own valid steps.

        ``dh``/``dc`` hold each row's gradient with respect to its state after the step being
        undone (``dh_n``/``dc_n`` until its last valid step is reached, which is how the final
        state's gradient flows straight to that step).  ``h_{t-1}`` is recomputed from the tape
        (``o ⊙ tanh(c)`` of the previous step, times ``W_hr.T`` with a projection).
        """
        tape = args.tape
        lengths, reverse = tape.lengths, tape.reverse
        w_ih, w_hh, w_hr, w_peep = tape.w_ih, tape.w_hh, tape.w_hr, tape.w_peep
        dw_ih, dw_hh, db, dw_hr, dw_peep = args.dw_ih, args.dw_hh, args.db, args.dw_hr, args.dw_peep
        for g in (dw_ih, dw_hh, db, dw_hr, dw_peep):  # accumulated over the steps, in place
            if g is not None:
                g[...] = 0
        dh, dc = args.dh0, args.dc0  # the running gradients end as those of h0 and c0
        dh[...] = args.dh_n
        dc[...] = args.dc_n
        rows = np.arange(args.batch)
        for s in reversed(range(int(lengths.max()))):
            a = rows[s < lengths]  # the rows that ran step s
            t = _time(s, lengths[a], reverse)  # and their time index at step s
            gates, c_t = tape.gates[t, a], tape.cells[t, a]
            if s == 0:
                h_prev, c_prev = tape.h0[a], tape.c0[a]
            else:
                t_prev = _time(s - 1, lengths[a], reverse)
                c_prev = tape.cells[t_prev, a]
                h_prev = _output(tape.gates[t_prev, a], c_prev, w_hr)
            dh_t = dh[a] + args.dy[t, a]  # from the output at t and from step s + 1 (or dh_n)
            if w_hr is not None:  # h = m @ W_hr.T
                dw_hr += dh_t.T @ _output(gates, c_t, None)
                dm = dh_t @ w_hr
            else:
                dm = dh_t
            dz, dc_prev = lstm_step_backward(dm, dc[a], gates, c_t, c_prev,
                                             clipped=None if tape.clipped is None else tape.clipped[t, a],
                                             w_peep=w_peep, input_forget=tape.input_forget)
            args.dx[t, a] = dz @ w_ih
            dh[a] = dz @ w_hh
            dc[a] = dc_prev
            dw_ih += dz.T @ tape.x[t, a]
            dw_hh += dz.T @ h_prev
            db += dz.sum(axis=0)
            if w_peep is not None:
                hidden = tape.hidden_size
                dw_peep[0] += (dz[:, :hidden] * c_prev).sum(axis=0)
                dw_peep[1] += (dz[:, hidden: 2 * hidden] * c_prev).sum(axis=0)
                dw_peep[2] += (dz[:, 3 * hidden:] * c_t).sum(axis=0)

    def _cell(self, args: CellArgs) -> None:
        # lstm_step allocates its temporaries: the reference favours clarity over allocation-free steps
        h_new, c_new = lstm_step(args.x, args.h, args.c, args.w_ih, args.w_hh, args.b_ih + args.b_hh,
                                 **_options(args))
        args.h_out[...] = h_new
        args.c_out[...] = c_new
