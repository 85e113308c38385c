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



def test_mixed_dtype_messages_name_the_array_to_cast_and_its_target(be, p):
    """The hint casts the odd arrays to the params' dtype; converting the params is offered only
    where it alone would make the call agree."""
    with pytest.raises(TypeError) as info:
        be.forward(p.x.astype(np.float64), p.params)
    assert "cast with x.astype(np.float32), or convert the params to float64 with LSTMParams(" in str(info.value)
    with pytest.raises(TypeError) as info:
        be.forward(p.x, p.params, h0=np.zeros((2, 5)))
    assert str(info.value).endswith("cast with h0.astype(np.float32)")
    with pytest.raises(TypeError) as info:
        be.forward(p.x, [p.params[0], p.params[1].astype(np.float64), *p.params[2:4]])
    assert "convert them all with LSTMParams(" in str(info.value) and "dtype=np.float32" in str(info.value)

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


@pytest.mark.parametrize("name", ["numpy", "numba"])
def test_cell_aliasing_is_checked_after_an_accepted_streaming_call(name, p):
    """The fast path remembers the last accepted (state, weights, outputs); a new ``x``
    overlapping an output, or outputs that now overlap an input, are still refused."""
    be = lb.get_backend(name)
    buf = np.zeros(16, np.float32)
    h, c = buf[:10].reshape(2, 5), p.c0.copy()  # C-contiguous views: the fast path takes them
    h[...] = p.h0
    x = p.x[0].copy()
    for _ in range(2):
        be.cell(x, h, c, p.params, out=(h, c))  # accepted: the streaming loop
    x_in_h = buf[4:10].reshape(2, 3)  # a C-contiguous x inside h_out's memory
    with pytest.raises(ValueError, match="overlaps input x"):
        be.cell(x_in_h, h, c, p.params, out=(h, c))
    with pytest.raises(ValueError, match="out h_out overlaps input c"):
        be.cell(x, h, c, p.params, out=(c, h))
    be.cell(x, h, c, p.params, out=(h, c))  # and accepted again


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


# ---------------------------------------------------------------------------- optional features
def _full_params(p, proj=3, peep=True):
    rng = np.random.default_rng(1)
    hidden = p.params.w_hh.shape[1]
    return lb.LSTMParams(p.params.w_ih, rng.standard_normal((4 * hidden, proj)).astype(np.float32),
                         p.params.b_ih, p.params.b_hh, rng.standard_normal((proj, hidden)).astype(np.float32),
                         rng.standard_normal((3, hidden)).astype(np.float32) if peep else None)


def test_tuples_of_five_and_six_and_params_of_four(be, p):
    full = _full_params(p)
    a = be.forward(p.x, full)
    b = be.forward(p.x, tuple(full))
    c = be.forward(p.x, tuple(full[:5]) + (full.w_peep,))
    for u, v, w in zip(a, b, c):
        np.testing.assert_array_equal(u, v)
        np.testing.assert_array_equal(u, w)
    assert a[0].shape == (4, 2, 3) and a[1].shape == (2, 3) and a[2].shape == (2, 5)
    five = be.forward(p.x, (*p.params[:4], None))  # an explicit "no projection"
    np.testing.assert_array_equal(five[0], be.forward(p.x, p.params[:4])[0])
    with pytest.raises(TypeError, match="4-tuple"):
        be.forward(p.x, (*full, None))


def test_projection_and_peephole_shape_errors_name_the_argument(be, p):
    full = _full_params(p)
    with pytest.raises(ValueError, match=r"params.w_hr must have shape \(P, H\) with H=5"):
        be.forward(p.x, full._replace(w_hr=full.w_hr[:, :4]))
    with pytest.raises(ValueError, match=r"params.w_hh must have shape \(4H, P\) with H=5, P=2.*= \(20, 2\); "
                                         r"got shape \(20, 3\)"):
        be.forward(p.x, full._replace(w_hr=full.w_hr[:2]))
    with pytest.raises(ValueError, match=r"params.w_peep must have shape \(3, H\).*\(3, 5\); got shape \(5, 3\)"):
        be.forward(p.x, full._replace(w_peep=full.w_peep.T.copy()))
    with pytest.raises(ValueError, match=r"h0 must have shape \(B, P\) with B=2, P=3 = \(2, 3\); got shape \(2, 5\)"):
        be.forward(p.x, full, p.h0)
    with pytest.raises(ValueError, match=r"c0 must have shape \(B, H\) with B=2, H=5"):
        be.forward(p.x, full, np.zeros((2, 3), np.float32), np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"out\[1\] \(h_n\) must have shape \(2, 3\)"):
        be.forward(p.x, full, out=(np.empty((4, 2, 3), np.float32), np.empty((2, 5), np.float32),
                                   np.empty((2, 5), np.float32)))
    with pytest.raises(ValueError, match=r"h must have shape \(B, P\)"):
        be.cell(p.x[0], p.h0, p.c0, full)
    with pytest.raises(TypeError, match="mixed dtypes: params.w_ih is float32 but params.w_peep is float64"):
        be.forward(p.x, full._replace(w_peep=full.w_peep.astype(np.float64)))


def test_projection_out_and_in_place_state(be, p):
    full = _full_params(p)
    h0, c0 = np.zeros((2, 3), np.float32), np.zeros((2, 5), np.float32)
    expected = be.forward(p.x, full, h0, c0)
    y = np.empty((4, 2, 3), np.float32)
    got = be.forward(p.x, full, h0, c0, out=(y, h0, c0))
    assert got[1] is h0 and got[2] is c0
    for a, b in zip((y, h0, c0), expected):
        np.testing.assert_array_equal(a, b)
    buf = np.zeros(15, np.float32)
    with pytest.raises(ValueError, match="out h_n overlaps input w_hr"):
        be.forward(p.x, full._replace(w_hr=buf.reshape(3, 5)), out=(y, buf[:6].reshape(2, 3), c0))


@pytest.mark.parametrize(
    "kw, exc, match",
    [({"clip": 0}, ValueError, "clip must be a positive number"),
     ({"clip": -1.0}, ValueError, "clip must be a positive number"),
     ({"clip": float("nan")}, ValueError, "clip must be a positive number"),
     ({"clip": True}, ValueError, "clip must be a positive number"),
     ({"clip": "2"}, ValueError, "clip must be a positive number"),
     ({"input_forget": 2}, ValueError, "input_forget must be True or False"),
     ({"activations": ["Sigmoid", "Tanh"]}, ValueError, "sequence of 3 functions"),
     ({"activations": "Tanh"}, ValueError, "sequence of 3 functions"),
     ({"activations": ["Sigmoid", "Tanhh", "Tanh"]}, ValueError, "unknown activation 'Tanhh'; known: Relu"),
     ({"activations": ["Sigmoid", ("Tanh", 1.0), "Tanh"]}, ValueError, "g = Tanh takes no alpha"),
     ({"activations": ["Sigmoid", ("Elu", 1.0, 2.0), "Tanh"]}, ValueError, "g = Elu takes no beta"),
     ({"activations": ["Sigmoid", 3, "Tanh"]}, TypeError, "activation g must be a name")],
)
def test_bad_cell_options(be, p, kw, exc, match):
    with pytest.raises(exc, match=match):
        be.forward(p.x, p.params, **kw)
    with pytest.raises(exc, match=match):
        be.cell(p.x[0], p.h0, p.c0, p.params, **kw)


def test_default_options_are_the_plain_cell(be, p):
    plain = be.forward(p.x, p.params, p.h0, p.c0)
    spelled = be.forward(p.x, p.params, p.h0, p.c0, clip=None, input_forget=False,
                         activations=("sigmoid", "TANH", ("Tanh",)))
    for a, b in zip(plain, spelled):
        np.testing.assert_array_equal(a, b)
    huge = be.forward(p.x, p.params, p.h0, p.c0, clip=1e30)  # a bound nothing reaches
    for a, b in zip(plain, huge):
        np.testing.assert_array_equal(a, b)


def test_numba_refuses_other_activations_by_name(p):
    be = lb.get_backend("numba")
    with pytest.raises(lb.UnsupportedFeatureError,
                       match=r"'numba' does not support the activations f=Sigmoid, g=Elu\(alpha=1\), h=Tanh, "
                             r"capability 'activations'.*: numpy"):
        be.forward(p.x, p.params, activations=["Sigmoid", "Elu", "Tanh"])
    with pytest.raises(lb.UnsupportedFeatureError, match="activations"):
        be.cell(p.x[0], p.h0, p.c0, p.params, activations=["HardSigmoid", "Tanh", "Tanh"])


@pytest.mark.parametrize("name", ["example"])
def test_backends_without_the_features_refuse_them_by_name(p, name):
    be = lb.get_backend(name)
    full = _full_params(p)
    with pytest.raises(lb.UnsupportedFeatureError, match=r"params.w_hr \(a projection to P=3, LSTMP\), capability "
                                                         r"'projection'.*backends that do: numpy"):
        be.forward(p.x, full)
    with pytest.raises(lb.UnsupportedFeatureError, match=r"params.w_peep \(peepholes\), capability 'peephole'"):
        be.forward(p.x, (*p.params[:4], None, full.w_peep))
    with pytest.raises(lb.UnsupportedFeatureError, match=r"clip=2, capability 'clip'"):
        be.cell(p.x[0], p.h0, p.c0, p.params, clip=2)
    with pytest.raises(lb.UnsupportedFeatureError, match=r"input_forget=True, capability 'clip'"):
        be.forward(p.x, p.params, input_forget=True)
    with pytest.raises(lb.UnsupportedFeatureError,
                       match=r"activations f=Sigmoid, g=Elu\(alpha=1\), h=Tanh, capability 'activations'.*: numpy"):
        be.forward(p.x, p.params, activations=["Sigmoid", "Elu", "Tanh"])
    with pytest.raises(lb.UnsupportedFeatureError, match="projection"):
        be.forward_layers(p.x, [[full]])


def test_get_backend_requires():
    fastest = lb.get_backend("auto").name
    assert lb.get_backend("auto", requires=["peephole", "clip"]).name == fastest  # every built-in has them
    assert lb.get_backend("auto", requires=["activations"]).name == "numpy"
    assert "projection" in lb.get_backend("auto", requires=["projection"]).capabilities
    with pytest.raises(lb.UnsupportedFeatureError, match="'numba' does not support 'activations'"):
        lb.get_backend("numba", requires=["activations"])
    assert "backward" in lb.get_backend("auto", requires=["backward"]).capabilities
    with pytest.raises(lb.BackendUnavailableError, match="no backend with the capabilities activations, device-arrays"):
        lb.get_backend("auto", requires=["device-arrays", "activations"])


def test_forward_layers_activations_per_direction(be, p):
    layer = [[p.params, p.params]]
    acts = ["HardSigmoid", "Tanh", "Tanh", "Sigmoid", "Softsign", "Tanh"]
    y, h_n, c_n = be.forward_layers(p.x, layer, activations=acts)
    y0, h0, _ = be.forward(p.x, p.params, activations=acts[:3])
    y1, h1, _ = be.forward(p.x, p.params, reverse=True, activations=acts[3:])
    np.testing.assert_array_equal(y[:, :, :5], y0)
    np.testing.assert_array_equal(y[:, :, 5:], y1)
    np.testing.assert_array_equal(h_n[1], h1)
    with pytest.raises(ValueError, match=r"3 functions \(f, g, h\), or 3 per direction \(6\); got 4"):
        be.forward_layers(p.x, layer, activations=acts[:4])
