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
        be.forward(p.x, [a.astype(np.float64) for a in p.params[:4]])
    with pytest.raises(TypeError, match="mixed dtypes"):
        be.forward(p.x, [p.params[0], p.params[1].astype(np.float64), *p.params[2:4]])
    with pytest.raises(TypeError, match="bool"):
        be.forward(p.x > 0, p.params)


def test_lists_are_accepted_but_dtype_rules_hold(be, p):
    y, _, _ = be.forward(p.x.astype(np.float64).tolist(), [a.astype(np.float64).tolist() for a in p.params[:4]])
    assert y.dtype == np.float64
    with pytest.raises(TypeError, match="mixed"):
        be.forward(p.x, [a.tolist() for a in p.params[:4]])  # lists are float64


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
    h0, c0 = p.h0.copy(), p.c0.copy()
    with pytest.raises(ValueError, match="out c_n overlaps input h0"):
        be.forward(p.x, p.params, h0, c0, out=(good[0], good[1], h0))
    with pytest.raises(ValueError, match="out h_n overlaps input w_hh"):
        be.forward(p.x, p.params, h0, c0, out=(good[0], p.params.w_hh[:2, :5], good[2]))


# The one aliasing rule, the same on the fast and the full path of every host backend: an
# output may be its own state input (the very array or a full view of it), nothing else.
@pytest.mark.parametrize("name", ["numpy", "numba"])
def test_cell_out_aliasing_rules(name, p):
    be = lb.get_backend(name)
    h, c = p.h0.copy(), p.c0.copy()
    x = p.x[0].copy()
    with pytest.raises(ValueError, match="out h_out overlaps input c"):
        be.cell(x, h, c, p.params, out=(c, h))  # swapped: h_out would clobber c
    with pytest.raises(ValueError, match="out h_out and c_out overlap"):
        be.cell(x, h, c, p.params, out=(h, h))
    with pytest.raises(ValueError, match="out h_out overlaps input c"):
        be.cell(x, h, c, p.params, out=(c[...], np.empty_like(c)))
    buf = np.zeros(15, np.float32)
    with pytest.raises(ValueError, match="out h_out overlaps input h"):  # partly overlapping, not h itself
        be.cell(x, buf[:10].reshape(2, 5), c, p.params, out=(buf[5:].reshape(2, 5), np.empty_like(c)))
    for out in ((h, c), (h[...], c[...]), (h, np.empty_like(c))):
        be.cell(x, h, c, p.params, out=out)  # allowed: the state arrays themselves
    with pytest.raises(TypeError, match="required"):
        be.cell(x, None, c, p.params)


def test_forward_state_in_place_equals_separate_outputs(be, p):
    h0, c0 = p.h0.copy(), p.c0.copy()
    expected = be.forward(p.x, p.params, p.h0, p.c0)
    y = np.empty_like(expected[0])
    got = be.forward(p.x, p.params, h0, c0, out=(y, h0, c0))
    assert got[1] is h0 and got[2] is c0
    for a, b in zip((y, h0, c0), expected):
        np.testing.assert_array_equal(a, b)


def test_host_backend_refuses_device_arrays_and_options(be, p):
    class FakeDevice:
        __cuda_array_interface__ = {"shape": (4, 2, 3), "typestr": "<f4", "data": (0, False), "version": 3}

    with pytest.raises(TypeError, match="x is a device array.*'device-arrays' capability"):
        be.forward(FakeDevice(), p.params)
    with pytest.raises(TypeError, match="takes no option 'stream'"):
        be.forward(p.x, p.params, stream=0)


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
