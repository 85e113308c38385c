"""The conformance suite must fail on broken backends: each mutant below has one classic bug."""

import numpy as np
import pytest

import lstm_backends as lb
from lstm_backends.backends.numpy_backend import NumpyBackend
from lstm_backends.testing import CHECKS, ConformanceError, run_conformance


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
        y, h, c = NumpyBackend().forward(args.x.astype(np.float32), [p.astype(np.float32) for p in args.params[:4]],
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


class CellLeavesCUnwritten(NumpyBackend):
    """Breaks only ``cell``: c_out is never written (the out= path keeps its poison)."""

    name = "mutant-cell-c"

    def _cell(self, args):
        from lstm_backends.backends.numpy_backend import lstm_step

        h_new, _ = lstm_step(args.x, args.h, args.c, args.w_ih, args.w_hh, args.b_ih + args.b_hh)
        args.h_out[...] = h_new


class CellDropsForgetGate(NumpyBackend):
    """Breaks only ``cell``: c_new = i * g (the f * c term dropped)."""

    name = "mutant-cell-f"

    def _cell(self, args):
        p = args.params
        zero_state = np.zeros_like(args.c)
        from lstm_backends.backends.numpy_backend import lstm_step

        h_new, c_new = lstm_step(args.x, args.h, zero_state, p.w_ih, p.w_hh, p.b_ih + p.b_hh)
        args.h_out[...] = h_new
        args.c_out[...] = c_new


@pytest.mark.parametrize("mutant", [CellLeavesCUnwritten, CellDropsForgetGate])
def test_cell_only_mutants_fail_cell_checks(mutant):
    results = {r.name: r for r in run_conformance(mutant(), raise_on_failure=False)}
    assert not results["cell"].passed and not results["cell"].skipped
    assert results["forward"].passed  # forward is untouched


# Plugins written against public names only, with one dtype each: the kit must not assume two.

def _single_dtype_plugin(dtype, train=False):
    class SingleDtype(lb.Backend):
        name = f"only-{np.dtype(dtype).name}{'-training' if train else ''}"
        dtypes = (np.dtype(dtype),)
        capabilities = frozenset({"forward", "cell", "backward"} if train else {"forward", "cell"})

        def _forward(self, args: lb.ForwardArgs) -> None:
            h, c = args.h0.copy(), args.c0.copy()
            for b in range(args.batch):
                steps = range(args.lengths[b])
                for t in (reversed(steps) if args.reverse else steps):
                    h[b], c[b] = _step(args.x[t, b][None], h[b][None], c[b][None], args.params)
                    args.y[t, b] = h[b]
            args.h_n[...] = h
            args.c_n[...] = c

        def _cell(self, args: lb.CellArgs) -> None:
            h, c = _step(args.x, args.h, args.c, args.params)
            args.h_out[...] = h
            args.c_out[...] = c

        def _forward_train(self, args: lb.TrainArgs) -> None:
            h, c = args.h0.copy(), args.c0.copy()
            for b in range(args.batch):
                steps = range(args.lengths[b])
                for t in (reversed(steps) if args.reverse else steps):
                    h[b], c[b], args.gates[t, b] = _step(args.x[t, b][None], h[b][None], c[b][None], args.params,
                                                         save=True)
                    args.cells[t, b] = c[b]
                    args.y[t, b] = h[b]
            args.h_n[...] = h
            args.c_n[...] = c

        def _backward(self, args: lb.BackwardArgs) -> None:
            """BPTT row by row, from the tape alone."""
            tape = args.tape
            args.dw_ih[...], args.dw_hh[...], args.db[...] = 0, 0, 0
            for b in range(args.batch):
                order = list(range(tape.lengths[b]))  # time indices in the order they ran
                order = order[::-1] if tape.reverse else order
                dh, dc = args.dh_n[b].copy(), args.dc_n[b].copy()
                for k in reversed(range(len(order))):
                    t = order[k]
                    i, f, g, o = np.split(tape.gates[t, b], 4)
                    c_prev = tape.c0[b] if k == 0 else tape.cells[order[k - 1], b]
                    h_prev = tape.h0[b] if k == 0 else \
                        np.split(tape.gates[order[k - 1], b], 4)[3] * np.tanh(tape.cells[order[k - 1], b])
                    tanh_c = np.tanh(tape.cells[t, b])
                    dh = dh + args.dy[t, b]
                    dc = dc + dh * o * (1 - tanh_c**2)
                    dz = np.concatenate([dc * g * i * (1 - i), dc * c_prev * f * (1 - f), dc * i * (1 - g**2),
                                         dh * tanh_c * o * (1 - o)])
                    args.dx[t, b] = dz @ tape.w_ih
                    args.dw_ih += np.outer(dz, tape.x[t, b])
                    args.dw_hh += np.outer(dz, h_prev)
                    args.db += dz
                    dh, dc = dz @ tape.w_hh, dc * f
                args.dh0[b], args.dc0[b] = dh, dc

    if not train:
        del SingleDtype._forward_train, SingleDtype._backward
    return SingleDtype()


def _step(x, h, c, p, save=False):
    gates = x @ p.w_ih.T + h @ p.w_hh.T + p.b_ih + p.b_hh
    i, f, g, o = np.split(gates, 4, axis=1)
    sig = lambda z: 0.5 * (1 + np.tanh(0.5 * z))  # noqa: E731
    i, f, g, o = sig(i), sig(f), np.tanh(g), sig(o)
    c_new = f * c + i * g
    if save:
        return o * np.tanh(c_new), c_new, np.concatenate([i, f, g, o], axis=1)[0]
    return o * np.tanh(c_new), c_new


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_single_dtype_public_plugin_passes_the_kit(dtype, train):
    """Plugins written against public names only pass the kit, training included (the plain cell:
    ``backward_features`` empty, so the features are refused by the base class)."""
    results = run_conformance(_single_dtype_plugin(dtype, train))
    assert all(r.passed for r in results if not r.skipped), [r for r in results if not r.passed and not r.skipped]
    skipped = {"projection", "peephole", "clip", "activations", "bf16", "bf16x3"}
    skipped |= {c for c in CHECKS if c.startswith("njit")}
    if not train:
        skipped |= {c for c in CHECKS if c.startswith("backward")}
    assert {r.name for r in results if r.skipped} == skipped


def test_checks_that_do_not_apply_are_skipped_not_passed():
    class ForwardOnly(NumpyBackend):
        name = "forward-only"
        capabilities = frozenset({"forward"})

    results = {r.name: r for r in run_conformance(ForwardOnly())}
    assert results["cell"].skipped and not results["cell"].passed and "cell" in results["cell"].message
    assert results["forward"].passed and not results["forward"].skipped


# Mutants of the optional features: each check of the kit must catch the classic bug of its
# feature.  The mutants run the reference with one line of its step changed.

def _buggy_step(bug):
    from scipy.special import expit

    from lstm_backends._activations import DEFAULT_ACTIVATIONS, apply_activation, normalize_activations

    def step(x_t, h, c, w_ih, w_hh, bias, *, w_hr=None, w_peep=None, clip=None, input_forget=False,
             activations=None):
        hidden = c.shape[1]
        z_i, z_f, z_g, z_o = np.split(x_t @ w_ih.T + h @ w_hh.T + bias, 4, axis=1)
        if activations is None:
            act_f, act_g, act_h = expit, np.tanh, np.tanh
        else:
            if bug == "activation-ignores-alpha":  # every function with its default alpha/beta
                activations = normalize_activations([a.name for a in activations]) or DEFAULT_ACTIVATIONS
            act_f, act_g, act_h = (lambda z, a=a: apply_activation(a, z) for a in activations)

        def bound(z):
            return z if clip is None else np.clip(z, -clip, clip)

        if w_peep is not None:
            if bug == "clip-before-peephole":
                z_i, z_f = bound(z_i) + w_peep[0] * c, bound(z_f) + w_peep[1] * c
            else:
                z_i, z_f = z_i + w_peep[0] * c, z_f + w_peep[1] * c
        if bug == "clip-after-activation":
            i, f_gate, g = bound(act_f(z_i)), bound(act_f(z_f)), bound(act_g(z_g))
        else:
            i, f_gate, g = act_f(bound(z_i)), act_f(bound(z_f)), act_g(bound(z_g))
        if input_forget:
            f_gate = i if bug == "forget-equals-input" else 1 - i
        c_new = f_gate * c + i * g
        if w_peep is not None:
            z_o = z_o + w_peep[2] * (c if bug == "peephole-o-on-old-cell" else c_new)
        o = act_f(bound(z_o))
        h_new = o * act_h(c_new)
        if w_hr is not None:
            h_new = (act_h(c_new) if bug == "projection-drops-output-gate" else h_new) @ w_hr.T
        assert h_new.shape[1] == (hidden if w_hr is None else w_hr.shape[0])
        return h_new, c_new

    return step


def _mutant(bug):
    from unittest import mock

    from lstm_backends.backends import numpy_backend

    class Mutant(NumpyBackend):
        name = f"mutant-{bug}"

        def _forward(self, args):
            with mock.patch.object(numpy_backend, "lstm_step", _buggy_step(bug)):
                super()._forward(args)

        def _cell(self, args):
            with mock.patch.object(numpy_backend, "lstm_step", _buggy_step(bug)):
                super()._cell(args)

    return Mutant()


@pytest.mark.parametrize(
    "bug, check",
    [
        ("peephole-o-on-old-cell", "peephole"),
        ("clip-after-activation", "clip"),
        ("clip-before-peephole", "clip"),
        ("forget-equals-input", "clip"),
        ("projection-drops-output-gate", "projection"),
        ("activation-ignores-alpha", "activations"),
    ],
)
def test_feature_mutant_fails_its_check(bug, check):
    results = {r.name: r for r in run_conformance(_mutant(bug), [check, "forward", "cell"], raise_on_failure=False)}
    assert not results[check].passed and not results[check].skipped, results[check]
    assert "seed=" in results[check].message, results[check].message
    assert results["forward"].passed and results["cell"].passed  # the plain cell is untouched


def test_unmutated_step_passes_the_feature_checks():
    """The mutant harness itself is sound: the step without a bug passes every feature check."""
    results = run_conformance(_mutant("none"), ["projection", "peephole", "clip", "activations"])
    assert all(r.passed for r in results)


class SilentlyIgnoresClip(NumpyBackend):
    """Declares only forward/cell but drops clip= instead of refusing it (a silent fallback)."""

    name = "mutant-silent"
    capabilities = frozenset({"forward", "cell"})

    def forward(self, x, params, h0=None, c0=None, *, clip=None, input_forget=False, activations=None, **kw):
        return super().forward(x, params, h0, c0, **kw)


def test_silent_fallback_fails_the_refusal_check():
    result = run_conformance(SilentlyIgnoresClip(), ["refuses_missing_features"], raise_on_failure=False)[0]
    assert not result.passed and "silent" in result.message


# Mutants of the training pass: the backward checks of the kit must catch them.

def _backward_mutant(bug):
    from unittest import mock

    from lstm_backends.backends import numpy_backend

    right = numpy_backend.lstm_step_backward

    def buggy(dm, dc, gates, c, c_prev, *, clipped=None, w_peep=None, input_forget=False):
        dz, dc_prev = right(dm, dc, gates, c, c_prev, clipped=clipped, w_peep=w_peep, input_forget=input_forget)
        if bug == "drops-forget-term":  # dc_{t-1} = dc_t * f forgotten: only the peephole terms remain
            hidden = c.shape[1]
            dc_prev = dc_prev - (dc + dm * gates[:, 3 * hidden:] * (1 - np.tanh(c) ** 2)) * gates[:, hidden: 2 * hidden]
        return dz, dc_prev

    class Mutant(NumpyBackend):
        name = f"mutant-{bug}"

        def _backward(self, args):
            if bug == "final-state-at-T":  # dh_n, dc_n enter at step T-1: lost for the rows that end earlier
                ended = (args.lengths < args.steps)[:, None]
                args.dh_n, args.dc_n = np.where(ended, 0, args.dh_n), np.where(ended, 0, args.dc_n)
            if bug == "noisy":  # a last-bit change on every call, like an atomic reduction's order
                super()._backward(args)
                self.calls = getattr(self, "calls", 0) + 1
                args.dw_hh[0, 0] = np.nextafter(args.dw_hh[0, 0], np.inf if self.calls % 2 else -np.inf)
                return
            with mock.patch.object(numpy_backend, "lstm_step_backward", buggy):
                super()._backward(args)

    return Mutant()


@pytest.mark.parametrize("bug, check", [("drops-forget-term", "backward"), ("drops-forget-term", "backward_layer"),
                                        ("drops-forget-term", "backward_gradcheck"),
                                        ("final-state-at-T", "backward"), ("noisy", "backward_deterministic")])
def test_backward_mutant_fails_its_check(bug, check):
    result = run_conformance(_backward_mutant(bug), [check], raise_on_failure=False)[0]
    assert not result.passed and not result.skipped, result
    assert "seed=" in result.message or "changed" in result.message, result.message


def test_unmutated_backward_passes_the_backward_checks():
    results = run_conformance(_backward_mutant("none"), [c for c in CHECKS if c.startswith("backward")])
    assert all(r.passed for r in results)
