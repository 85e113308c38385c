"""Training (issue 11): gradients against PyTorch autograd and central differences, the tape's
memory, allocation once per call, a 20-step training run against torch, and refusals.

The conformance kit's ``backward*`` checks (every backend with the capability) compare each
backend with the float64 reference; here the reference itself is checked against independent
oracles, and the layer against ``torch.nn.LSTM``.
"""

import tracemalloc

import numpy as np
import pytest

import lstm_backends as lb
from lstm_backends.backends.numpy_backend import NumpyBackend
from lstm_backends.testing import assert_close, random_problem

DTYPES = [np.float32, np.float64]
PARAM_FIELDS = lb.LSTMParams._fields


def _training_backend(name, feature=None):
    be = lb.get_backend(name)
    if "backward" not in be.capabilities:
        pytest.skip(f"{name} lacks the 'backward' capability")
    if feature is not None and feature not in be.backward_features:
        pytest.skip(f"{name}'s backward lacks {feature!r}")
    return be


# ---------------------------------------------------------------------------- PyTorch autograd
torch = pytest.importorskip("torch")
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence  # noqa: E402

no_onednn_warning = pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")


def _torch_lstm(ours):
    t = torch.nn.LSTM(ours.input_size, ours.hidden_size, num_layers=ours.num_layers, bidirectional=ours.bidirectional,
                      batch_first=ours.batch_first, proj_size=ours.proj_size, dtype=torch.float64)
    with torch.no_grad():
        for name, value in ours.state_dict().items():
            getattr(t, name).copy_(torch.from_numpy(value.astype(np.float64)))
    return t


def _torch_grads(module, x, hx, lengths, dy, dhx):
    """Autograd of ``sum(dy * y) + sum(dh_n * h_n) + sum(dc_n * c_n)`` through ``module`` on a
    packed sequence, in float64: (dx, dh0, dc0, {name: grad})."""
    xt, h0, c0 = (torch.tensor(np.asarray(a, np.float64), requires_grad=True) for a in (x, *hx))
    packed = pack_padded_sequence(xt, torch.tensor(lengths), batch_first=module.batch_first, enforce_sorted=False)
    y, (h_n, c_n) = module(packed, (h0, c0))
    y, _ = pad_packed_sequence(y, batch_first=module.batch_first, total_length=x.shape[1 if module.batch_first else 0])
    loss = sum((a * torch.tensor(np.asarray(g, np.float64))).sum() for a, g in zip((y, h_n, c_n), (dy, *dhx)))
    module.zero_grad()
    loss.backward()
    return xt.grad.numpy(), h0.grad.numpy(), c0.grad.numpy(), {n: p.grad.numpy() for n, p in module.named_parameters()}


@no_onednn_warning
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layers, bidirectional, batch_first, proj_size",
                         [(1, False, False, 0), (2, True, True, 0), (2, True, False, 3), (1, False, True, 3)])
def test_layer_gradients_equal_torch_autograd(lstm_backend_name, dtype, layers, bidirectional, batch_first, proj_size):
    """dx, dh0, dc0 and every named parameter, with random weights, output gradients and lengths
    (packed sequences): float64 to the float64 tolerance (1e-10 relative), float32 within float32's."""
    be = _training_backend(lstm_backend_name, "projection" if proj_size else None)
    ours = lb.LSTM(5, 7, num_layers=layers, bidirectional=bidirectional, batch_first=batch_first,
                   proj_size=proj_size, dtype=dtype, backend=be, seed=11)
    rng = np.random.default_rng(12)
    steps, batch, dirs = 6, 4, 2 if bidirectional else 1
    s = proj_size or 7
    x = rng.standard_normal((batch, steps, 5) if batch_first else (steps, batch, 5)).astype(dtype)
    hx = (rng.uniform(-1, 1, (layers * dirs, batch, s)).astype(dtype),
          rng.standard_normal((layers * dirs, batch, 7)).astype(dtype))
    lengths = rng.integers(1, steps + 1, batch)
    lengths[0] = steps
    y, (h_n, c_n), tape = ours.forward_train(x, hx, lengths=lengths)
    dy = rng.standard_normal(np.shape(y)).astype(dtype)
    dhx = (rng.standard_normal(h_n.shape).astype(dtype), rng.standard_normal(c_n.shape).astype(dtype))
    dx, (dh0, dc0), grads = ours.backward(tape, dy, dhx)
    tdx, tdh0, tdc0, tgrads = _torch_grads(_torch_lstm(ours), x, hx, lengths, dy, dhx)
    ctx = f"{lstm_backend_name} vs torch autograd, layers={layers} bidirectional={bidirectional} " \
          f"batch_first={batch_first} proj_size={proj_size} lengths={list(lengths)}"
    assert set(grads) == set(tgrads)
    for name, got, want in (("dx", dx, tdx), ("dh0", dh0, tdh0), ("dc0", dc0, tdc0),
                            *((k, grads[k], tgrads[k]) for k in sorted(grads))):
        assert_close(got, want, dtype=dtype, name=name, context=ctx)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reverse", [False, True])
def test_single_direction_gradients_equal_torch_autograd(lstm_backend_name, dtype, reverse):
    """``Backend.backward`` of one layer and direction (reverse: torch runs the rows flipped over
    their own valid parts), no bias given (the bias gradients are then None), default state."""
    be = _training_backend(lstm_backend_name)
    rng = np.random.default_rng(13)
    steps, batch, in_size, hidden = 5, 3, 4, 6
    torch.manual_seed(0)
    module = torch.nn.LSTM(in_size, hidden, bias=False, dtype=torch.float64)
    params = lb.LSTMParams(*(p.detach().numpy().astype(dtype) for p in (module.weight_ih_l0, module.weight_hh_l0)),
                           None, None)
    x = rng.standard_normal((steps, batch, in_size)).astype(dtype)
    lengths = np.array([5, 2, 4])
    y, h_n, c_n, tape = be.forward_train(x, params, lengths=lengths, reverse=reverse)
    dy, dh_n, dc_n = (rng.standard_normal(np.shape(a)).astype(dtype) for a in (y, h_n, c_n))
    g = be.backward(tape, dy, dh_n, dc_n)
    order = np.arange(steps)[:, None].repeat(batch, 1)  # per row, the time index torch sees at each position
    if reverse:
        for b, n in enumerate(lengths):
            order[:n, b] = order[:n, b][::-1]
    xt = torch.tensor(x.astype(np.float64), requires_grad=True)
    cols = torch.arange(batch)
    packed = pack_padded_sequence(xt[torch.from_numpy(order), cols], torch.from_numpy(lengths), enforce_sorted=False)
    ty, (th, tc) = module(packed)
    ty = pad_packed_sequence(ty, total_length=steps)[0][torch.from_numpy(np.argsort(order, axis=0)), cols]
    loss = sum((a * torch.from_numpy(b.astype(np.float64))).sum() for a, b in ((ty, dy), (th[0], dh_n), (tc[0], dc_n)))
    loss.backward()
    assert_close(y, ty.detach().numpy(), dtype=dtype, name="y")
    assert_close(g.dx, xt.grad.numpy(), dtype=dtype, name="dx")
    assert_close(g.dparams.w_ih, module.weight_ih_l0.grad.numpy(), dtype=dtype, name="dparams.w_ih")
    assert_close(g.dparams.w_hh, module.weight_hh_l0.grad.numpy(), dtype=dtype, name="dparams.w_hh")
    assert g.dparams.b_ih is None and g.dparams.b_hh is None and g.dparams.w_hr is None
    assert g.dh0.shape == (batch, hidden) and g.dc0.shape == (batch, hidden)


def _torch_full_cell_forward(x, params, h0, c0, lengths, reverse, clip, input_forget):
    """The full cell (peepholes, clip, coupled gates, projection) written out in torch ops, for
    autograd: the order of operations of the numpy reference (onnxruntime's)."""
    steps, batch, _ = x.shape
    w_ih, w_hh, b_ih, b_hh, w_hr, w_peep = params
    hidden = w_hh.shape[0] // 4
    h, c = h0, c0
    ys = [[None] * batch for _ in range(steps)]
    h_rows, c_rows = list(h), list(c)
    for b in range(batch):
        n = int(lengths[b])
        hb, cb = h_rows[b], c_rows[b]
        for s in range(n):
            t = n - 1 - s if reverse else s
            z = x[t, b] @ w_ih.T + hb @ w_hh.T + b_ih + b_hh
            z_i, z_f, z_g, z_o = (z[k * hidden:(k + 1) * hidden] for k in range(4))
            if w_peep is not None:
                z_i, z_f = z_i + w_peep[0] * cb, z_f + w_peep[1] * cb
            bound = (lambda v: v) if clip is None else (lambda v: torch.clamp(v, -clip, clip))
            i = torch.sigmoid(bound(z_i))
            f = 1 - i if input_forget else torch.sigmoid(bound(z_f))
            cb = f * cb + i * torch.tanh(bound(z_g))
            if w_peep is not None:
                z_o = z_o + w_peep[2] * cb
            hb = torch.sigmoid(bound(z_o)) * torch.tanh(cb)
            if w_hr is not None:
                hb = hb @ w_hr.T
            ys[t][b] = hb
        h_rows[b], c_rows[b] = hb, cb
    zero = torch.zeros_like(h0[0])
    y = torch.stack([torch.stack([v if v is not None else zero for v in row]) for row in ys])
    return y, torch.stack(h_rows), torch.stack(c_rows)


@pytest.mark.parametrize("features", [dict(peephole=True), dict(clip=0.4), dict(input_forget=True),
                                      dict(peephole=True, clip=0.4, input_forget=True, proj_size=2)])
@pytest.mark.parametrize("reverse", [False, True])
def test_full_cell_gradients_equal_torch_autograd(lstm_backend_name, features, reverse):
    """Peepholes, clip (torch.clamp's gradient: zero where clipped), input_forget and all of them with
    a projection, against autograd through the same cell written in torch ops, float64."""
    needs = {"peephole": "peephole", "clip": "clip", "input_forget": "clip", "proj_size": "projection"}
    for key in features:
        be = _training_backend(lstm_backend_name, needs[key])
    options = {k: features[k] for k in ("clip", "input_forget") if k in features}
    p = random_problem(4, 3, 3, 5, dtype=np.float64, seed=14, lengths=[4, 1, 3], reverse=reverse, scale=2.0,
                       **features)
    dy, dh_n, dc_n = p.output_grads()
    y, h_n, c_n, tape = p.forward_train(be)
    g = be.backward(tape, dy, dh_n, dc_n)
    tx, th0, tc0 = (torch.tensor(a, requires_grad=True) for a in (p.x, p.h0, p.c0))
    tparams = [None if a is None else torch.tensor(a, requires_grad=True) for a in p.params]
    ty, th, tc = _torch_full_cell_forward(tx, tparams, th0, tc0, p.lengths, reverse, options.get("clip"),
                                          options.get("input_forget", False))
    loss = (ty * torch.from_numpy(dy)).sum() + (th * torch.from_numpy(dh_n)).sum() + (tc * torch.from_numpy(dc_n)).sum()
    loss.backward()
    if "clip" in options:  # meaningful only if something was clipped, and something not
        clipped = lb.testing.to_host(tape.clipped)
        assert clipped.any() and not clipped.all()
    ctx = f"{lstm_backend_name}: {p.describe()}"
    assert_close(y, ty.detach().numpy(), dtype=np.float64, name="y", context=ctx)
    for name, got, want in (("dx", g.dx, tx.grad), ("dh0", g.dh0, th0.grad), ("dc0", g.dc0, tc0.grad),
                            *((f"dparams.{n}", a, b.grad) for n, a, b in zip(PARAM_FIELDS, g.dparams, tparams)
                              if b is not None)):
        assert_close(got, want.numpy(), dtype=np.float64, name=name, context=ctx)


def test_length_zero_rows_pass_the_final_state_gradient_straight_to_the_initial_state(lstm_backend_name):
    """A row of length 0 (which torch's packed sequences refuse): dh0 = dh_n and dc0 = dc_n exactly,
    dx = 0, and the other rows' gradients are those of the batch without it."""
    be = _training_backend(lstm_backend_name)
    p = random_problem(4, 3, 3, 5, dtype=np.float64, seed=15, lengths=[4, 0, 2])
    dy, dh_n, dc_n = p.output_grads()
    g = be.backward(p.forward_train(be)[3], dy, dh_n, dc_n)
    dx, dh0, dc0 = (lb.testing.to_host(a) for a in g[:3])
    np.testing.assert_array_equal(dh0[1], dh_n[1])
    np.testing.assert_array_equal(dc0[1], dc_n[1])
    assert not dx[:, 1].any() and not dx[2:, 2].any()  # nothing at or past a row's length
    keep = [0, 2]
    alone = be.backward(be.forward_train(p.x[:, keep], p.params, p.h0[keep], p.c0[keep], lengths=p.lengths[keep])[3],
                        dy[:, keep], dh_n[keep], dc_n[keep])
    for name, a, b in (("dx", dx[:, keep], alone.dx), ("dh0", dh0[keep], alone.dh0),
                       *((n, x, y) for n, x, y in zip(PARAM_FIELDS, g.dparams, alone.dparams) if x is not None)):
        np.testing.assert_allclose(lb.testing.to_host(a), lb.testing.to_host(b), rtol=1e-12, atol=1e-14, err_msg=name)


# ---------------------------------------------------------------------------- central differences
@pytest.mark.parametrize("kw", [dict(), dict(reverse=True, lengths=[3, 1]), dict(proj_size=2, lengths=[3, 2]),
                                dict(peephole=True, clip=0.9, input_forget=True, reverse=True, lengths=[2, 3])])
def test_reference_gradients_equal_central_differences(kw):
    """Every entry of every gradient of the numpy reference against a central difference of its
    forward, float64, small sizes."""
    be = NumpyBackend()
    options = {k: kw.pop(k) for k in ("clip", "input_forget") if k in kw}
    p = random_problem(3, 2, 2, 3, dtype=np.float64, seed=16, **kw, **options)
    dy, dh_n, dc_n = p.output_grads()
    g = be.backward(p.forward_train(be)[3], dy, dh_n, dc_n)

    def loss():
        y, h_n, c_n = p.forward(be)
        return (y * dy).sum() + (h_n * dh_n).sum() + (c_n * dc_n).sum()

    eps = 1e-6
    named = {"x": (p.x, g.dx), "h0": (p.h0, g.dh0), "c0": (p.c0, g.dc0),
             **{n: (a, d) for n, a, d in zip(PARAM_FIELDS, p.params, g.dparams) if a is not None}}
    for name, (value, grad) in named.items():
        numeric = np.empty_like(value)
        for idx in np.ndindex(value.shape):
            keep = value[idx]
            value[idx] = keep + eps
            up = loss()
            value[idx] = keep - eps
            down = loss()
            value[idx] = keep
            numeric[idx] = (up - down) / (2 * eps)
        np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8, err_msg=f"{name}: {p.describe()}")


# ---------------------------------------------------------------------------- memory
@pytest.mark.parametrize("proj_size, clip", [(0, None), (3, None), (0, 0.5)])
def test_tape_holds_exactly_the_activations_and_cells(proj_size, clip):
    """The tape owns T * B * 5H numbers (+ T * B * 4H bytes of clip mask), whatever the projection;
    the memory forward_train keeps beyond its outputs is exactly that (it copies no input)."""
    be = NumpyBackend()
    t, b, i, h = 50, 8, 32, 16
    p = random_problem(t, b, i, h, dtype=np.float32, seed=17, proj_size=proj_size, clip=clip)
    expected = t * b * 5 * h * 4 + (t * b * 4 * h if clip else 0)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        y, h_n, c_n, tape = p.forward_train(be)
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert tape.nbytes == expected
    assert tape.x is p.x and tape.w_ih is p.params.w_ih  # references, not copies
    outputs = y.nbytes + h_n.nbytes + c_n.nbytes
    assert expected + outputs <= kept <= expected + outputs + 4096, (kept, expected, outputs)
    assert f"{expected} bytes" in repr(tape)


def test_stack_tape_size():
    lstm = lb.LSTM(6, 5, num_layers=3, bidirectional=True, backend="numpy", seed=0)
    x = np.zeros((7, 2, 6), np.float32)
    tape = lstm.forward_train(x)[2]
    per_direction = 7 * 2 * 5 * 5 * 4
    inner_outputs = 2 * 7 * 2 * 10 * 4  # layers 1 and 2 read the outputs of layers 0 and 1
    assert tape.nbytes == 6 * per_direction + inner_outputs


def test_backward_allocates_its_outputs_once_not_per_step(lstm_backend_name, monkeypatch):
    """The base class allocates every gradient array once per call: the allocation hooks are called
    as often for 30 steps as for 3."""
    be = _training_backend(lstm_backend_name)
    if be.capabilities >= {"device-arrays"} and lstm_backend_name == "cuda":
        pytest.skip("cuda is counted under the simulator (tests/test_cuda.py)")
    calls = []
    for hook in ("_empty", "_zeros"):
        original = getattr(be, hook)
        monkeypatch.setattr(be, hook, lambda *a, _f=original, _n=hook, **k: (calls.append(_n), _f(*a, **k))[1])
    counts = []
    for steps in (3, 30):
        p = random_problem(steps, 2, 3, 4, seed=18, lengths=[steps, 1])
        tape = p.forward_train(be)[3]
        calls.clear()
        be.backward(tape, *p.output_grads())
        counts.append(len(calls))
    assert counts[0] == counts[1] == 7, counts  # dx, dh0, dc0, dw_ih, dw_hh, db (b_ih's) and its copy for b_hh


def test_numpy_backward_memory_does_not_grow_with_steps():
    """tracemalloc: the peak of a numpy backward grows with T only by the T-sized outputs (dx), not
    by anything kept per step."""
    be = NumpyBackend()
    peaks = {}
    for steps in (40, 80):
        p = random_problem(steps, 4, 16, 32, dtype=np.float64, seed=19)
        tape = p.forward_train(be)[3]
        grads = p.output_grads()
        tracemalloc.start()
        try:
            be.backward(tape, *grads)
            peaks[steps] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    dx_growth = 40 * 4 * 16 * 8
    assert peaks[80] - peaks[40] <= dx_growth + 16 * 1024, (peaks, dx_growth)


# ---------------------------------------------------------------------------- refusals
def test_backend_without_backward_refuses_naming_those_that_have_it():
    class ForwardOnly(NumpyBackend):
        name = "forward-only"
        capabilities = NumpyBackend.capabilities - {"backward"}

    be = ForwardOnly()
    p = random_problem(2, 2, 3, 4, seed=20)
    with pytest.raises(lb.UnsupportedFeatureError,
                       match=r"'forward-only'.*forward_train.*'backward'.*numpy, numba") as info:
        p.forward_train(be)
    assert "cuda" in str(info.value) or not lb.get_backend("cuda").is_available()


def test_training_refuses_non_default_activations_naming_the_feature():
    be = NumpyBackend()
    p = random_problem(2, 2, 3, 4, seed=21)
    with pytest.raises(lb.UnsupportedFeatureError, match=r"HardSigmoid.*'activations'.*supports: clip, peephole"):
        be.forward_train(p.x, p.params, activations=["HardSigmoid", "Tanh", "Tanh"])
    assert be.backward_features == {"projection", "peephole", "clip"}
    assert lb.backends_with("activations", training=True) == []
    assert "numpy" in lb.backends_with("projection", training=True)


def test_backward_features_must_be_known():
    with pytest.raises(TypeError, match="backward_features has unknown entries"):
        type("Bad", (lb.Backend,), {"backward_features": frozenset({"dropout"})})


def test_layer_backward_refuses_a_tape_of_another_configuration():
    a = lb.LSTM(3, 4, num_layers=2, backend="numpy", seed=0)
    b = lb.LSTM(3, 4, num_layers=1, backend="numpy", seed=0)
    tape = a.forward_train(np.zeros((2, 1, 3), np.float32))[2]
    with pytest.raises(ValueError, match="another configuration"):
        b.backward(tape)
    with pytest.raises(TypeError, match="StackTape"):
        b.backward(None)


def test_forward_train_outputs_equal_forward_and_may_be_modified():
    """forward_train returns forward's outputs (bit for bit on the reference); the tape does not
    reference them, so modifying them leaves the gradients unchanged."""
    lstm = lb.LSTM(3, 4, num_layers=2, bidirectional=True, backend="numpy", dtype=np.float64, seed=1)
    x = np.random.default_rng(2).standard_normal((5, 2, 3))
    y, (h_n, c_n), tape = lstm.forward_train(x, lengths=[5, 3])
    y0, (h0, c0) = lstm(x, lengths=[5, 3])
    for a, b in ((y, y0), (h_n, h0), (c_n, c0)):
        np.testing.assert_array_equal(a, b)
    dy = np.ones_like(y)
    first = lstm.backward(tape, dy)
    y[...], h_n[...] = np.nan, np.nan
    second = lstm.backward(tape, dy)
    np.testing.assert_array_equal(first[0], second[0])
    for k in first[2]:
        np.testing.assert_array_equal(first[2][k], second[2][k])


# ---------------------------------------------------------------------------- end to end
def _adam(params, grads, state, lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8):
    """torch.optim.Adam's update, in NumPy (in place)."""
    state["t"] = state.get("t", 0) + 1
    t = state["t"]
    for k, g in grads.items():
        m = state.setdefault(("m", k), np.zeros_like(g))
        v = state.setdefault(("v", k), np.zeros_like(g))
        m *= beta1
        m += (1 - beta1) * g
        v *= beta2
        v += (1 - beta2) * g * g
        denom = np.sqrt(v) / np.sqrt(1 - beta2**t) + eps
        params[k] -= lr / (1 - beta1**t) * m / denom


def test_twenty_training_steps_match_torch_autograd():
    """A 2-layer LSTM with a linear read-out trained for 20 Adam steps in float64, from identical
    weights, once with our gradients (NumPy Adam) and once with torch autograd (torch.optim.Adam):
    the loss curves agree to 1e-8."""
    rng = np.random.default_rng(22)
    steps, batch, in_size, hidden = 12, 8, 2, 8
    x = rng.standard_normal((steps, batch, in_size))
    target = np.cumsum(x[:, :, :1], axis=0) * 0.3  # running sum of the first feature
    lstm = lb.LSTM(in_size, hidden, num_layers=2, dtype=np.float64, backend="numpy", seed=23)
    w_out = rng.uniform(-0.3, 0.3, (1, hidden))
    b_out = np.zeros(1)
    torch_lstm = _torch_lstm(lstm)
    torch_out = torch.nn.Linear(hidden, 1, dtype=torch.float64)
    with torch.no_grad():
        torch_out.weight.copy_(torch.from_numpy(w_out))
        torch_out.bias.copy_(torch.from_numpy(b_out))
    optimizer = torch.optim.Adam([*torch_lstm.parameters(), *torch_out.parameters()], lr=0.01)
    weights = {**lstm.state_dict(), "w_out": w_out, "b_out": b_out}
    state: dict = {}
    ours, theirs = [], []
    for _ in range(20):
        lstm.load_state_dict({k: v for k, v in weights.items() if not k.endswith("_out")})
        y, _, tape = lstm.forward_train(x)
        pred = y @ weights["w_out"].T + weights["b_out"]
        err = pred - target
        ours.append(float((err**2).mean()))
        d_pred = 2 * err / err.size
        _, _, grads = lstm.backward(tape, d_pred @ weights["w_out"])
        grads["w_out"] = d_pred.reshape(-1, 1).T @ y.reshape(-1, hidden)
        grads["b_out"] = d_pred.sum(axis=(0, 1))
        _adam(weights, grads, state)

        optimizer.zero_grad()
        loss = ((torch_out(torch_lstm(torch.from_numpy(x))[0]) - torch.from_numpy(target)) ** 2).mean()
        theirs.append(loss.item())
        loss.backward()
        optimizer.step()
    np.testing.assert_allclose(ours, theirs, rtol=1e-8, atol=0)
    assert ours[-1] < 0.8 * ours[0]  # it learns


def test_numpy_training_example_runs_and_learns():
    """examples/train_numpy.py (the docs' figure): the loss falls by 10x within 200 Adam steps."""
    import os
    import runpy

    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    path = os.path.join(os.path.dirname(__file__), "..", "examples", "train_numpy.py")
    result = runpy.run_path(path, run_name="__main__")
    assert result["losses"][-1] < 0.1 * result["losses"][0]
