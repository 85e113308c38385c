"""Example lstm_backends plugin: a NumPy backend with a hoisted input projection.

A plugin is one class deriving from :class:`lstm_backends.Backend` with class-level
metadata (``capabilities`` among it), ``is_available``, and two kernels over validated,
preallocated arrays (:class:`lstm_backends.ForwardArgs`, :class:`lstm_backends.CellArgs`).
It imports public names of ``lstm_backends`` only.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from lstm_backends import Availability, Backend, CellArgs, ForwardArgs

__all__ = ["ExampleBackend"]


class ExampleBackend(Backend):
    """NumPy LSTM that projects the inputs of all steps with one GEMM, then loops over time."""

    name: ClassVar[str] = "example"
    description: ClassVar[str] = "Example plugin: NumPy with one input-projection GEMM for all steps"
    url: ClassVar[str] = "https://github.com/lstm-backends/lstm-backends/tree/main/examples/plugin"
    install_hint: ClassVar[str] = "pip install ./examples/plugin"
    capabilities: ClassVar[frozenset[str]] = frozenset({"forward", "cell"})

    @classmethod
    def is_available(cls) -> Availability:
        return Availability(True, "")

    @classmethod
    def version(cls) -> str:
        return "0.1.0"

    def _forward(self, args: ForwardArgs) -> None:
        # Write y at valid steps only (the base class zeroes the rest), h_n and c_n.
        steps, batch, hidden = args.steps, args.batch, args.hidden_size
        lengths = args.lengths
        # (T, B, 4H): x @ W_ih.T + b for every step at once
        proj = (args.x.reshape(steps * batch, -1) @ args.w_ih.T).reshape(steps, batch, 4 * hidden)
        proj += args.b_ih + args.b_hh
        h, c = args.h0.copy(), args.c0.copy()
        rows = np.arange(batch)
        for s in range(int(lengths.max(initial=0))):
            active = s < lengths
            t = np.where(active, lengths - 1 - s if args.reverse else s, 0)
            gates_in = proj[t, rows]  # (B, 4H) this step's input projection per row
            h_new, c_new = _step_from_gates(gates_in + h @ args.w_hh.T, c)
            h = np.where(active[:, None], h_new, h)
            c = np.where(active[:, None], c_new, c)
            args.y[t[active], rows[active]] = h_new[active]
        args.h_n[...] = h
        args.c_n[...] = c

    def _cell(self, args: CellArgs) -> None:
        gates = args.x @ args.w_ih.T + args.h @ args.w_hh.T + (args.b_ih + args.b_hh)
        h_new, c_new = _step_from_gates(gates, args.c)
        args.h_out[...] = h_new
        args.c_out[...] = c_new


def _step_from_gates(gates: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gate nonlinearities and state update from pre-activations (B, 4H), gates i, f, g, o."""
    i, f, g, o = np.split(gates, 4, axis=1)
    sig = lambda z: 0.5 * (1.0 + np.tanh(0.5 * z))  # noqa: E731 - overflow-free sigmoid
    c_new = sig(f) * c + sig(i) * np.tanh(g)
    return sig(o) * np.tanh(c_new), c_new
