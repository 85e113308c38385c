"""``lb.LSTM``'s errors speak to the layer's users: one line each, with the fix in the layer's terms
(``x.astype``, ``LSTM(..., dtype=)``, ``(h0, c0)``, ``batch_first``), never a backend-API hint."""

import re

import numpy as np
import pytest

import lstm_backends as lb

T, B, IN, H = 5, 3, 4, 6


def _layer(**kw):
    kw.setdefault("backend", "numpy")
    return lb.LSTM(IN, H, seed=0, **kw)


def _data(shape, dtype=np.float32, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _state(batch=B, stack=1, dtype=np.float32):
    return np.zeros((stack, batch, H), dtype), np.zeros((stack, batch, H), dtype)


def _error(exc, call, *fragments):
    """The message of ``exc`` raised by ``call``: one line holding every fragment (literally)."""
    with pytest.raises(exc) as info:
        call()
    message = str(info.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


# ---------------------------------------------------------------------------- dtypes
@pytest.mark.parametrize("layer_dtype, given", [(np.float32, np.float64), (np.float64, np.float32)])
def test_a_dtype_mismatch_says_how_to_cast_or_which_layer_to_build(layer_dtype, given):
    lstm = _layer(dtype=layer_dtype)
    layer, other = np.dtype(layer_dtype).name, np.dtype(given).name
    message = _error(TypeError, lambda: lstm(_data((T, B, IN), given)), f"x is {other} but this LSTM is {layer}",
                     f"x.astype(np.{layer})", f"LSTM(..., dtype=np.{other})")
    assert "LSTMParams" not in message and "params" not in message
    for k, name in enumerate(("h0", "c0")):
        hx = [a.astype(layer_dtype) for a in _state()]
        hx[k] = hx[k].astype(given)
        _error(TypeError, lambda hx=tuple(hx): lstm(_data((T, B, IN), layer_dtype), hx), f"{name} is {other}",
               f"{name}.astype(np.{layer})", f"LSTM(..., dtype=np.{other})")
    _error(TypeError, lambda: lstm.forward_train(_data((T, B, IN), given)), f"x.astype(np.{layer})")


@pytest.mark.parametrize("given", [np.int64, np.float16, np.bool_])
def test_a_dtype_no_layer_has_says_how_to_cast(given):
    message = _error(TypeError, lambda: _layer()(np.ones((T, B, IN), given)), f"x has dtype {np.dtype(given).name}",
                     "x.astype(np.float32)")
    assert "dtype=np." not in message  # no layer computes in it: only the cast is offered


# ---------------------------------------------------------------------------- array-likes
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("batch_first", [False, True])
def test_lists_are_converted_to_the_layers_dtype(dtype, batch_first):
    lstm = _layer(dtype=dtype, batch_first=batch_first)
    x = _data((B, T, IN) if batch_first else (T, B, IN), dtype)
    h0, c0 = _state(dtype=dtype)
    h0 = h0 + 0.5
    lengths = [5, 2, 0]
    y, (h_n, c_n) = lstm(x, (h0, c0), lengths=lengths)
    y2, (h2, c2) = lstm(x.tolist(), (h0.tolist(), tuple(c0.tolist())), lengths=lengths)
    assert y2.dtype == h2.dtype == c2.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(y2, y)
    np.testing.assert_array_equal(h2, h_n)
    np.testing.assert_array_equal(c2, c_n)
    yu, _ = lstm(x[0].tolist() if batch_first else x[:, 0].tolist())  # unbatched
    assert yu.dtype == np.dtype(dtype) and yu.shape == (T, H)
    y3, _, _ = lstm.forward_train(x.tolist(), lengths=lengths)
    np.testing.assert_array_equal(y3, lstm(x, lengths=lengths)[0])


def test_array_likes_with_a_dtype_of_their_own_keep_it():
    class Typed:  # like a CPU tensor: its own dtype, convertible through __array__
        def __init__(self, a):
            self.a = a
            self.dtype = a.dtype
            self.shape = a.shape

        def __array__(self, dtype=None, copy=None):
            return self.a if dtype is None else self.a.astype(dtype)

    lstm = _layer()
    x = _data((T, B, IN))
    np.testing.assert_array_equal(lstm(Typed(x))[0], lstm(x)[0])
    _error(TypeError, lambda: lstm(Typed(x.astype(np.float64))), "x is float64 but this LSTM is float32",
           "x.astype(np.float32)")


def test_what_cannot_become_an_array_is_named():
    lstm = _layer()
    _error(TypeError, lambda: lstm([[[1.0] * IN] * B, [[1.0] * IN] * (B - 1)]), "x must be an array of numbers",
           "list", "float32")
    _error(TypeError, lambda: lstm("abc"), "x must be an array of numbers", "str")
    _error(TypeError, lambda: lstm(None), "x must be an array; got None")


# ---------------------------------------------------------------------------- hx
def test_a_state_that_is_not_a_pair_says_so():
    lstm, x = _layer(), _data((T, B, IN))
    h0, c0 = _state()
    for bad in (h0, np.zeros((2, B, H), np.float32), np.zeros((3, B, H), np.float32)):  # was: unpack errors
        _error(TypeError, lambda bad=bad: lstm(x, bad), "hx must be the pair (h0, c0)", "lstm(x, (h0, c0))",
               f"got an array of shape {bad.shape}")
    _error(ValueError, lambda: lstm(x, (h0, c0, c0)), "hx must be the pair (h0, c0)", "a tuple of 3 items")
    _error(ValueError, lambda: lstm(x, [h0]), "hx must be the pair (h0, c0)", "a list of 1 items")
    _error(TypeError, lambda: lstm(x, (h0, None)), "c0 is None", "omit hx")
    _error(TypeError, lambda: lstm(x[:, 0], h0[:, 0]), "hx must be the pair (h0, c0)", "(1, 6)")  # unbatched
    _error(TypeError, lambda: lstm.forward_train(x, h0), "hx must be the pair (h0, c0)")
    y, (h_n, c_n) = lstm(x, [h0, c0])  # a list pair is fine
    np.testing.assert_array_equal(y, lstm(x, (h0, c0))[0])


def test_unbatched_states_must_lack_the_batch_axis():
    lstm, x = _layer(), _data((T, IN))
    _error(ValueError, lambda: lstm(x, _state(batch=1)), "h0 must have shape (L * D, H) = (1, 6) for unbatched x",
           "got shape (1, 1, 6)")


# ---------------------------------------------------------------------------- layout
BATCH_FIRST_HINT = "build the layer as LSTM(..., batch_first=True)"
TIME_MAJOR_HINT = "build the layer with batch_first=False"


def test_batch_major_input_told_by_its_lengths_suggests_batch_first():
    lstm, x = _layer(), _data((B, T, IN))  # (B, T, I) given to a time-major layer
    message = _error(ValueError, lambda: lstm(x, lengths=[5, 4, 3]), "lengths must have shape (B,) = (5,)",
                     "got shape (3,)", "x of shape (3, 5, 4) is read as (T, B, I) with B=5", BATCH_FIRST_HINT)
    _error(ValueError, lambda: lstm.forward_train(x, lengths=[5, 4, 3]), BATCH_FIRST_HINT)
    y, _ = _layer(batch_first=True)(x, lengths=[5, 4, 3])  # and the hint is right
    assert y.shape == (B, T, H)
    assert message.startswith("lengths must have shape (B,) = (5,); got shape (3,)")  # the backend's words first


def test_batch_major_input_told_by_its_states_suggests_batch_first():
    lstm, x = _layer(), _data((B, T, IN))
    _error(ValueError, lambda: lstm(x, _state(batch=B)), "h0 must have shape (L * D, B, H) = (1, 5, 6)",
           "got shape (1, 3, 6)", BATCH_FIRST_HINT)
    stacked = lb.LSTM(IN, H, num_layers=2, bidirectional=True, backend="numpy", seed=0)
    _error(ValueError, lambda: stacked(x, _state(batch=B, stack=4)), "(4, 5, 6)", BATCH_FIRST_HINT)


def test_time_major_input_to_a_batch_first_layer_suggests_time_major():
    lstm, x = _layer(batch_first=True), _data((T, B, IN))
    _error(ValueError, lambda: lstm(x, lengths=[5, 4, 3]), "lengths must have shape (B,) = (5,)",
           "read as (B, T, I) with B=5 (batch_first=True)", TIME_MAJOR_HINT)
    _error(ValueError, lambda: lstm(x, _state(batch=B)), "h0 must have shape", TIME_MAJOR_HINT)


def test_no_layout_hint_where_nothing_points_to_the_other_layout():
    lstm, x = _layer(), _data((T, B, IN))
    # a count that matches neither axis: the plain message
    for call in (lambda: lstm(x, lengths=[1, 2]), lambda: lstm(x, _state(batch=2))):
        message = _error(ValueError, call, "must have shape")
        assert "batch_first" not in message
    # x's batch size confirmed by the states: the wrong lengths are the lengths' fault
    message = _error(ValueError, lambda: lstm(x, _state(batch=B), lengths=[1, 2, 3, 4, 5]), "lengths")
    assert "batch_first" not in message
    message = _error(ValueError, lambda: lstm(x, _state(batch=T), lengths=[1, 2, 3]), "h0 must have shape")
    assert "batch_first" not in message
    # a square x (T == B) cannot be told apart
    square = _data((4, 4, IN))
    message = _error(ValueError, lambda: lstm(square, _state(batch=3)), "h0")
    assert "batch_first" not in message


def test_valid_inputs_raise_no_false_alarm():
    """A (B, T, I) array without batch_first is valid as (T, B, I) when nothing contradicts it."""
    lstm, x = _layer(), _data((B, T, IN))
    y, (h_n, _) = lstm(x)  # read as T=3, B=5: valid, nothing can tell
    assert y.shape == (B, T, H)
    y, (h_n, _) = lstm(x, _state(batch=T), lengths=[3, 1, 0, 2, 3])
    assert y.shape == (B, T, H) and h_n.shape == (1, T, H)
    lstm_bf = _layer(batch_first=True)
    y, _ = lstm_bf(x, _state(batch=B), lengths=[5, 4, 3])
    assert y.shape == (B, T, H)


def test_a_wrong_input_size_names_the_shape_the_user_passed():
    _error(ValueError, lambda: _layer()(_data((T, B, IN + 1))), "x must have shape (T, B, I) with I=4",
           "input_size", "got shape (5, 3, 5)")
    _error(ValueError, lambda: _layer(batch_first=True)(_data((B, T, IN + 1))), "x must have shape (B, T, I) with I=4",
           "got shape (3, 5, 5)")  # was the swapped (5, 3, 5)
    _error(ValueError, lambda: _layer()(_data((T, IN + 1))), "x must have shape (T, I) with I=4")
    _error(ValueError, lambda: _layer()(_data((2, T, B, IN))), "x must have shape (T, B, I) or (T, I)")


def test_the_backend_api_keeps_its_own_messages():
    """Below the layer nothing changed: ``be.forward`` still speaks of params."""
    be = lb.get_backend("numpy")
    params = lb.testing.random_params(IN, H, dtype=np.float32)
    with pytest.raises(TypeError, match=re.escape("mixed dtypes: x is float64 but params is float32")) as info:
        be.forward(_data((T, B, IN), np.float64), params)
    assert "LSTMParams" in str(info.value)
