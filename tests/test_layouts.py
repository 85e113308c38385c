"""Gate-layout conversions, checked against independent per-framework step functions.

Random weights only: with constant weights a swapped gate would go unnoticed.
"""

import numpy as np
import pytest

import lstm_backends as lb
from lstm_backends import layouts
from lstm_backends.testing import random_params

I, H, B = 3, 4, 2  # noqa: E741 - the contract's names


def _sig(z):
    return 1 / (1 + np.exp(-z))


def _step(x, h, c, gates, order):
    """One LSTM step from pre-activations whose 4 blocks are in ``order`` (letters of 'ifgo')."""
    blocks = dict(zip(order, np.split(gates, 4, axis=-1)))
    i, f, g, o = _sig(blocks["i"]), _sig(blocks["f"]), np.tanh(blocks["g"]), _sig(blocks["o"])
    c = f * c + i * g
    return o * np.tanh(c), c


@pytest.fixture
def case():
    rng = np.random.default_rng(42)
    params = random_params(I, H, dtype=np.float64, rng=rng, scale=2.0)
    x = rng.standard_normal((B, I))
    h = rng.standard_normal((B, H))
    c = rng.standard_normal((B, H))
    ours = lb.get_backend("numpy").cell(x, h, c, params)
    return params, x, h, c, ours


def test_keras(case):
    params, x, h, c, ours = case
    kernel, recurrent, bias = layouts.to_keras(params)
    assert kernel.shape == (I, 4 * H) and recurrent.shape == (H, 4 * H) and bias.shape == (4 * H,)
    # Keras: z = x @ kernel + h @ recurrent_kernel + bias, gates i, f, c, o
    theirs = _step(x, h, c, x @ kernel + h @ recurrent + bias, "ifgo")
    np.testing.assert_allclose(theirs, ours, rtol=1e-12)
    back = layouts.from_keras(kernel, recurrent, bias)
    again = lb.get_backend("numpy").cell(x, h, c, back)
    np.testing.assert_allclose(again, ours, rtol=1e-12)


def test_onnx(case):
    params, x, h, c, ours = case
    W, R, Bias = layouts.to_onnx([params])
    assert W.shape == (1, 4 * H, I) and R.shape == (1, 4 * H, H) and Bias.shape == (1, 8 * H)
    # ONNX: it = f(Xt*(Wi^T) + Ht-1*(Ri^T) + Wbi + Rbi) ..., blocks i, o, f, c
    z = x @ W[0].T + h @ R[0].T + Bias[0, : 4 * H] + Bias[0, 4 * H :]
    theirs = _step(x, h, c, z, "iofg")
    np.testing.assert_allclose(theirs, ours, rtol=1e-12)
    back = layouts.from_onnx(W, R, Bias)
    for a, b in zip(back, params):
        np.testing.assert_array_equal(a, b)


def test_onnx_bidirectional_round_trip():
    rng = np.random.default_rng(1)
    fwd, rev = random_params(I, H, rng=rng), random_params(I, H, rng=rng)
    W, R, Bias = layouts.to_onnx([fwd, rev])
    assert W.shape[0] == 2
    for d, p in enumerate((fwd, rev)):
        for a, b in zip(layouts.from_onnx(W, R, Bias, direction=d), p):
            np.testing.assert_array_equal(a, b)
    no_bias = layouts.from_onnx(W, R)
    assert not no_bias.b_ih.any() and not no_bias.b_hh.any()
    with pytest.raises(TypeError, match="sequence"):
        layouts.to_onnx(fwd)


def test_haste(case):
    params, x, h, c, ours = case
    kernel, recurrent, bias = layouts.to_haste(params)
    assert kernel.shape == (I, 4 * H)
    theirs = _step(x, h, c, x @ kernel + h @ recurrent + bias, "igfo")
    np.testing.assert_allclose(theirs, ours, rtol=1e-12)
    again = lb.get_backend("numpy").cell(x, h, c, layouts.from_haste(kernel, recurrent, bias))
    np.testing.assert_allclose(again, ours, rtol=1e-12)


def test_textbook(case):
    params, x, h, c, ours = case
    tb = layouts.to_textbook(params)
    z = x @ tb.w_ih.T + h @ tb.w_hh.T + tb.b_ih + tb.b_hh
    np.testing.assert_allclose(_step(x, h, c, z, "fiog"), ours, rtol=1e-12)
    for a, b in zip(layouts.from_textbook(*tb), params):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("src", list(layouts.GATE_ORDERS))
@pytest.mark.parametrize("dst", list(layouts.GATE_ORDERS))
def test_reorder_round_trip_and_block_positions(src, dst):
    a = np.arange(4 * 3 * 2).reshape(12, 2)
    there = layouts.reorder_gates(a, src, dst)
    np.testing.assert_array_equal(layouts.reorder_gates(there, dst, src), a)
    so, do = layouts.gate_order(src), layouts.gate_order(dst)
    for k, gate in enumerate(do):
        np.testing.assert_array_equal(there[3 * k : 3 * k + 3], a[3 * so.index(gate) : 3 * so.index(gate) + 3])


def test_gate_order_strings_and_errors():
    assert layouts.gate_order("iofc") == "iofg"
    with pytest.raises(ValueError, match="unknown gate layout"):
        layouts.gate_order("ifgx")
    with pytest.raises(ValueError, match="4H"):
        layouts.reorder_gates(np.zeros(6), "onnx", "pytorch")


def test_onnx_peepholes_by_hand_and_round_trip():
    rng = np.random.default_rng(2)
    fwd, rev = (random_params(I, H, rng=rng, peephole=True, dtype=np.float64) for _ in range(2))
    W, R, Bias = layouts.to_onnx([fwd, rev])
    P = layouts.onnx_peepholes([fwd, rev])
    assert P.shape == (2, 3 * H)
    # ONNX stores the peepholes i, o, f
    np.testing.assert_array_equal(P[1, :H], rev.w_peep[0])
    np.testing.assert_array_equal(P[1, H:2 * H], rev.w_peep[2])
    np.testing.assert_array_equal(P[1, 2 * H:], rev.w_peep[1])
    for d, p in enumerate((fwd, rev)):
        back = layouts.from_onnx(W, R, Bias, direction=d, P=P)
        for a, b in zip(back, p):
            np.testing.assert_array_equal(a, b)
    # the converted cell equals ONNX's equations written in ONNX's own order
    x, h, c = rng.standard_normal((2, I)), rng.uniform(-1, 1, (2, H)), rng.standard_normal((2, H))
    z = x @ W[0].T + h @ R[0].T + Bias[0, :4 * H] + Bias[0, 4 * H:]
    zi, zo, zf, zc = np.split(z, 4, axis=1)
    pi, po, pf = np.split(P[0], 3)
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    i, f = sig(zi + pi * c), sig(zf + pf * c)
    c_new = f * c + i * np.tanh(zc)
    h_new = sig(zo + po * c_new) * np.tanh(c_new)
    got = lb.get_backend("numpy").cell(x, h, c, layouts.from_onnx(W, R, Bias, P=P))
    np.testing.assert_allclose(got[0], h_new, rtol=1e-12)
    np.testing.assert_allclose(got[1], c_new, rtol=1e-12)
    with pytest.raises(ValueError, match=r"P must have shape \(num_directions, 3H\) = \(D, 12\)"):
        layouts.from_onnx(W, R, Bias, P=P[:, :H])
    with pytest.raises(ValueError, match="no peepholes"):
        layouts.onnx_peepholes([random_params(I, H, rng=rng)])


def test_conversions_pass_projection_and_peepholes_through():
    p = random_params(I, H, rng=3, proj_size=2, peephole=True)
    tb = layouts.to_textbook(p)
    assert tb.w_hr is p.w_hr and tb.w_peep is p.w_peep
    back = layouts.from_textbook(*tb)
    for a, b in zip(back, p):
        np.testing.assert_array_equal(a, b)
