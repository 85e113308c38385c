"""Hypothesis properties of the reference backend and the validation layer."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lstm_backends as lb
from lstm_backends.testing import random_problem

dims = st.integers(min_value=1, max_value=6)


@st.composite
def problems(draw):
    steps = draw(st.integers(0, 6))
    batch = draw(st.integers(0, 4))
    i, h = draw(dims), draw(dims)
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    lengths = draw(st.one_of(st.none(), st.lists(st.integers(0, steps), min_size=batch, max_size=batch)))
    return random_problem(steps, batch, i, h, dtype=dtype, seed=draw(st.integers(0, 2**31)),
                          lengths=lengths, state=draw(st.booleans()), reverse=draw(st.booleans()))


@settings(max_examples=150, deadline=None)
@given(problems())
def test_shapes_dtypes_and_length_semantics(p):
    y, h_n, c_n = p.forward(lb.get_backend("numpy"))
    steps, batch, _ = p.x.shape
    hidden = p.params.w_hh.shape[1]
    assert y.shape == (steps, batch, hidden) and h_n.shape == c_n.shape == (batch, hidden)
    assert y.dtype == h_n.dtype == c_n.dtype == p.dtype
    assert np.all(np.abs(y) <= 1.0)
    lengths = p.lengths if p.lengths is not None else np.full(batch, steps)
    h0 = p.h0 if p.h0 is not None else np.zeros((batch, hidden), p.dtype)
    for b, n in enumerate(lengths):
        assert not y[n:, b].any()
        if n == 0:
            np.testing.assert_array_equal(h_n[b], h0[b])
        else:
            last = 0 if p.reverse else n - 1  # the step that ran last
            np.testing.assert_array_equal(h_n[b], y[last, b])


@st.composite
def forward_problems_and_cut(draw):
    """A forward-direction problem with T >= 1 and a cut 1 <= k <= T (no vacuous cases)."""
    steps = draw(st.integers(1, 6))
    batch = draw(st.integers(1, 4))
    lengths = draw(st.one_of(st.none(), st.lists(st.integers(0, steps), min_size=batch, max_size=batch)))
    p = random_problem(steps, batch, draw(dims), draw(dims), dtype=draw(st.sampled_from([np.float32, np.float64])),
                       seed=draw(st.integers(0, 2**31)), lengths=lengths, state=draw(st.booleans()))
    return p, draw(st.integers(1, steps))


@settings(max_examples=100, deadline=None)
@given(forward_problems_and_cut())
def test_prefix_property(problem_and_cut):
    """Forward: outputs for steps < k do not depend on inputs at steps >= k, and do depend on
    the inputs before k (so the comparison is never vacuous)."""
    p, k = problem_and_cut
    be = lb.get_backend("numpy")
    y = p.forward(be)[0]
    x2 = p.x.copy()
    x2[k:] = 7.0
    y2 = be.forward(x2, p.params, p.h0, p.c0, lengths=p.lengths)[0]
    assert y[:k].size > 0
    np.testing.assert_array_equal(y[:k], y2[:k])
    # a change before k does reach the outputs of every row that runs step 0
    x3 = p.x.copy()
    x3[0] += 1.0
    y3 = be.forward(x3, p.params, p.h0, p.c0, lengths=p.lengths)[0]
    lengths = p.lengths if p.lengths is not None else np.full(p.x.shape[1], p.x.shape[0])
    for b in np.flatnonzero(lengths > 0):
        assert not np.array_equal(y[0, b], y3[0, b]), f"row {b}: step 0 ignores x[0]"


@settings(max_examples=150, deadline=None)
@given(
    shape=st.lists(st.integers(0, 5), min_size=0, max_size=4),
    dtype=st.sampled_from([np.float32, np.float64, np.int32, np.float16, np.complex64]),
)
def test_validation_never_crashes(shape, dtype):
    """Arbitrary x shapes/dtypes either run (when valid) or raise ValueError/TypeError."""
    rng = np.random.default_rng(0)
    params = lb.testing.random_params(3, 2, rng=rng)
    x = np.ones(shape, dtype=dtype)
    valid = len(shape) == 3 and shape[2] == 3 and np.dtype(dtype) == np.float32
    be = lb.get_backend("numpy")
    if valid:
        y, _, _ = be.forward(x, params)
        assert y.shape == (shape[0], shape[1], 2)
    else:
        with pytest.raises((ValueError, TypeError)):
            be.forward(x, params)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(st.integers(-3, 10), st.floats(-1, 10)), min_size=0, max_size=5))
def test_lengths_validation(lengths):
    p = random_problem(4, 3, 2, 2, seed=0)
    ok = (len(lengths) == 3 and all(isinstance(v, int) for v in lengths) and all(0 <= v <= 4 for v in lengths))
    be = lb.get_backend("numpy")
    if ok:
        be.forward(p.x, p.params, lengths=lengths)
    else:
        with pytest.raises(ValueError):
            be.forward(p.x, p.params, lengths=lengths)
