"""ONNX LSTM nodes without onnxruntime, checked against onnxruntime (the oracle) on random models.

Every model here has random weights drawn in ONNX's own layout (W, R, B, P in the gate order
i, o, f, c / peepholes i, o, f), so the loader's conversion is checked by onnxruntime, not by
our own inverse.  onnxruntime has no float64 LSTM and refuses ``layout = 1``: float64 models
are checked against a plain transcription of the ONNX equations (itself checked against
onnxruntime in float32), and layout 1 against the layout-0 model on transposed data.
"""

from __future__ import annotations

import itertools
import math
import os
import subprocess
import sys
import textwrap
import warnings
import zlib

import numpy as np
import pytest

import lstm_backends as lb

onnx = pytest.importorskip("onnx", reason='needs the onnx extra: pip install "lstm-backends[onnx]"')
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import lstm_backends.onnx as lbo  # noqa: E402

T, B, I, H = 4, 3, 3, 5  # noqa: E741 - the operator's names
DIRECTIONS = {"forward": 1, "reverse": 1, "bidirectional": 2}
_ELEM = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float64): TensorProto.DOUBLE}


# ---------------------------------------------------------------------------- random models
def random_weights(direction, *, peephole=False, bias=True, dtype=np.float32, seed=0, input_size=I, hidden=H):
    """W, R, B, P in ONNX's layout, random (never constant: a swapped gate must show)."""
    rng = np.random.default_rng(seed)
    d = DIRECTIONS[direction]
    scale = 1 / math.sqrt(hidden)
    w = {"W": rng.uniform(-scale, scale, (d, 4 * hidden, input_size)),
         "R": rng.uniform(-scale, scale, (d, 4 * hidden, hidden)),
         "B": rng.uniform(-scale, scale, (d, 8 * hidden)) if bias else None,
         "P": rng.uniform(-1, 1, (d, 3 * hidden)) if peephole else None}
    return {k: None if v is None else v.astype(dtype) for k, v in w.items()}


def make_model(weights, direction="forward", *, clip=None, input_forget=False, activations=None, alphas=None,
               betas=None, layout=0, hidden_size=True, weights_from="initializer", extra_attrs=None, name="lstm",
               dtype=np.float32):
    """A one-node model: graph inputs X, sequence_lens, initial_h, initial_c; outputs Y, Y_h, Y_c."""
    elem = _ELEM[np.dtype(dtype)]
    inits, nodes, graph_inputs = [], [], [helper.make_tensor_value_info("X", elem, None)]
    names = ["X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P"]
    for role in ("W", "R", "B", "P"):
        value = weights[role]
        if value is None:
            names[names.index(role)] = ""
        elif weights_from == "initializer":
            inits.append(numpy_helper.from_array(value, role))
        elif weights_from == "constant":
            nodes.append(helper.make_node("Constant", [], [role], value=numpy_helper.from_array(value, role + "_c")))
        else:  # a graph input: not a constant
            graph_inputs.append(helper.make_tensor_value_info(role, elem, value.shape))
    graph_inputs += [helper.make_tensor_value_info("sequence_lens", TensorProto.INT32, None),
                     helper.make_tensor_value_info("initial_h", elem, None),
                     helper.make_tensor_value_info("initial_c", elem, None)]
    attrs = {"direction": direction}
    if hidden_size:
        attrs["hidden_size"] = weights["R"].shape[-1] if hidden_size is True else hidden_size
    if clip is not None:
        attrs["clip"] = clip
    if input_forget:
        attrs["input_forget"] = 1
    if activations:
        attrs["activations"] = list(activations)
    if alphas:
        attrs["activation_alpha"] = list(alphas)
    if betas:
        attrs["activation_beta"] = list(betas)
    if layout:
        attrs["layout"] = layout
    attrs.update(extra_attrs or {})
    nodes.append(helper.make_node("LSTM", names, ["Y", "Y_h", "Y_c"], name=name, **attrs))
    outputs = [helper.make_tensor_value_info(n, elem, None) for n in ("Y", "Y_h", "Y_c")]
    graph = helper.make_graph(nodes, "g", graph_inputs, outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])


def run_ort(model, X, sequence_lens=None, initial_h=None, initial_c=None):  # noqa: N803
    """onnxruntime's outputs for a one-node model of :func:`make_model` (layout 0)."""
    ort = pytest.importorskip("onnxruntime")
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    node = next(n for n in model.graph.node if n.op_type == "LSTM")
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    d = 2 if attrs.get("direction") == b"bidirectional" else 1
    batch = X.shape[1]
    # every declared input must be fed: absent optional values go in as their defaults
    zeros = np.zeros((d, batch, attrs["hidden_size"]), X.dtype)
    feeds = {"X": X,
             "sequence_lens": (np.full(batch, X.shape[0], np.int32) if sequence_lens is None
                               else np.asarray(sequence_lens, np.int32)),
             "initial_h": zeros if initial_h is None else initial_h,
             "initial_c": zeros if initial_c is None else initial_c}
    return sess.run(None, feeds)


# ---------------------------------------------------------------------------- a second oracle
def onnx_equations(X, W, R, Bias=None, P=None, *, direction="forward", sequence_lens=None, initial_h=None,  # noqa: N803
                   initial_c=None, clip=None, input_forget=False, acts=None):
    """The ONNX LSTM equations transcribed literally, row by row, gates i, o, f, c (layout 0).

    Defaults: f = Sigmoid, g = h = Tanh; ``acts`` overrides with callables per direction.
    """
    t_len, batch, _ = X.shape
    d, four_h, _ = W.shape
    hidden = four_h // 4
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    bound = (lambda v: v) if clip is None else (lambda v: np.clip(v, -clip, clip))
    lens = np.full(batch, t_len) if sequence_lens is None else np.asarray(sequence_lens)
    Y = np.zeros((t_len, d, batch, hidden), X.dtype)  # noqa: N806
    Y_h = np.zeros((d, batch, hidden), X.dtype)  # noqa: N806
    Y_c = np.zeros((d, batch, hidden), X.dtype)  # noqa: N806
    for k in range(d):
        f_act, g_act, h_act = (sig, np.tanh, np.tanh) if acts is None else acts[k]
        Wi, Wo, Wf, Wc = np.split(W[k], 4)  # noqa: N806
        Ri, Ro, Rf, Rc = np.split(R[k], 4)  # noqa: N806
        b = np.zeros(8 * hidden) if Bias is None else Bias[k]
        Wbi, Wbo, Wbf, Wbc, Rbi, Rbo, Rbf, Rbc = np.split(b, 8)  # noqa: N806
        Pi, Po, Pf = np.split(np.zeros(3 * hidden) if P is None else P[k], 3)  # noqa: N806
        backwards = direction == "reverse" or k == 1
        for row in range(batch):
            h = np.zeros(hidden) if initial_h is None else initial_h[k, row].astype(np.float64)
            c = np.zeros(hidden) if initial_c is None else initial_c[k, row].astype(np.float64)
            steps = range(lens[row] - 1, -1, -1) if backwards else range(lens[row])
            for t in steps:
                x = X[t, row]
                it = f_act(bound(x @ Wi.T + h @ Ri.T + Pi * c + Wbi + Rbi))
                ft = 1 - it if input_forget else f_act(bound(x @ Wf.T + h @ Rf.T + Pf * c + Wbf + Rbf))
                ct = g_act(bound(x @ Wc.T + h @ Rc.T + Wbc + Rbc))
                c = ft * c + it * ct
                ot = f_act(bound(x @ Wo.T + h @ Ro.T + Po * c + Wbo + Rbo))
                h = ot * h_act(c)
                Y[t, k, row] = h
            if lens[row] > 0:  # onnxruntime: zeros for a row of length 0
                Y_h[k, row], Y_c[k, row] = h, c
    return Y, Y_h, Y_c


# ---------------------------------------------------------------------------- backends
def _backends(needs):
    """Every available backend with the capabilities a node needs (cuda only on a real GPU here;
    the simulator gets its own test below)."""
    names = []
    for info in lb.list_backends():
        if not info.available or not set(needs) <= set(info.capabilities):
            continue
        if info.name == "cuda" and "simulated" in info.reason:
            continue
        names.append(info.name)
    return names


def backend_or_skip(name, needs=()):
    """Skip (with the reason) unless backend ``name`` is available and has the capabilities ``needs``:
    for tests parametrized over every known backend, so that none is silently left out."""
    info = next(b for b in lb.list_backends() if b.name == name)
    if not info.available:
        pytest.skip(f"backend {name!r} is not available here: {info.reason}")
    if info.name == "cuda" and "simulated" in info.reason:
        pytest.skip("backend 'cuda' runs under the CUDA simulator here; test_cuda_backend_runs_onnx_nodes_under_"
                    "simulator covers ONNX nodes on it")
    missing = set(needs) - set(info.capabilities)
    if missing:
        pytest.skip(f"backend {name!r} lacks the capabilities {', '.join(sorted(missing))} this test needs")


def _needs(peephole, clip, input_forget, activations=None):
    return ({"peephole"} if peephole else set()) | ({"clip"} if clip or input_forget else set()) \
        | ({"activations"} if activations else set())


def _close(got, expected, dtype, what):
    from lstm_backends.testing import assert_close

    for g, e, n in zip(got, expected, ("Y", "Y_h", "Y_c")):
        assert g.shape == np.shape(e), f"{what}: {n} has shape {g.shape}, expected {np.shape(e)}"
        assert_close(g, np.asarray(e, np.float64), dtype=dtype, name=n, context=what)


# ---------------------------------------------------------------------------- against onnxruntime
STATES = [(None, False), ("zero-and-full", False), (None, True), ("zero-and-full", True)]


@pytest.mark.parametrize("direction", list(DIRECTIONS))
@pytest.mark.parametrize("peephole, clip, input_forget", list(itertools.product([False, True], [None, 0.6],
                                                                                [False, True])))
def test_every_combination_matches_onnxruntime(direction, peephole, clip, input_forget):
    """direction x peepholes x clip x input_forget, each with and without sequence_lens (0 and T
    among them) and initial states, float32, on every backend that has the node's capabilities;
    the literal transcription of the equations agrees too (it is the float64 oracle below)."""
    pytest.importorskip("onnxruntime")
    d = DIRECTIONS[direction]
    seed = zlib.crc32(repr((direction, peephole, clip, input_forget)).encode())
    w = random_weights(direction, peephole=peephole, seed=seed)
    model = make_model(w, direction, clip=clip, input_forget=input_forget)
    rng = np.random.default_rng(seed + 1)
    X = rng.standard_normal((T, B, I)).astype(np.float32)  # noqa: N806
    backends = _backends(_needs(peephole, clip, input_forget))
    assert "numpy" in backends
    nodes = {name: lbo.load(model, backend=name) for name in backends}
    for lens_kind, states in STATES:
        lens = None if lens_kind is None else np.array([T, 0, 2], np.int32)
        h0 = rng.uniform(-1, 1, (d, B, H)).astype(np.float32) if states else None
        c0 = rng.standard_normal((d, B, H)).astype(np.float32) if states else None
        expected = run_ort(model, X, lens, h0, c0)
        what = f"{direction} peephole={peephole} clip={clip} input_forget={input_forget} lens={lens_kind} " \
               f"states={states} seed={seed}"
        _close(onnx_equations(X, w["W"], w["R"], w["B"], w["P"], direction=direction, sequence_lens=lens,
                              initial_h=h0, initial_c=c0, clip=clip, input_forget=input_forget),
               expected, np.float32, "transcribed equations vs onnxruntime: " + what)
        for name, node in nodes.items():
            got = node(X, lens, h0, c0)
            _close(got, expected, np.float32, f"{name} vs onnxruntime: {what}")
            if lens is not None:
                assert not got[0][2:, :, 1].any() and not got[1][:, 1].any() and not got[2][:, 1].any()


ACTIVATION_CASES = [
    (["HardSigmoid", "Tanh", "Tanh"], None, None),
    (["Sigmoid", "LeakyRelu", "Softsign"], [0.3], None),
    (["Sigmoid", "Elu", "Softplus"], [0.7], None),
    (["HardSigmoid", "ScaledTanh", "Affine"], [0.3, 1.5, 0.8], [0.4, 0.6, 0.1]),
    (["Sigmoid", "ThresholdedRelu", "Relu"], [0.2], None),
    (["Sigmoid", "Tanh", "Tanh", "HardSigmoid", "Elu", "Softsign"], [0.25, 0.9], [0.45]),
]


@pytest.mark.parametrize("activations, alphas, betas", ACTIVATION_CASES)
def test_activations_match_onnxruntime(activations, alphas, betas):
    """ONNX's other activation functions, with alpha/beta consumed as onnxruntime does."""
    pytest.importorskip("onnxruntime")
    direction = "bidirectional" if len(activations) == 6 else "forward"
    w = random_weights(direction, peephole=True, seed=len(activations) + len(alphas or ()))
    model = make_model(w, direction, activations=activations, alphas=alphas, betas=betas, clip=2.0)
    X = np.random.default_rng(5).standard_normal((T, B, I)).astype(np.float32)  # noqa: N806
    lens = np.array([T, 1, 0], np.int32)
    expected = run_ort(model, X, lens)
    for name in _backends({"activations", "peephole", "clip"}):
        _close(lbo.load(model, backend=name)(X, lens), expected, np.float32, f"{name} {activations}")
    refused = [b.name for b in lb.list_backends() if b.available and "activations" not in b.capabilities]
    for name in refused:
        with pytest.raises(lb.UnsupportedFeatureError, match="activations"):
            lbo.load(model, backend=name)


@pytest.mark.parametrize("direction", list(DIRECTIONS))
def test_float64_models_against_the_equations(direction):
    """onnxruntime has no float64 LSTM: float64 models against the transcribed equations."""
    w = random_weights(direction, peephole=True, dtype=np.float64, seed=11)
    rng = np.random.default_rng(12)
    X = rng.standard_normal((T, B, I))  # noqa: N806
    lens = np.array([T, 0, 2], np.int32)
    d = DIRECTIONS[direction]
    h0, c0 = rng.uniform(-1, 1, (d, B, H)), rng.standard_normal((d, B, H))
    for clip, coupled in ((None, False), (0.5, True)):
        model = make_model(w, direction, clip=clip, input_forget=coupled, dtype=np.float64)
        expected = onnx_equations(X, w["W"], w["R"], w["B"], w["P"], direction=direction, sequence_lens=lens,
                                  initial_h=h0, initial_c=c0, clip=clip, input_forget=coupled)
        for name in _backends({"peephole", "clip"}):
            node = lbo.load(model, backend=name)
            assert node.dtype == np.float64
            _close(node(X, lens, h0, c0), expected, np.float64, f"{name} float64 {direction} clip={clip}")
    plain = make_model({**w, "P": None}, direction, dtype=np.float64)
    expected = onnx_equations(X, w["W"], w["R"], w["B"], direction=direction)
    for name in _backends(set()):
        _close(lbo.load(plain, backend=name)(X), expected, np.float64, f"{name} float64 plain {direction}")


@pytest.mark.parametrize("direction", list(DIRECTIONS))
def test_layout_1_against_the_layout_0_model_transposed(direction):
    """onnxruntime refuses layout 1; the same node in layout 0 on transposed data is the oracle."""
    pytest.importorskip("onnxruntime")
    w = random_weights(direction, peephole=True, seed=21)
    rng = np.random.default_rng(22)
    d = DIRECTIONS[direction]
    X = rng.standard_normal((T, B, I)).astype(np.float32)  # noqa: N806
    h0, c0 = rng.uniform(-1, 1, (d, B, H)).astype(np.float32), rng.standard_normal((d, B, H)).astype(np.float32)
    lens = np.array([2, T, 0], np.int32)
    for clip, needs in ((None, {"peephole"}), (0.7, {"peephole", "clip"})):
        Y, Y_h, Y_c = run_ort(make_model(w, direction, clip=clip), X, lens, h0, c0)  # noqa: N806
        layout1 = make_model(w, direction, clip=clip, layout=1)
        for name in _backends(needs):
            got = lbo.load(layout1, backend=name)(X.transpose(1, 0, 2), lens, h0.transpose(1, 0, 2),
                                                  c0.transpose(1, 0, 2))
            assert got[0].shape == (B, T, d, H) and got[1].shape == (B, d, H) and got[2].shape == (B, d, H)
            _close(got, (Y.transpose(2, 0, 1, 3), Y_h.transpose(1, 0, 2), Y_c.transpose(1, 0, 2)), np.float32,
                   f"{name} layout 1 {direction} clip={clip}")


def test_optional_inputs_constants_and_no_hidden_size_attribute():
    """No B, no P, weights from Constant nodes, hidden_size inferred: still onnxruntime's answer."""
    pytest.importorskip("onnxruntime")
    w = random_weights("bidirectional", bias=False, seed=31)
    X = np.random.default_rng(32).standard_normal((T, B, I)).astype(np.float32)  # noqa: N806
    expected = run_ort(make_model(w, "bidirectional"), X)
    for kw in ({"weights_from": "constant"}, {"hidden_size": False}):
        node = lbo.load(make_model(w, "bidirectional", **kw), backend="numpy")
        assert node.hidden_size == H and node.input_size == I and node.num_directions == 2
        _close(node(X), expected, np.float32, f"no B, {kw}")
        assert all(not p.b_ih.any() and p.w_peep is None for p in node.params)


def test_weights_given_at_call_time():
    """Weights that are graph inputs (or computed by other nodes) load, and are given at call time, by the
    operator's names (keywords) or by the model's tensor names (run); a given weight replaces a constant."""
    pytest.importorskip("onnxruntime")
    w = random_weights("bidirectional", peephole=True, seed=35)
    rng = np.random.default_rng(36)
    X = rng.standard_normal((T, B, I)).astype(np.float32)  # noqa: N806
    lens = np.array([T, 0, 2], np.int32)
    h0 = rng.uniform(-1, 1, (2, B, H)).astype(np.float32)
    expected = run_ort(make_model(w, "bidirectional"), X, lens, h0)
    fed = make_model(w, "bidirectional", weights_from="input")
    for name in _backends({"peephole"}):
        node = lbo.load(fed, backend=name)
        assert node.call_time == ("W", "R", "B", "P") and node.params == [] and node.dtype is None
        assert node.hidden_size == H and node.input_size is None
        assert node.describe()["call_time"] == ["W", "R", "B", "P"]
        _close(node(X, lens, h0, W=w["W"], R=w["R"], B=w["B"], P=w["P"]), expected, np.float32, f"{name} keywords")
        got = node.run({"X": X, "sequence_lens": lens, "initial_h": h0, "initial_c": np.zeros_like(h0), **w})
        assert list(got) == ["Y", "Y_h", "Y_c"]
        _close(list(got.values()), expected, np.float32, f"{name} run(feeds)")
    node = lbo.load(fed, backend="numpy")
    with pytest.raises(ValueError, match=r"LSTM node 'lstm': input W \('W'\), R \('R'\), B \('B'\), P \('P'\) are "
                                         r"not a constant of the model .*give them at call time"):
        node(X)
    with pytest.raises(ValueError, match=r"input P \('P'\) is not a constant"):
        node(X, W=w["W"], R=w["R"], B=w["B"])
    with pytest.raises(ValueError, match=r"input R must have shape \(2, 20, 5\)"):
        node(X, W=w["W"], R=w["R"][:, :, :4], B=w["B"], P=w["P"])
    with pytest.raises(ValueError, match="cannot become an lstm_backends.LSTM"):
        node.to_lstm()
    result = lbo.check_against_onnxruntime(node)
    assert not result["compared"] and "not constants" in result["reason"]
    with pytest.raises(ValueError, match=r"LSTM node 'lstm' has no input named 'Q'; its inputs: X='X', W='W'"):
        node.run({"X": X, "Q": X})
    with pytest.raises(ValueError, match=r"no value for input R \('R'\) in feeds"):
        node.run({"X": X, "W": w["W"]})
    # a weight given for a constant replaces it for that call only; one the node lacks is refused
    plain = lbo.load(make_model({**w, "P": None}, "bidirectional"), backend="numpy")
    other = random_weights("bidirectional", seed=37)
    _close(plain(X, W=other["W"], R=other["R"], B=other["B"]),
           run_ort(make_model({**other, "P": None}, "bidirectional"), X), np.float32, "override")
    _close(plain(X), run_ort(make_model({**w, "P": None}, "bidirectional"), X), np.float32, "constants again")
    with pytest.raises(ValueError, match=r"LSTM node 'lstm' has no input P \(its weight inputs: W, R, B\)"):
        plain(X, P=w["P"])


def test_auto_picks_a_backend_with_the_needed_capabilities():
    plain = lbo.load(make_model(random_weights("forward", seed=41)))
    assert plain.backend.name == lb.get_backend("auto").name
    peep = lbo.load(make_model(random_weights("forward", peephole=True, seed=42), clip=1.0))
    assert {"peephole", "clip"} <= peep.backend.capabilities
    with pytest.raises(lb.UnsupportedFeatureError, match=r"'numba' does not support .*'activations'"):
        lbo.load(make_model(random_weights("forward", seed=42), activations=["Sigmoid", "Elu", "Tanh"]),
                 backend="numba")


# ---------------------------------------------------------------------------- nodes and models
def test_load_all_by_name_and_path(tmp_path):
    """Two chained LSTM nodes in one file: load_all returns both by name; load picks by name or index."""
    pytest.importorskip("onnxruntime")
    w1, w2 = random_weights("forward", seed=51), random_weights("reverse", seed=52, input_size=H)
    m1 = make_model(w1, name="first")
    # the second node reads the first one's Y, squeezed to (T, B, H)
    graph = helper.make_graph(
        [helper.make_node("LSTM", ["X", "W", "R", "B"], ["Y"], name="first", hidden_size=H),
         helper.make_node("Squeeze", ["Y", "axes"], ["Y0"]),
         helper.make_node("LSTM", ["Y0", "W2", "R2", "B2"], ["Y2", "Y2_h", "Y2_c"], name="second",
                          hidden_size=H, direction="reverse")],
        "two", [helper.make_tensor_value_info("X", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("Y2", "Y2_h")],
        list(m1.graph.initializer) + [numpy_helper.from_array(w2[k], k + "2") for k in ("W", "R", "B")]
        + [numpy_helper.from_array(np.array([1], np.int64), "axes")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    path = tmp_path / "two.onnx"
    onnx.save(model, str(path))
    nodes = lbo.load_all(path, backend="numpy")
    assert list(nodes) == ["first", "second"] and nodes["second"].direction == "reverse"
    assert lbo.load(str(path), "second").name == lbo.load(path, 1).name == "second"
    X = np.random.default_rng(53).standard_normal((T, B, I)).astype(np.float32)  # noqa: N806
    import onnxruntime as ort

    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"X": X})
    Y = nodes["first"](X)[0]  # noqa: N806
    Y2, Y2_h = nodes["second"](Y[:, 0])[:2]  # noqa: N806 - its Y_c is not a graph output
    _close((Y2, Y2_h), want, np.float32, "chained nodes")
    unused = make_model(w1, name="")
    assert list(lbo.load_all(unused)) == ["LSTM_0"]


def test_to_lstm_for_plain_nodes_and_refusal_otherwise():
    w = random_weights("bidirectional", seed=61)
    rng = np.random.default_rng(62)
    X = rng.standard_normal((T, B, I)).astype(np.float32)  # noqa: N806
    lens = np.array([T, 2, 1])
    for layout in (0, 1):
        node = lbo.load(make_model(w, "bidirectional", layout=layout), backend="numpy")
        lstm = node.to_lstm()
        assert isinstance(lstm, lb.LSTM) and lstm.bidirectional and lstm.batch_first == (layout == 1)
        x_in = X if layout == 0 else X.transpose(1, 0, 2)
        Y, Y_h, Y_c = node(x_in, lens)  # noqa: N806
        y, (h_n, c_n) = lstm(x_in, lengths=lens)
        if layout == 0:
            np.testing.assert_allclose(y, Y.transpose(0, 2, 1, 3).reshape(T, B, 2 * H), rtol=1e-6, atol=1e-7)
        else:
            np.testing.assert_allclose(y, Y.reshape(B, T, 2 * H), rtol=1e-6, atol=1e-7)
            Y_h = Y_h.transpose(1, 0, 2)  # noqa: N806
        np.testing.assert_allclose(h_n, Y_h, rtol=1e-6, atol=1e-7)
    for kw, word in (({"clip": 1.0}, "clip=1"), ({"input_forget": True}, "input_forget"),
                     ({"activations": ["HardSigmoid", "Tanh", "Tanh"] * 2}, "HardSigmoid")):
        with pytest.raises(ValueError, match=f"node 'lstm' cannot become an lstm_backends.LSTM: it uses .*{word}"):
            lbo.load(make_model(w, "bidirectional", **kw), backend="numpy").to_lstm()
    with pytest.raises(ValueError, match="peepholes"):
        lbo.load(make_model(random_weights("forward", peephole=True), "forward"), backend="numpy").to_lstm()
    with pytest.raises(ValueError, match="reverse"):
        lbo.load(make_model(random_weights("reverse"), "reverse"), backend="numpy").to_lstm()


def test_check_against_onnxruntime_for_minimal_layout_1_and_float64_nodes():
    pytest.importorskip("onnxruntime")
    w = random_weights("bidirectional", peephole=True, seed=81)
    minimal = helper.make_model(helper.make_graph(
        [helper.make_node("LSTM", ["X", "W", "R"], ["Y"], name="bare", direction="bidirectional")], "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w[k], k) for k in ("W", "R")]))
    for model in (minimal, make_model(w, "bidirectional", layout=1, clip=0.8, input_forget=True)):
        result = lbo.check_against_onnxruntime(lbo.load(model, backend="numpy"))
        assert result["compared"] and result["agrees"] and result["worst"] <= 1.0, result
    wrong = lbo.load(minimal, backend="numpy")
    wrong.params[1] = wrong.params[0]  # a corrupted reverse direction must be caught
    assert not lbo.check_against_onnxruntime(wrong)["agrees"]
    double = make_model(random_weights("forward", dtype=np.float64), dtype=np.float64)
    result = lbo.check_against_onnxruntime(lbo.load(double, backend="numpy"))
    assert not result["compared"] and "no float64 LSTM" in result["reason"]


# ---------------------------------------------------------------------------- errors
def test_bad_models_and_nodes(tmp_path):
    w = random_weights("forward", seed=71)
    bogus = tmp_path / "not.onnx"
    bogus.write_bytes(b"this is not a protobuf \xff\xfe")
    with pytest.raises(ValueError, match="is not an ONNX model"):
        lbo.load(bogus)
    with pytest.raises(FileNotFoundError, match="no ONNX model"):
        lbo.load(tmp_path / "missing.onnx")
    with pytest.raises(TypeError, match="path, bytes or an onnx.ModelProto"):
        lbo.load(42)
    model = make_model(w)
    model.graph.node.append(helper.make_node("Relu", ["Y"], ["Z"], name="act"))
    with pytest.raises(ValueError, match="node 'act' is a Relu node, not an LSTM"):
        lbo.load(model, "act")
    with pytest.raises(ValueError, match="no LSTM node named 'nope'; the LSTM nodes are: 'lstm'"):
        lbo.load(model, "nope")
    with pytest.raises(ValueError, match="index 3 is out of range"):
        lbo.load(model, 3)
    empty = helper.make_model(helper.make_graph([], "g", [], []))
    with pytest.raises(ValueError, match="no LSTM node"):
        lbo.load(empty)
    two = make_model(w)
    two.graph.node.append(helper.make_node("LSTM", ["X", "W", "R"], ["Q"], name="other", hidden_size=H))
    with pytest.raises(ValueError, match=r"2 LSTM nodes \('lstm', 'other'\); pass node="):
        lbo.load(two)


@pytest.mark.parametrize(
    "kw, match",
    [({"extra_attrs": {"frobnicate": 1}}, "node 'lstm': unknown attribute 'frobnicate'"),
     ({"hidden_size": 7}, r"node 'lstm': attribute hidden_size=7 is inconsistent with input W of shape \(1, 20, 3\)"),
     ({"extra_attrs": {"direction": "sideways"}}, "node 'lstm': attribute direction must be forward, reverse or"),
     ({"layout": 2}, "node 'lstm': attribute layout must be 0 or 1"),
     ({"clip": -1.0}, "node 'lstm': attribute clip must be positive"),
     ({"activations": ["Sigmoid", "Tanh"]}, "node 'lstm': attribute activations: activations lists 2 functions"),
     ({"activations": ["Sigmoid", "Swish", "Tanh"]}, "node 'lstm': attribute activations: unknown activation 'Swish'")],
)
def test_bad_attributes_name_the_node_and_attribute(kw, match):
    with pytest.raises(ValueError, match=match):
        lbo.load(make_model(random_weights("forward", seed=72), **kw), backend="numpy")


def test_bad_weight_shapes_name_the_input():
    w = random_weights("bidirectional", peephole=True, seed=73)
    with pytest.raises(ValueError, match=r"input W must have shape \(num_directions, 4H, I\) with num_directions=1"):
        lbo.load(make_model(w, "forward"))
    with pytest.raises(ValueError, match=r"input R must have shape \(2, 20, 5\)"):
        lbo.load(make_model({**w, "R": w["R"][:, :, :4]}, "bidirectional", hidden_size=False))
    with pytest.raises(ValueError, match=r"input P must have shape \(2, 15\)"):
        lbo.load(make_model({**w, "P": w["P"][:, :10]}, "bidirectional"))
    with pytest.raises(ValueError, match=r"input B must have shape \(2, 40\)"):
        lbo.load(make_model({**w, "B": w["B"][:, :20]}, "bidirectional"))


def test_bad_call_arguments_name_the_node():
    node = lbo.load(make_model(random_weights("bidirectional", seed=74), "bidirectional"), backend="numpy")
    X = np.zeros((T, B, I), np.float32)  # noqa: N806
    with pytest.raises(ValueError, match=r"node 'lstm': X must have shape \(T, B, I\) with I=3 \(from W\)"):
        node(X[:, :, :2])
    with pytest.raises(ValueError, match=r"node 'lstm': sequence_lens must hold B=3 integers; got shape \(2,\)"):
        node(X, [1, 2])
    with pytest.raises(ValueError, match=r"node 'lstm': sequence_lens must lie in \[0, T\] = \[0, 4\]"):
        node(X, [1, 2, 5])
    with pytest.raises(ValueError, match=r"node 'lstm': initial_h must have shape \(D, B, H\) = \(2, 3, 5\)"):
        node(X, None, np.zeros((1, B, H), np.float32))
    with pytest.raises(TypeError, match="mixed dtypes"):
        node(X.astype(np.float64))


def test_importing_the_package_does_not_import_onnx():
    code = "import sys, lstm_backends as lb; lb.list_backends(); print('onnx' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr


# ---------------------------------------------------------------------------- torch end to end
def test_torch_exported_model_end_to_end(tmp_path):
    """LSTM (2 layers, bidirectional) + Linear exported by torch.onnx.export: our loader runs its
    LSTM nodes, NumPy glues them like the exported graph does, and the result is torch's."""
    torch = pytest.importorskip("torch")

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = torch.nn.LSTM(I, H, num_layers=2, bidirectional=True)
            self.head = torch.nn.Linear(2 * H, 2)

        def forward(self, x):
            return self.head(self.lstm(x)[0])

    torch.manual_seed(0)
    model = Model().eval()
    x = torch.randn(T, B, I)
    path = tmp_path / "model.onnx"
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation and tracer notes are torch's business
        want = model(x).numpy()
        # the TorchScript exporter: the dynamo one needs onnxscript, which the test extra does not pull
        torch.onnx.export(model, (x,), str(path), dynamo=False, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "T", 1: "B"}})
    nodes = lbo.load_all(path, backend="numpy")
    assert len(nodes) == 2 and all(n.direction == "bidirectional" and n.hidden_size == H for n in nodes.values())
    layer_in = x.numpy()
    for node in nodes.values():  # graph order is layer order
        Y = node(layer_in)[0]  # noqa: N806 - (T, 2, B, H)
        layer_in = Y.transpose(0, 2, 1, 3).reshape(T, B, 2 * H)  # the exported Transpose + Reshape
    head = {k: v.detach().numpy() for k, v in model.head.state_dict().items()}
    got = layer_in @ head["weight"].T + head["bias"]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # and the plain nodes convert to an lb.LSTM
    assert isinstance(next(iter(nodes.values())).to_lstm(), lb.LSTM)


# ---------------------------------------------------------------------------- cuda under the simulator
CUDA_CODE = """
import numpy as np, onnxruntime as ort
import lstm_backends.onnx as lbo
from tests.test_onnx import random_weights, make_model, run_ort, _close
rng = np.random.default_rng(0)
X = rng.standard_normal((3, 3, 3)).astype(np.float32)
lens = np.array([3, 0, 2], np.int32)
for direction, peephole, clip, coupled in (("bidirectional", True, 0.6, True), ("reverse", False, None, False),
                                           ("forward", True, None, True)):
    d = 2 if direction == "bidirectional" else 1
    w = random_weights(direction, peephole=peephole, seed=d, hidden=4)
    model = make_model(w, direction, clip=clip, input_forget=coupled)
    h0, c0 = rng.uniform(-1, 1, (d, 3, 4)).astype(np.float32), rng.standard_normal((d, 3, 4)).astype(np.float32)
    want = run_ort(model, X, lens, h0, c0)
    _close(lbo.load(model, backend="cuda")(X, lens, h0, c0), want, np.float32, "cuda " + direction)
    if direction == "bidirectional":  # layout 1 on the device backend too
        got = lbo.load(make_model(w, direction, clip=clip, input_forget=coupled, layout=1), backend="cuda")(
            X.transpose(1, 0, 2), lens, h0.transpose(1, 0, 2), c0.transpose(1, 0, 2))
        _close(got, (want[0].transpose(2, 0, 1, 3), want[1].transpose(1, 0, 2), want[2].transpose(1, 0, 2)),
               np.float32, "cuda layout 1")
print("OK")
"""


@pytest.mark.cudasim
def test_cuda_backend_runs_onnx_nodes_under_simulator():
    pytest.importorskip("onnxruntime")
    pytest.importorskip("numba_cuda")
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    from lstm_backends.testing._cudasim_patch import SIMULATOR_PRELUDE

    out = subprocess.run([sys.executable, "-c", SIMULATOR_PRELUDE + textwrap.dedent(CUDA_CODE)], capture_output=True,
                         text=True, env=env, cwd=root, timeout=900)
    assert out.returncode == 0 and "OK" in out.stdout, out.stdout[-2000:] + out.stderr[-3000:]
