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
