"""The numpy reference against independent, deliberately naive computations."""

import math
import warnings

import numpy as np
import pytest

import lstm_backends as lb
from lstm_backends.testing import random_problem


def _sig(z):
    return 1.0 / (1.0 + math.exp(-z))


def test_scalar_cell_by_hand():
    # H = I = B = 1, every weight distinct: gate order i, f, g, o is visible.
    w_ih = np.array([[0.1], [0.2], [0.3], [0.4]])
    w_hh = np.array([[-0.5], [0.6], [-0.7], [0.8]])
    b_ih = np.array([0.01, 0.02, 0.03, 0.04])
    b_hh = np.array([0.05, -0.06, 0.07, -0.08])
    x, h, c = 1.5, -0.25, 0.75
    pre = [w_ih[k, 0] * x + w_hh[k, 0] * h + b_ih[k] + b_hh[k] for k in range(4)]
    i, f, g, o = _sig(pre[0]), _sig(pre[1]), math.tanh(pre[2]), _sig(pre[3])
    c_new = f * c + i * g
    h_new = o * math.tanh(c_new)
    be = lb.get_backend("numpy")
    got_h, got_c = be.cell(np.array([[x]]), np.array([[h]]), np.array([[c]]), (w_ih, w_hh, b_ih, b_hh))
    assert got_h[0, 0] == pytest.approx(h_new, rel=1e-14)
    assert got_c[0, 0] == pytest.approx(c_new, rel=1e-14)


def _per_row_loop(p):
    """Row by row, time step by time step, plain Python loops over lengths."""
    x = p.x.astype(np.float64)
    w_ih, w_hh, b_ih, b_hh = (a.astype(np.float64) for a in p.params[:4])
    steps, batch, _ = x.shape
    hidden = w_hh.shape[1]
    y = np.zeros((steps, batch, hidden))
    h_n, c_n = np.zeros((batch, hidden)), np.zeros((batch, hidden))
    lengths = p.lengths if p.lengths is not None else [steps] * batch
    for b in range(batch):
        h, c = p.h0[b].astype(np.float64), p.c0[b].astype(np.float64)
        order = range(lengths[b] - 1, -1, -1) if p.reverse else range(lengths[b])
        for t in order:
            gates = w_ih @ x[t, b] + b_ih + w_hh @ h + b_hh
            i, f, g, o = np.split(gates, 4)
            sig = np.vectorize(_sig)
            c = sig(f) * c + sig(i) * np.tanh(g)
            h = sig(o) * np.tanh(c)
            y[t, b] = h
        h_n[b], c_n[b] = h, c
    return y, h_n, c_n


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_forward_matches_per_row_loop(reverse, seed):
    p = random_problem(7, 5, 3, 4, dtype=np.float64, seed=seed, lengths="random", reverse=reverse)
    got = p.forward(lb.get_backend("numpy"))
    for g, e in zip(got, _per_row_loop(p)):
        np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_stable_at_huge_preactivations(dtype):
    be = lb.get_backend("numpy")
    p = random_problem(2, 3, 2, 3, dtype=dtype, seed=4)
    p.x[...] = np.array([1e4, -1e4], dtype)[np.arange(p.x.size) % 2].reshape(p.x.shape)
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        y, h_n, c_n = p.forward(be)
    assert np.isfinite(y).all() and np.isfinite(c_n).all()
    assert np.abs(y).max() <= 1.0


def test_reverse_equals_forward_on_flipped_sequence():
    be = lb.get_backend("numpy")
    p = random_problem(6, 3, 2, 4, dtype=np.float64, seed=5)
    y_r, h_r, c_r = be.forward(p.x, p.params, p.h0, p.c0, reverse=True)
    y_f, h_f, c_f = be.forward(p.x[::-1], p.params, p.h0, p.c0)
    np.testing.assert_allclose(y_r, y_f[::-1], rtol=1e-13)
    np.testing.assert_allclose(h_r, h_f, rtol=1e-13)


# ---------------------------------------------------------------------------- the full cell, by hand
def _scalar_full_cell(x, h, c, w_ih, w_hh, b, w_hr, peep, clip, coupled, act):
    """ONNX's equations for H = I = 1, written out one scalar at a time (gates i, f, g, o)."""
    def bound(z):
        return z if clip is None else max(-clip, min(clip, z))

    z = [w_ih[k] * x + w_hh[k] * h + b[k] for k in range(4)]
    i = act[0](bound(z[0] + peep[0] * c))
    f = 1 - i if coupled else act[0](bound(z[1] + peep[1] * c))
    g = act[1](bound(z[2]))
    c_new = f * c + i * g
    o = act[0](bound(z[3] + peep[2] * c_new))
    m = o * act[2](c_new)
    return (m if w_hr is None else w_hr * m), c_new


@pytest.mark.parametrize("clip", [None, 0.6])
@pytest.mark.parametrize("coupled", [False, True])
@pytest.mark.parametrize("project", [False, True])
def test_full_scalar_cell_by_hand(clip, coupled, project):
    w_ih, w_hh = [0.9, -1.2, 0.7, 1.1], [-0.5, 0.6, -0.7, 0.8]
    b = [0.31, -0.42, 0.23, -0.14]
    peep = [0.45, -0.65, 0.85]  # i, f, o: distinct, so a swapped peephole shows
    w_hr = -1.7 if project else None
    x, h, c = 1.3, -0.4, 0.9
    exp_h, exp_c = _scalar_full_cell(x, h, c, w_ih, w_hh, b, w_hr, peep, clip, coupled, (_sig, math.tanh, math.tanh))
    params = lb.LSTMParams(np.array(w_ih)[:, None], np.array(w_hh)[:, None], np.array(b), np.zeros(4),
                           None if w_hr is None else np.array([[w_hr]]), np.array(peep)[:, None])
    got_h, got_c = lb.get_backend("numpy").cell(np.array([[x]]), np.array([[h]]), np.array([[c]]), params,
                                                clip=clip, input_forget=coupled)
    assert got_h[0, 0] == pytest.approx(exp_h, rel=1e-14)
    assert got_c[0, 0] == pytest.approx(exp_c, rel=1e-14)


_BY_HAND = {
    "Relu": lambda x, a, b: max(0.0, x),
    "Tanh": lambda x, a, b: math.tanh(x),
    "Sigmoid": lambda x, a, b: _sig(x),
    "Affine": lambda x, a, b: a * x + b,
    "LeakyRelu": lambda x, a, b: x if x >= 0 else a * x,
    "ThresholdedRelu": lambda x, a, b: x if x > a else 0.0,
    "ScaledTanh": lambda x, a, b: a * math.tanh(b * x),
    "HardSigmoid": lambda x, a, b: min(max(a * x + b, 0.0), 1.0),
    "Elu": lambda x, a, b: x if x >= 0 else a * (math.exp(x) - 1),
    "Softsign": lambda x, a, b: x / (1 + abs(x)),
    "Softplus": lambda x, a, b: math.log(1 + math.exp(x)),
}
_DEFAULTS = {"Affine": (1.0, 0.0), "LeakyRelu": (0.01, None), "ThresholdedRelu": (1.0, None),
             "ScaledTanh": (1.0, 1.0), "HardSigmoid": (0.2, 0.5), "Elu": (1.0, None)}


@pytest.mark.parametrize("name", sorted(_BY_HAND))
def test_every_onnx_activation_by_hand_with_onnx_defaults(name):
    from lstm_backends._activations import apply_activation, normalize_activations

    xs = np.array([-3.0, -0.7, -0.01, 0.0, 0.4, 1.0, 2.5, 30.0])
    default = normalize_activations([name, "Tanh", "Tanh"])
    act = (default or lb._activations.DEFAULT_ACTIVATIONS)[0]
    a, b = _DEFAULTS.get(name, (None, None))
    assert (act.alpha, act.beta) == (a, b)
    np.testing.assert_allclose(apply_activation(act, xs), [_BY_HAND[name](x, a, b) for x in xs], rtol=1e-14)
    if a is not None:  # explicit parameters replace the defaults
        custom = normalize_activations([(name, 0.3, 0.6) if b is not None else (name, 0.3), "Tanh", "Tanh"])[0]
        np.testing.assert_allclose(apply_activation(custom, xs),
                                   [_BY_HAND[name](x, 0.3, 0.6 if b is not None else None) for x in xs], rtol=1e-14)
    with warnings.catch_warnings():  # no overflow warnings at extreme inputs, and the dtype is kept
        warnings.simplefilter("error")
        big = apply_activation(act, np.array([-1e4, 1e4], np.float32))
    assert big.dtype == np.float32


def test_onnx_activation_parameters_are_consumed_like_onnxruntime():
    from lstm_backends._activations import Activation, onnx_activations

    acts = onnx_activations(["HardSigmoid", "Tanh", "ScaledTanh", "Sigmoid", "LeakyRelu", "Affine"],
                            [0.3, 1.5, 0.2], [0.4], 2)
    assert acts[0] == (Activation("HardSigmoid", 0.3, 0.4), Activation("Tanh"), Activation("ScaledTanh", 1.5, 1.0))
    assert acts[1] == (Activation("Sigmoid"), Activation("LeakyRelu", 0.2), Activation("Affine", 1.0, 0.0))
    assert onnx_activations(["sigmoid", "tanh", "tanh"], [], [], 1) == [None]
    with pytest.raises(ValueError, match="expected 6"):
        onnx_activations(["Sigmoid", "Tanh", "Tanh"], [], [], 2)


def test_clip_bounds_preactivations_and_keeps_nan():
    be = lb.get_backend("numpy")
    p = random_problem(3, 2, 3, 4, dtype=np.float64, seed=9)
    p.x[...] *= 100  # every gate saturates without clip
    y, _, _ = be.forward(p.x, p.params, p.h0, p.c0, clip=0.5)
    assert np.abs(y).max() <= _sig(0.5)  # o <= sigmoid(0.5) and |tanh(c)| < 1
    assert np.abs(be.forward(p.x, p.params, p.h0, p.c0)[0]).max() > _sig(0.5)  # without clip it is not
    p.x[0, 1, 0] = np.nan
    y, h_n, _ = be.forward(p.x, p.params, p.h0, p.c0, clip=0.5)
    assert np.isnan(y[:, 1]).all() and not np.isnan(y[:, 0]).any()
