"""Whole ONNX models in one call (``lstm_backends.onnx.load_model``), against onnxruntime.

The LSTM nodes run on our backends, every other node in ``onnx.reference``; onnxruntime
runs the same file, and the outputs must agree at the library's float32 tolerance.  The
models: torch exports (the TorchScript exporter, ``dynamo=False``: the dynamo exporter
needs onnxscript, which the test extras do not pull) and, since a Keras model cannot be
converted without tensorflow, graphs built by hand with the glue tf2onnx writes around
an LSTM (Transpose to time-major, Squeeze of the direction axis, MatMul + Add + Softmax).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import lstm_backends as lb

onnx = pytest.importorskip("onnx", reason='needs the onnx extra: pip install "lstm-backends[onnx]"')
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import lstm_backends.onnx as lbo  # noqa: E402
from lstm_backends.testing import assert_close  # noqa: E402
from tests.test_onnx import backend_or_skip, make_model, random_weights  # noqa: E402

BACKENDS = [b.name for b in lb.list_backends()]
I, H, VOCAB = 3, 5, 11  # noqa: E741


def ort_run(model, feeds, output_names=None):
    ort = pytest.importorskip("onnxruntime")
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(output_names, feeds)


def agree(got, want, what):
    assert len(got) == len(want), what
    for k, (g, w) in enumerate(zip(got, want)):
        assert isinstance(g, np.ndarray) and g.dtype == w.dtype, (what, k, type(g), getattr(g, "dtype", None))
        assert_close(g, np.asarray(w, np.float64), dtype=np.float32, name=f"output {k}", context=what)


# ---------------------------------------------------------------------------- torch exports
def _export(module, args, path, **kw):
    torch = pytest.importorskip("torch")
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation and tracer notes are torch's business
        torch.onnx.export(module, args, str(path), dynamo=False, **kw)
    return onnx.load(str(path))


@pytest.fixture(scope="module")
def torch_models(tmp_path_factory):
    """name -> (torch module, ONNX model); exported once for the module."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    tmp = tmp_path_factory.mktemp("torch")

    class Tagger(torch.nn.Module):  # Embedding -> 2-layer bidirectional LSTM -> Linear
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(VOCAB, I)
            self.lstm = torch.nn.LSTM(I, H, num_layers=2, bidirectional=True, batch_first=True)
            self.head = torch.nn.Linear(2 * H, 4)

        def forward(self, tokens):
            return self.head(self.lstm(self.embed(tokens))[0])

    lstm = torch.nn.LSTM(I, H, num_layers=2, bidirectional=True, batch_first=True).eval()
    tagger = Tagger().eval()
    x, tokens = torch.randn(2, 4, I), torch.randint(0, VOCAB, (2, 4))
    return {
        "lstm": (lstm, _export(lstm, (x,), tmp / "lstm.onnx", input_names=["x"], output_names=["y", "h_n", "c_n"],
                               dynamic_axes={"x": {0: "batch", 1: "time"}, "y": {0: "batch", 1: "time"}})),
        "tagger": (tagger, _export(tagger, (tokens,), tmp / "tagger.onnx", input_names=["tokens"],
                                   output_names=["logits"], dynamic_axes={"tokens": {0: "batch", 1: "time"}})),
        "tagger_old_ir": (tagger, _export(tagger, (tokens,), tmp / "tagger_old.onnx", input_names=["tokens"],
                                          output_names=["logits"], keep_initializers_as_inputs=True,
                                          dynamic_axes={"tokens": {0: "batch", 1: "time"}})),
    }


@pytest.mark.parametrize("backend", BACKENDS)
def test_torch_two_layer_bidirectional_batch_first_lstm(torch_models, backend):
    """torch.nn.LSTM(num_layers=2, bidirectional=True, batch_first=True): every output equals
    onnxruntime's and torch's, at sizes other than the traced ones (dynamic axes)."""
    backend_or_skip(backend)
    torch = pytest.importorskip("torch")
    module, model = torch_models["lstm"]
    session = lbo.load_model(model, backend=backend)
    assert len(session.lstm_nodes) == 2
    assert all(n.backend.name == backend and n.direction == "bidirectional" for n in session.lstm_nodes.values())
    assert session.input_names == ["x"] and session.output_names == ["y", "h_n", "c_n"]
    assert session.inputs[0].shape == ("batch", "time", I) and session.inputs[0].dtype == np.float32
    for batch, steps in ((3, 5), (1, 2)):
        x = np.random.default_rng(batch).standard_normal((batch, steps, I)).astype(np.float32)
        got = session.run(None, {"x": x})
        assert [g.shape for g in got] == [(batch, steps, 2 * H), (4, batch, H), (4, batch, H)]
        agree(got, ort_run(model, {"x": x}), f"{backend} B={batch} T={steps} vs onnxruntime")
        with torch.no_grad():
            y, (h_n, c_n) = module(torch.from_numpy(x))
        agree(got, [y.numpy(), h_n.numpy(), c_n.numpy()], f"{backend} B={batch} T={steps} vs torch")
    # a subset of the outputs, in the order asked
    x = np.ones((2, 3, I), np.float32)
    c_n, y = session.run(["c_n", "y"], {"x": x})
    agree([c_n, y], ort_run(model, {"x": x}, ["c_n", "y"]), f"{backend} output subset")


@pytest.mark.parametrize("backend", BACKENDS)
def test_torch_embedding_lstm_linear(torch_models, backend):
    """Embedding in front (int64 token ids, Gather), Linear behind (MatMul + Add)."""
    backend_or_skip(backend)
    torch = pytest.importorskip("torch")
    module, model = torch_models["tagger"]
    session = lbo.load_model(model, backend=backend)
    tokens = np.random.default_rng(7).integers(0, VOCAB, (3, 6)).astype(np.int64)
    got = session.run(None, {"tokens": tokens})
    assert got[0].shape == (3, 6, 4)
    agree(got, ort_run(model, {"tokens": tokens}), f"{backend} tagger vs onnxruntime")
    with torch.no_grad():
        agree(got, [module(torch.from_numpy(tokens)).numpy()], f"{backend} tagger vs torch")


def test_initializers_that_are_graph_inputs_can_be_fed(torch_models):
    """keep_initializers_as_inputs=True (the old IR's way): the weights are defaults a feed may
    replace, as in onnxruntime; unfed, they are the converted-once constants."""
    _, model = torch_models["tagger_old_ir"]
    session = lbo.load_model(model, backend="numpy")
    assert session.input_names == ["tokens"]
    tokens = np.random.default_rng(8).integers(0, VOCAB, (2, 5)).astype(np.int64)
    agree(session.run(None, {"tokens": tokens}), ort_run(model, {"tokens": tokens}), "defaults")
    first = next(iter(session.lstm_nodes.values()))
    w_name = first.weight_names["W"]
    w = first.weights[w_name]
    feeds = {"tokens": tokens, w_name: np.random.default_rng(9).uniform(-0.5, 0.5, w.shape).astype(np.float32)}
    replaced = session.run(None, feeds)
    agree(replaced, ort_run(model, feeds), "an LSTM weight replaced by a feed")
    assert not np.allclose(replaced[0], session.run(None, {"tokens": tokens})[0]), "the feed made no difference"
    agree(session.run(None, {"tokens": tokens}), ort_run(model, {"tokens": tokens}), "defaults again")


def test_proj_size_export():
    """An LSTM with proj_size, if the exporter can write it; skipped with the exporter's own refusal
    otherwise (the TorchScript exporter refuses projections; the dynamo one needs onnxscript)."""
    torch = pytest.importorskip("torch")
    import importlib.util
    import tempfile

    module = torch.nn.LSTM(I, H, proj_size=2, batch_first=True).eval()
    x = torch.randn(2, 4, I)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            model = _export(module, (x,), f"{tmp}/proj.onnx", input_names=["x"], output_names=["y", "h_n", "c_n"])
        except Exception as exc:  # noqa: BLE001 - the exporter's refusal is the skip reason
            message = str(exc).splitlines()[0].split(". ")[0]
            if "projection" not in message:
                raise
            dynamo = "installed" if importlib.util.find_spec("onnxscript") else "not installed"
            pytest.skip(f"torch.onnx.export (TorchScript exporter) refuses proj_size: {type(exc).__name__}: "
                        f"{message} (the dynamo exporter needs onnxscript: {dynamo})")
    session = lbo.load_model(model, backend="numpy")
    agree(session.run(None, {"x": x.numpy()}), ort_run(model, {"x": x.numpy()}), "proj_size")


# ---------------------------------------------------------------------------- Keras / tf2onnx style
def keras_style_model(layout=0, *, seed=0, weights_as_inputs=False):
    """What tf2onnx writes for Keras ``LSTM(H, return_sequences=True)`` + ``Dense(2, softmax)`` with a
    mask: batch-major input, Transpose to time-major (layout 0), a forward LSTM with B and
    sequence_lens, Squeeze of the direction axis, Transpose back, MatMul + Add + Softmax; also Y_h.
    ``layout=1`` writes the batch-major LSTM instead, without the Transposes (onnxruntime refuses it)."""
    rng = np.random.default_rng(seed)
    w = random_weights("forward", seed=seed)
    dense_w = rng.uniform(-1, 1, (H, 2)).astype(np.float32)
    dense_b = rng.uniform(-1, 1, 2).astype(np.float32)
    nodes = []
    if layout == 0:
        nodes.append(helper.make_node("Transpose", ["x"], ["x_tm"], perm=[1, 0, 2], name="to_time_major"))
    nodes.append(helper.make_node("LSTM", ["x_tm" if layout == 0 else "x", "W", "R", "B", "lengths"],
                                  ["Y", "Y_h"], name="lstm", hidden_size=H, layout=layout))
    if layout == 0:
        nodes += [helper.make_node("Squeeze", ["Y", "axis1"], ["Y_sq"]),
                  helper.make_node("Transpose", ["Y_sq"], ["seq"], perm=[1, 0, 2])]
    else:
        nodes.append(helper.make_node("Squeeze", ["Y", "axis2"], ["seq"]))
    nodes += [helper.make_node("MatMul", ["seq", "dense_w"], ["logits"]),
              helper.make_node("Add", ["logits", "dense_b"], ["biased"]),
              helper.make_node("Softmax", ["biased"], ["probs"], axis=-1),
              helper.make_node("Squeeze", ["Y_h", "axis0" if layout == 0 else "axis1"], ["state"])]
    consts = {"dense_w": dense_w, "dense_b": dense_b, "axis0": np.array([0], np.int64),
              "axis1": np.array([1], np.int64), "axis2": np.array([2], np.int64)}
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "time", I]),
              helper.make_tensor_value_info("lengths", TensorProto.INT32, ["batch"])]
    if weights_as_inputs:
        inputs += [helper.make_tensor_value_info(k, TensorProto.FLOAT, w[k].shape) for k in ("W", "R", "B")]
    else:
        consts.update({k: w[k] for k in ("W", "R", "B")})
    graph = helper.make_graph(nodes, "keras_style", inputs,
                              [helper.make_tensor_value_info("probs", TensorProto.FLOAT, None),
                               helper.make_tensor_value_info("state", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(v, k) for k, v in consts.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), w


def _keras_feeds(seed=3):
    rng = np.random.default_rng(seed)
    return {"x": rng.standard_normal((3, 5, I)).astype(np.float32), "lengths": np.array([5, 0, 2], np.int32)}


@pytest.mark.parametrize("backend", BACKENDS)
def test_keras_style_graph_and_its_layout_1_twin(backend):
    """The tf2onnx-style graph against onnxruntime; its layout-1 twin (no Transposes), which
    onnxruntime refuses, against onnxruntime's answer for the layout-0 graph."""
    backend_or_skip(backend)
    model, _ = keras_style_model(0)
    feeds = _keras_feeds()
    want = ort_run(model, feeds)
    got = lbo.load_model(model, backend=backend).run(None, feeds)
    assert got[0].shape == (3, 5, 2) and got[1].shape == (3, H)
    agree(got, want, f"{backend} keras-style layout 0")
    assert not got[1][1].any(), "a row of length 0 has Y_h = 0"
    twin, _ = keras_style_model(1)
    agree(lbo.load_model(twin, backend=backend).run(None, feeds), want, f"{backend} keras-style layout 1")


def test_weights_fed_as_graph_inputs_run_in_the_whole_model():
    """LSTM weights that are graph inputs travel through the evaluator to our node at every run."""
    model, w = keras_style_model(0, weights_as_inputs=True)
    feeds = {**_keras_feeds(), **{k: w[k] for k in ("W", "R", "B")}}
    session = lbo.load_model(model, backend="numpy")
    assert session.input_names == ["x", "lengths", "W", "R", "B"]
    assert session.lstm_nodes["lstm"].call_time == ("W", "R", "B")
    agree(session.run(None, feeds), ort_run(model, feeds), "weights as graph inputs")
    with pytest.raises(ValueError, match=r"no value for the model input\(s\) 'W', 'R', 'B'"):
        session.run(None, _keras_feeds())


def test_each_lstm_node_is_built_once(monkeypatch):
    """Weights are converted when the model loads, not per run; weights fed at run time are the exception."""
    calls = []
    from lstm_backends.onnx import _nodes

    convert = _nodes._convert
    monkeypatch.setattr(_nodes, "_convert", lambda *a, **k: calls.append(a[0]) or convert(*a, **k))
    model, _ = keras_style_model(0)
    session = lbo.load_model(model, backend="numpy")
    assert calls == ["lstm"]
    for _ in range(3):
        session.run(None, _keras_feeds())
    assert calls == ["lstm"]
    fed, w = keras_style_model(0, weights_as_inputs=True)
    session = lbo.load_model(fed, backend="numpy")
    for _ in range(2):
        session.run(None, {**_keras_feeds(), **{k: w[k] for k in ("W", "R", "B")}})
    assert calls == ["lstm"] * 3


def test_lstm_inside_a_subgraph(monkeypatch):
    """An LSTM in the branch of an If node (a subgraph the evaluator runs): ours too, weights
    from the outer graph's initializers converted at load."""
    w = random_weights("bidirectional", seed=5)
    then_branch = helper.make_graph(
        [helper.make_node("LSTM", ["x", "W", "R", "B"], ["Y_then"], direction="bidirectional", hidden_size=H)],
        "then", [], [helper.make_tensor_value_info("Y_then", TensorProto.FLOAT, None)])
    else_branch = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["Y_else"])], "else", [],
        [helper.make_tensor_value_info("Y_else", TensorProto.FLOAT, None)])
    graph = helper.make_graph(
        [helper.make_node("If", ["flag"], ["out"], name="branch", then_branch=then_branch, else_branch=else_branch)],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, None, I]),
              helper.make_tensor_value_info("flag", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w[k], k) for k in ("W", "R", "B")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    calls = []
    from lstm_backends.onnx import _nodes

    convert = _nodes._convert
    monkeypatch.setattr(_nodes, "_convert", lambda *a, **k: calls.append(a[0]) or convert(*a, **k))
    session = lbo.load_model(model, backend="numpy")
    assert list(session.lstm_nodes) == ["branch.then_branch/LSTM_0"]
    assert session.lstm_nodes["branch.then_branch/LSTM_0"].call_time == ()
    x = np.random.default_rng(6).standard_normal((4, 2, I)).astype(np.float32)
    for flag in (True, False):
        feeds = {"x": x, "flag": np.array(flag)}
        agree(session.run(None, feeds), ort_run(model, feeds), f"If branch {flag}")
    assert calls == ["branch.then_branch/LSTM_0"], "the evaluator's node is the one built at load"


def test_identical_lstm_nodes_over_different_constants_get_their_own_weights():
    """Both branches of an If hold the same LSTM node text over their own initializers of the same
    names: the evaluator's node cannot tell which one it is, and each branch must still get its own
    weights (no silent mix-up)."""
    w_then, w_else = random_weights("forward", seed=7), random_weights("forward", seed=8)

    def branch(name, w):
        return helper.make_graph(
            [helper.make_node("LSTM", ["x", "W", "R", "B"], ["Y", "Y_h"], hidden_size=H)], name, [],
            [helper.make_tensor_value_info("Y_h", TensorProto.FLOAT, None)],
            [numpy_helper.from_array(w[k], k) for k in ("W", "R", "B")])

    graph = helper.make_graph(
        [helper.make_node("If", ["flag"], ["out"], name="branch", then_branch=branch("then", w_then),
                          else_branch=branch("else", w_else))],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, None, I]),
              helper.make_tensor_value_info("flag", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    session = lbo.load_model(model, backend="numpy")
    x = np.random.default_rng(9).standard_normal((4, 2, I)).astype(np.float32)
    outs = {}
    for flag in (True, False):
        feeds = {"x": x, "flag": np.array(flag)}
        outs[flag] = session.run(None, feeds)[0]
        agree([outs[flag]], ort_run(model, feeds), f"If branch {flag}")
    assert np.abs(outs[True] - outs[False]).max() > 1e-3   # the two branches' weights really differ


def test_unnamed_outputs_do_not_leak_into_absent_inputs():
    """An LSTM whose Y is unnamed (""), followed by one whose B is absent (""): the evaluator keeps
    both under the name "", so the first node must hand back None there, not its Y."""
    w1, w2 = random_weights("forward", seed=12), random_weights("forward", seed=13, input_size=H)
    graph = helper.make_graph(
        [helper.make_node("LSTM", ["x", "W1", "R1", "B1"], ["", "h1"], hidden_size=H, name="first"),
         helper.make_node("LSTM", ["h1", "W2", "R2", ""], ["y2"], hidden_size=H, name="second")],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, None, I])],
        [helper.make_tensor_value_info("y2", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w1[k], k + "1") for k in ("W", "R", "B")]
        + [numpy_helper.from_array(w2[k], k + "2") for k in ("W", "R")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    feeds = {"x": np.random.default_rng(14).standard_normal((3, 2, I)).astype(np.float32)}
    agree(lbo.load_model(model, backend="numpy").run(None, feeds), ort_run(model, feeds), "unnamed Y")


# ---------------------------------------------------------------------------- refusals and errors
def test_refusals_name_the_node_and_the_operator():
    w = random_weights("forward", seed=11)
    hard = make_model(w, activations=["HardSigmoid", "Tanh", "Tanh"], name="enc")
    for name in [b.name for b in lb.list_backends() if b.available and "activations" not in b.capabilities]:
        with pytest.raises(lb.UnsupportedFeatureError,
                           match=rf"LSTM node 'enc' \(operator LSTM\) cannot run here: .*{name}.*'activations'"):
            lbo.load_model(hard, backend=name)
    session = lbo.load_model(hard)  # auto: a backend that has them
    assert "activations" in session.lstm_nodes["enc"].backend.capabilities
    with pytest.raises(ValueError, match="LSTM node 'enc': unknown attribute 'frobnicate' of the LSTM operator"):
        lbo.load_model(make_model(w, name="enc", extra_attrs={"frobnicate": 1}))
    with pytest.raises(ValueError, match=r"LSTM node 'enc': attribute layout must be 0 or 1"):
        lbo.load_model(make_model(w, name="enc", layout=2))


def test_run_errors_say_what_is_wrong():
    model, _ = keras_style_model(0)
    session = lbo.load_model(model, backend="numpy")
    feeds = _keras_feeds()
    with pytest.raises(ValueError, match=r"the model has no input 'y'; its inputs: 'x', 'lengths'"):
        session.run(None, {**feeds, "y": feeds["x"]})
    with pytest.raises(ValueError, match=r"no value for the model input\(s\) 'lengths'"):
        session.run(None, {"x": feeds["x"]})
    with pytest.raises(ValueError, match=r"the model has no output 'nope'; its outputs: 'probs', 'state'"):
        session.run(["nope"], feeds)
    with pytest.raises(TypeError, match=r"input 'x' has dtype float64; the model declares float32"):
        session.run(None, {**feeds, "x": feeds["x"].astype(np.float64)})
    with pytest.raises(TypeError, match="feeds must be a mapping"):
        session.run(None, [feeds["x"]])
    with pytest.raises(ValueError, match="not an ONNX model"):
        lbo.load_model(b"not a model")


def test_random_feeds_follow_the_declared_shapes():
    model, _ = keras_style_model(0)
    session = lbo.load_model(model, backend="numpy")
    feeds = lbo.random_feeds(session, {"time": 7}, default_dim=2)
    assert feeds["x"].shape == (2, 7, I) and feeds["x"].dtype == np.float32
    assert feeds["lengths"].shape == (2,) and feeds["lengths"].dtype == np.int32 and feeds["lengths"].max() <= 1
    assert session.run(None, feeds)[0].shape == (2, 7, 2)


def test_random_feeds_name_the_flag_for_an_undeclared_input_and_leave_given_ones_out():
    model, _ = keras_style_model(0)
    model.graph.input[1].type.tensor_type.ClearField("shape")   # 'lengths': a tensor of no declared shape
    session = lbo.load_model(model, backend="numpy")
    with pytest.raises(ValueError, match=r"input 'lengths' has no declared tensor type and shape: give its value: "
                                         r"--input lengths=FILE.npy on the command line"):
        lbo.random_feeds(session)
    feeds = lbo.random_feeds(session, {"time": 7}, default_dim=2, given={"lengths"})
    assert set(feeds) == {"x"} and feeds["x"].shape == (2, 7, I)
