"""The conformance suite must fail on broken backends: each mutant below has one classic bug."""

import numpy as np
import pytest

from lstm_backends.backends.numpy_backend import NumpyBackend
from lstm_backends.testing import ConformanceError, run_conformance
from lstm_backends.testing.conformance import CHECKS


class SwappedGates(NumpyBackend):
    """Treats the gate blocks as i, g, f, o (haste's order) instead of i, f, g, o."""

    name = "mutant-swapped"

    def _forward(self, args):
        from lstm_backends.layouts import reorder_gates

        for attr in ("w_ih", "w_hh", "b_ih", "b_hh"):
            setattr(args, attr, reorder_gates(getattr(args, attr), "ifgo", "igfo"))
        super()._forward(args)


class NoRecurrentBias(NumpyBackend):
    name = "mutant-bias"

    def _forward(self, args):
        args.b_hh = np.zeros_like(args.b_hh)
        super()._forward(args)


class IgnoresLengths(NumpyBackend):
    name = "mutant-lengths"

    def _forward(self, args):
        args.lengths = np.full(args.batch, args.steps, np.int64)
        super()._forward(args)


class ReversesWholeSequence(NumpyBackend):
    """Runs the reverse direction from T-1 for every row, ignoring each row's own length."""

    name = "mutant-reverse"

    def _forward(self, args):
        if args.reverse:
            args.x = args.x[::-1].copy()
            args.reverse = False
            super()._forward(args)
            args.y[...] = args.y[::-1].copy()
        else:
            super()._forward(args)


class Float32Inside(NumpyBackend):
    """Computes float64 problems in float32 (a silent precision loss)."""

    name = "mutant-precision"

    def _forward(self, args):
        y, h, c = NumpyBackend().forward(args.x.astype(np.float32), [p.astype(np.float32) for p in args.params],
                                         args.h0.astype(np.float32), args.c0.astype(np.float32),
                                         lengths=args.lengths, reverse=args.reverse)
        args.y[...], args.h_n[...], args.c_n[...] = y, h, c


@pytest.mark.parametrize(
    "mutant, check",
    [
        (SwappedGates, "forward"),
        (NoRecurrentBias, "forward"),
        (IgnoresLengths, "lengths"),
        (ReversesWholeSequence, "lengths"),
        (Float32Inside, "forward"),
    ],
)
def test_mutant_fails(mutant, check):
    with pytest.raises(ConformanceError) as info:
        run_conformance(mutant(), [check])
    message = str(info.value)
    assert "seed=" in message and "worst at" in message or "must be 0" in message


def test_all_checks_pass_on_reference():
    results = run_conformance(NumpyBackend())
    assert [r.name for r in results] == list(CHECKS)
    assert all(r.passed for r in results)
