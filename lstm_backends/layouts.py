"""Gate-order and weight-layout conversions, defined once, both ways.

lstm_backends (like PyTorch) stacks the four gates along the ``4H`` axis in the
order **i, f, g, o** (input, forget, cell candidate, output).  Other frameworks
differ in gate order and in whether matrices are stored transposed:

============  ===========  ==================================================
layout        gate order   storage
============  ===========  ==================================================
``pytorch``   i, f, g, o   ``W_ih`` (4H, I), ``W_hh`` (4H, H), two biases (4H,)
``keras``     i, f, c, o   ``kernel`` (I, 4H), ``recurrent_kernel`` (H, 4H), one bias
``onnx``      i, o, f, c   ``W`` (D, 4H, I), ``R`` (D, 4H, H), ``B`` (D, 8H) = [Wb, Rb],
                           peepholes ``P`` (D, 3H) in the order i, o, f
``haste``     i, g, f, o   ``kernel`` (I, 4H), ``recurrent_kernel`` (H, 4H), one bias
``textbook``  f, i, o, g   like PyTorch, gates reordered
============  ===========  ==================================================

(``c`` and ``g`` both name the cell candidate.)  Every ``from_*`` has a ``to_*``
inverse; :func:`reorder_gates` is the primitive they share.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ._params import LSTMParams

__all__ = [
    "GATE_ORDERS",
    "convert_params",
    "from_haste",
    "from_keras",
    "from_onnx",
    "from_textbook",
    "gate_order",
    "onnx_peepholes",
    "reorder_gates",
    "to_haste",
    "to_keras",
    "to_onnx",
    "to_textbook",
]

#: Gate order of each named layout, with ``g`` for the cell candidate.
GATE_ORDERS: dict[str, str] = {
    "pytorch": "ifgo",
    "keras": "ifgo",
    "onnx": "iofg",
    "haste": "igfo",
    "textbook": "fiog",
}


def gate_order(layout: str) -> str:
    """The gate order of a layout name, or a validated 4-letter order string.

    Parameters
    ----------
    layout : str
        A key of :data:`GATE_ORDERS`, or a permutation of ``"ifgo"`` (``c`` may
        stand for ``g``), e.g. ``"iofc"``.

    Returns
    -------
    str
        Four letters, a permutation of ``"ifgo"``.
    """
    if layout in GATE_ORDERS:
        return GATE_ORDERS[layout]
    order = str(layout).lower().replace("c", "g")
    if sorted(order) != sorted("ifgo"):
        raise ValueError(
            f"unknown gate layout {layout!r}: use one of {', '.join(GATE_ORDERS)} "
            "or a permutation of the letters 'ifgo' (c = g)"
        )
    return order


def reorder_gates(a: Any, src: str, dst: str, axis: int = 0) -> np.ndarray:
    """Reorder the four gate blocks of an array from one layout to another.

    Parameters
    ----------
    a : array, the gate axis of length 4H
        E.g. a weight (4H, I) with ``axis=0``, a Keras kernel (I, 4H) with ``axis=1``,
        or a bias (4H,).
    src, dst : str
        Layout names or gate-order strings (see :func:`gate_order`).
    axis : int
        The stacked-gates axis.

    Returns
    -------
    numpy.ndarray
        A new array with the blocks in ``dst`` order.
    """
    a = np.asarray(a)
    n = a.shape[axis]
    if n % 4:
        raise ValueError(f"gate axis {axis} must have length 4H; got {n} (shape {a.shape})")
    src_order, dst_order = gate_order(src), gate_order(dst)
    blocks = np.split(a, 4, axis=axis)
    return np.concatenate([blocks[src_order.index(g)] for g in dst_order], axis=axis)


def convert_params(params: Any, src: str, dst: str) -> LSTMParams:
    """Reorder the gates of PyTorch-shaped parameters, ``(4H, I), (4H, H), (4H,), (4H,)``.

    A projection ``w_hr`` (P, H) and peepholes ``w_peep`` (3, H, gates i, f, o) have no
    stacked-gate axis and are passed through unchanged.

    Parameters
    ----------
    params : LSTMParams or tuple of 4 to 6 items
    src, dst : str
        Gate orders (layout names or order strings).

    Returns
    -------
    LSTMParams
    """
    core = [reorder_gates(p, src, dst, axis=0) for p in tuple(params)[:4]]
    return LSTMParams(*core, *tuple(params)[4:])


def from_textbook(w_ih: Any, w_hh: Any, b_ih: Any, b_hh: Any, w_hr: Any = None, w_peep: Any = None) -> LSTMParams:
    """Parameters in the textbook order f, i, o, g (PyTorch shapes) to ours.

    Parameters
    ----------
    w_ih : array, shape (4H, I)
    w_hh : array, shape (4H, H)
    b_ih, b_hh : array, shape (4H,)
    w_hr, w_peep : array, optional
        Passed through (they have no stacked-gate axis).

    Returns
    -------
    LSTMParams
    """
    return convert_params((w_ih, w_hh, b_ih, b_hh, w_hr, w_peep), "textbook", "pytorch")


def to_textbook(params: Any) -> LSTMParams:
    """Our parameters to the textbook order f, i, o, g (same shapes); inverse of :func:`from_textbook`."""
    return convert_params(params, "pytorch", "textbook")


def _one_bias(params: Any) -> tuple[LSTMParams, np.ndarray]:
    p = LSTMParams(*(None if a is None else np.asarray(a) for a in params))
    return p, p.b_ih + p.b_hh


def from_keras(kernel: Any, recurrent_kernel: Any, bias: Any = None) -> LSTMParams:
    """Keras ``LSTM`` weights (i, f, c, o; transposed; one bias) to ours.

    Parameters
    ----------
    kernel : array, shape (I, 4H)
    recurrent_kernel : array, shape (H, 4H)
    bias : array, shape (4H,), optional
        Becomes ``b_ih``; ``b_hh`` is zeros.

    Returns
    -------
    LSTMParams
    """
    kernel, recurrent_kernel = np.asarray(kernel), np.asarray(recurrent_kernel)
    b = np.zeros(kernel.shape[1], kernel.dtype) if bias is None else np.asarray(bias)
    return LSTMParams(
        reorder_gates(kernel, "keras", "pytorch", axis=1).T.copy(),
        reorder_gates(recurrent_kernel, "keras", "pytorch", axis=1).T.copy(),
        reorder_gates(b, "keras", "pytorch"),
        np.zeros_like(b),
    )


def to_keras(params: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Our parameters to Keras ``(kernel (I, 4H), recurrent_kernel (H, 4H), bias (4H,))``.

    The two biases are summed (Keras has one).
    """
    p, b = _one_bias(params)
    return (
        reorder_gates(p.w_ih.T, "pytorch", "keras", axis=1),
        reorder_gates(p.w_hh.T, "pytorch", "keras", axis=1),
        reorder_gates(b, "pytorch", "keras"),
    )


def from_haste(kernel: Any, recurrent_kernel: Any, bias: Any) -> LSTMParams:
    """haste ``LSTM`` weights (i, g, f, o; ``W: [C, H*4]``, ``R: [H, H*4]``, ``b: [H*4]``) to ours.

    Parameters
    ----------
    kernel : array, shape (I, 4H)
    recurrent_kernel : array, shape (H, 4H)
    bias : array, shape (4H,)
        Becomes ``b_ih``; ``b_hh`` is zeros.

    Returns
    -------
    LSTMParams
    """
    b = np.asarray(bias)
    return LSTMParams(
        reorder_gates(kernel, "haste", "pytorch", axis=1).T.copy(),
        reorder_gates(recurrent_kernel, "haste", "pytorch", axis=1).T.copy(),
        reorder_gates(b, "haste", "pytorch"),
        np.zeros_like(b),
    )


def to_haste(params: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Our parameters to haste ``(kernel (I, 4H), recurrent_kernel (H, 4H), bias (4H,))``."""
    p, b = _one_bias(params)
    return (
        reorder_gates(p.w_ih.T, "pytorch", "haste", axis=1),
        reorder_gates(p.w_hh.T, "pytorch", "haste", axis=1),
        reorder_gates(b, "pytorch", "haste"),
    )


# ONNX stores the peepholes i, o, f; ours are i, f, o.  The permutation is its own inverse.
_ONNX_PEEPHOLE_ORDER = [0, 2, 1]


def from_onnx(W: Any, R: Any, B: Any = None, direction: int = 0, P: Any = None) -> LSTMParams:  # noqa: N803
    """ONNX ``LSTM`` operator weights (i, o, f, c) for one direction to ours.

    Parameters
    ----------
    W : array, shape (num_directions, 4H, I)
    R : array, shape (num_directions, 4H, H)
    B : array, shape (num_directions, 8H), optional
        ``[Wb, Rb]`` concatenated; zeros when omitted.
    direction : int
        0 for forward, 1 for the reverse direction of a bidirectional operator.
    P : array, shape (num_directions, 3H), optional
        Peepholes ``[Pi, Po, Pf]``; becomes ``w_peep`` (3, H) in our order i, f, o.
        ``w_peep`` is ``None`` when omitted (no peepholes, which is the same as zeros).

    Returns
    -------
    LSTMParams
    """
    W, R = np.asarray(W), np.asarray(R)  # noqa: N806
    if W.ndim != 3 or R.ndim != 3:
        raise ValueError(f"ONNX W and R are 3-D (num_directions, 4H, ·); got {W.shape} and {R.shape}")
    hidden = R.shape[2]
    if B is None:
        B = np.zeros((W.shape[0], 8 * hidden), W.dtype)  # noqa: N806
    B = np.asarray(B)  # noqa: N806
    w_peep = None
    if P is not None:
        P = np.asarray(P)  # noqa: N806
        if P.ndim != 2 or P.shape[1] != 3 * hidden:
            raise ValueError(f"ONNX P must have shape (num_directions, 3H) = (D, {3 * hidden}); got {P.shape}")
        w_peep = P[direction].reshape(3, hidden)[_ONNX_PEEPHOLE_ORDER]
    return LSTMParams(
        reorder_gates(W[direction], "onnx", "pytorch"),
        reorder_gates(R[direction], "onnx", "pytorch"),
        reorder_gates(B[direction, : 4 * hidden], "onnx", "pytorch"),
        reorder_gates(B[direction, 4 * hidden :], "onnx", "pytorch"),
        None,
        w_peep,
    )


def to_onnx(params: Sequence[Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Our per-direction parameters to ONNX ``(W, R, B)``; inverse of :func:`from_onnx`.

    Parameters
    ----------
    params : sequence of LSTMParams
        One per direction (forward first).

    Returns
    -------
    W : ndarray, shape (D, 4H, I)
    R : ndarray, shape (D, 4H, H)
    B : ndarray, shape (D, 8H)
    """
    if isinstance(params, LSTMParams):
        raise TypeError("to_onnx takes a sequence of LSTMParams, one per direction: to_onnx([params])")
    W = np.stack([reorder_gates(p[0], "pytorch", "onnx") for p in params])  # noqa: N806
    R = np.stack([reorder_gates(p[1], "pytorch", "onnx") for p in params])  # noqa: N806
    B = np.stack(  # noqa: N806
        [
            np.concatenate([reorder_gates(p[2], "pytorch", "onnx"), reorder_gates(p[3], "pytorch", "onnx")])
            for p in params
        ]
    )
    return W, R, B


def onnx_peepholes(params: Sequence[Any]) -> np.ndarray:
    """Our per-direction peepholes to ONNX ``P``; the inverse of ``from_onnx(..., P=P)``.

    Parameters
    ----------
    params : sequence of LSTMParams
        One per direction (forward first), each with ``w_peep`` (3, H) in the order i, f, o.

    Returns
    -------
    P : ndarray, shape (D, 3H)
        ``[Pi, Po, Pf]`` per direction.
    """
    if isinstance(params, LSTMParams):
        raise TypeError("onnx_peepholes takes a sequence of LSTMParams, one per direction: onnx_peepholes([params])")
    for d, p in enumerate(params):
        if p.w_peep is None:
            raise ValueError(f"params[{d}].w_peep is None: no peepholes to convert")
    return np.stack([np.asarray(p.w_peep)[_ONNX_PEEPHOLE_ORDER].reshape(-1) for p in params])
