import numpy as np
import pytest

import lstm_backends as lb
from lstm_backends.testing import random_problem


@pytest.fixture
def be():
    return lb.get_backend("numpy")


@pytest.fixture
def p():
    return random_problem(4, 2, 3, 5, dtype=np.float32, seed=0)


def test_shape_message_names_argument_and_shapes(be, p):
    with pytest.raises(ValueError) as info:
        be.forward(p.x, p.params, np.zeros((3, 5), np.float32))
    assert str(info.value) == "h0 must have shape (B, H) with B=2, H=5 = (2, 5); got shape (3, 5)"


def test_dtype_messages_say_how_to_fix(be, p):
    with pytest.raises(TypeError, match=r"x has dtype int32.*floating point.*astype|np.asarray"):
        be.forward(p.x.astype(np.int32), p.params)
    with pytest.raises(TypeError, match="float16"):
        be.forward(p.x.astype(np.float16), p.params)
    with pytest.raises(TypeError, match=r"mixed dtypes: x is float32 but params is float64"):
        be.forward(p.x, [a.astype(np.float64) for a in p.params])
    with pytest.raises(TypeError, match="mixed dtypes"):
        be.forward(p.x, [p.params[0], p.params[1].astype(np.float64), *p.params[2:]])
    with pytest.raises(TypeError, match="bool"):
        be.forward(p.x > 0, p.params)


def test_lists_are_accepted_but_dtype_rules_hold(be, p):
    y, _, _ = be.forward(p.x.astype(np.float64).tolist(), [a.astype(np.float64).tolist() for a in p.params])
    assert y.dtype == np.float64
    with pytest.raises(TypeError, match="mixed"):
        be.forward(p.x, [a.tolist() for a in p.params])  # lists are float64


@pytest.mark.parametrize(
    "lengths, match",
    [([1, 5], r"\[0, 4\]"), ([-1, 2], "lengths"), ([1], r"\(2,\)"), ([[1, 2]], r"\(2,\)"),
     ([1.0, 2.0], "integers"), ([True, False], "integers")],
)
def test_bad_lengths(be, p, lengths, match):
    with pytest.raises(ValueError, match=match):
        be.forward(p.x, p.params, lengths=lengths)


def test_none_biases_mean_zeros(be, p):
    zeros = np.zeros_like(p.params.b_ih)
    a = be.forward(p.x, (p.params.w_ih, p.params.w_hh, None, None))
    b = be.forward(p.x, (p.params.w_ih, p.params.w_hh, zeros, zeros))
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)


def test_out_validation(be, p):
    good = (np.empty((4, 2, 5), np.float32), np.empty((2, 5), np.float32), np.empty((2, 5), np.float32))
    with pytest.raises(ValueError, match=r"out\[0\] \(y\) must have shape \(4, 2, 5\)"):
        be.forward(p.x, p.params, out=(np.empty((4, 2, 4), np.float32), *good[1:]))
    with pytest.raises(TypeError, match="dtype float32"):
        be.forward(p.x, p.params, out=(good[0].astype(np.float64), *good[1:]))
    with pytest.raises(ValueError, match="C-contiguous"):
        be.forward(p.x, p.params, out=(np.empty((2, 4, 5), np.float32).transpose(1, 0, 2), *good[1:]))
    ro = np.empty((2, 5), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        be.forward(p.x, p.params, out=(good[0], ro, good[2]))
    with pytest.raises(TypeError, match="tuple"):
        be.forward(p.x, p.params, out=good[0])
    h0 = p.h0.copy()
    with pytest.raises(ValueError, match="overlaps an input"):
        be.forward(p.x, p.params, h0, out=(good[0], h0, good[2]))


def test_cell_out_aliasing_rules(be, p):
    h, c = p.h0.copy(), p.c0.copy()
    with pytest.raises(ValueError, match="overlap"):
        be.cell(p.x[0], h, c, p.params, out=(c, h))  # swapped: h_out would clobber c
    with pytest.raises(ValueError, match="separate"):
        be.cell(p.x[0], h, c, p.params, out=(h, h))
    with pytest.raises(TypeError, match="required"):
        be.cell(p.x[0], None, c, p.params)


def test_params_must_be_four(be, p):
    with pytest.raises(TypeError, match="4-tuple"):
        be.forward(p.x, p.params[:2])
    with pytest.raises(TypeError, match="4-tuple"):
        be.forward(p.x, np.zeros((4, 3)))


def test_w_shapes(be, p):
    with pytest.raises(ValueError, match=r"w_hh must have shape \(4H, H\)"):
        be.forward(p.x, (p.params.w_ih, p.params.w_hh[:19], *p.params[2:]))
    with pytest.raises(ValueError, match=r"w_ih must have shape \(4H, I\) = \(20, I\)"):
        be.forward(p.x, (p.params.w_ih[:8], *p.params[1:]))
    with pytest.raises(ValueError, match=r"I=3 \(from params.w_ih\)"):
        be.forward(p.x[:, :, :2], p.params)
