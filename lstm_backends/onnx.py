"""Run the ``LSTM`` nodes of ONNX models without onnxruntime.

Needs the ``onnx`` package (``pip install "lstm-backends[onnx]"``), imported only when
this module is; ``import lstm_backends`` never imports it.

>>> import lstm_backends.onnx as lbo                        # doctest: +SKIP
>>> m = lbo.load("model.onnx", backend="numpy")            # doctest: +SKIP
>>> Y, Y_h, Y_c = m(X, sequence_lens=lens)                 # doctest: +SKIP

Outputs have exactly the operator's shapes and values — onnxruntime is the oracle,
including its choices where the ONNX specification is silent:

* rows of ``Y`` past a row's ``sequence_lens`` are 0;
* a row of length 0 has ``Y_h = Y_c = 0`` (the backends' own ``forward`` keeps the initial
  state there, like PyTorch; the callable maps one convention to the other);
* ``clip`` bounds every gate pre-activation after the bias and the peephole term are
  added, not the cell state; the output gate's peephole reads the new cell state;
  ``input_forget`` sets ``f = 1 - i`` after the activation of ``i``;
* ``activation_alpha``/``activation_beta`` are consumed in the order of the activation
  functions, each only by the functions that take that parameter.

Where onnxruntime refuses, this module computes: ``layout = 1``, and float64 models.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._activations import DEFAULT_ACTIVATIONS, Activation, describe_activations, onnx_activations
from ._params import LSTMParams
from ._registry import get_backend
from .layouts import from_onnx

try:
    import onnx
    from onnx import numpy_helper
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        'lstm_backends.onnx needs the onnx package: pip install "lstm-backends[onnx]"'
    ) from exc

__all__ = ["OnnxLSTM", "check_against_onnxruntime", "load", "load_all"]

#: Every attribute of the ONNX ``LSTM`` operator (opsets 1 to 22); anything else is refused.
KNOWN_ATTRIBUTES = frozenset({"activation_alpha", "activation_beta", "activations", "clip", "direction",
                              "hidden_size", "input_forget", "layout"})
_DIRECTIONS = {"forward": 1, "reverse": 1, "bidirectional": 2}
_INPUTS = ("X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P")


@dataclass
class OnnxLSTM:
    """One ONNX ``LSTM`` node, ready to run on a backend: ``Y, Y_h, Y_c = m(X)``.

    Made by :func:`load` / :func:`load_all`; the weights are converted once, at load.

    Attributes
    ----------
    name : str
        The node's name (``"LSTM_<k>"`` for the k-th unnamed LSTM node).
    direction : str
        ``"forward"``, ``"reverse"`` or ``"bidirectional"``.
    hidden_size, input_size : int
        ``H`` and ``I``.
    layout : int
        0: ``X`` is (T, B, I), ``Y`` (T, D, B, H), states (D, B, H); 1: ``X`` is (B, T, I),
        ``Y`` (B, T, D, H), states (B, D, H).
    params : list of LSTMParams
        One per direction (forward first), gates in our order ``i, f, g, o``; peepholes as
        ``w_peep`` (3, H), ``i, f, o``.
    clip : float or None
    input_forget : bool
    activations : list of (tuple of 3 Activation or None)
        ``(f, g, h)`` per direction; ``None`` for the defaults ``Sigmoid, Tanh, Tanh``.
    dtype : numpy.dtype
        That of the weights; ``X`` and the initial states must have it.
    backend : Backend
    node : onnx.NodeProto
        The node as loaded.
    weights : dict of str to ndarray
        The node's constant inputs (W, R and, when present, B and P) by tensor name.
    """

    name: str
    direction: str
    hidden_size: int
    input_size: int
    layout: int
    params: list[LSTMParams]
    clip: float | None
    input_forget: bool
    activations: list[tuple[Activation, Activation, Activation] | None]
    dtype: np.dtype
    backend: Any = field(repr=False)
    node: Any = field(default=None, repr=False)  # the onnx.NodeProto
    weights: dict = field(default_factory=dict, repr=False)  # input name -> constant array of the node

    def describe(self) -> dict[str, Any]:
        """The node's attributes as plain values (what ``lstm-backends onnx`` prints)."""
        return {"direction": self.direction, "hidden_size": self.hidden_size, "input_size": self.input_size,
                "layout": self.layout, "dtype": self.dtype.name,
                "peepholes": any(p.w_peep is not None for p in self.params), "clip": self.clip,
                "input_forget": self.input_forget,
                "activations": [describe_activations(a) for a in self.activations],
                "backend": self.backend.name, "onnx_only": self.onnx_only}

    @property
    def num_directions(self) -> int:
        return len(self.params)

    @property
    def onnx_only(self) -> list[str]:
        """What this node uses that :class:`lstm_backends.LSTM` (and PyTorch) cannot express."""
        used = []
        if any(p.w_peep is not None for p in self.params):
            used.append("peepholes (input P)")
        if self.clip is not None:
            used.append(f"clip={self.clip:g}")
        if self.input_forget:
            used.append("input_forget=1")
        if any(a is not None for a in self.activations):
            used.append("activations " + "; ".join(describe_activations(a) for a in self.activations))
        if self.direction == "reverse":
            used.append("direction='reverse' (a reverse-only layer)")
        return used

    def _activations_option(self) -> list[Any] | None:
        if all(a is None for a in self.activations):
            return None
        return [f for a in self.activations for f in (a or DEFAULT_ACTIVATIONS)]

    def __call__(
        self,
        X: Any,  # noqa: N803 - the operator's names
        sequence_lens: Any = None,
        initial_h: Any = None,
        initial_c: Any = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Run the node.

        Parameters
        ----------
        X : array, shape (T, B, I) (layout 0) or (B, T, I) (layout 1)
        sequence_lens : array_like of int, shape (B,), optional
            Valid steps per row, in ``[0, T]``; ``T`` everywhere when omitted.
        initial_h, initial_c : array, shape (D, B, H) (layout 0) or (B, D, H) (layout 1), optional
            Zeros when omitted.

        Returns
        -------
        Y : ndarray, shape (T, D, B, H) (layout 0) or (B, T, D, H) (layout 1)
        Y_h, Y_c : ndarray, shape (D, B, H) (layout 0) or (B, D, H) (layout 1)
        """
        X = _host(X, f"node {self.name!r}: X")  # noqa: N806
        if X.ndim != 3 or X.shape[2] != self.input_size:
            layout = "(T, B, I)" if self.layout == 0 else "(B, T, I)"
            raise ValueError(f"node {self.name!r}: X must have shape {layout} with I={self.input_size} "
                             f"(from W); got shape {X.shape}")
        x = X if self.layout == 0 else X.swapaxes(0, 1)  # time-major view
        steps, batch = x.shape[:2]
        d, h = self.num_directions, self.hidden_size
        lengths = None
        if sequence_lens is not None:
            lengths = _host(sequence_lens, f"node {self.name!r}: sequence_lens")
            if lengths.shape != (batch,) or not np.issubdtype(lengths.dtype, np.integer):
                raise ValueError(f"node {self.name!r}: sequence_lens must hold B={batch} integers; got "
                                 f"shape {lengths.shape}, dtype {lengths.dtype.name}")
            if lengths.size and (lengths.min() < 0 or lengths.max() > steps):
                raise ValueError(f"node {self.name!r}: sequence_lens must lie in [0, T] = [0, {steps}]; "
                                 f"got {lengths.tolist()}")
        states = []
        for arg, value in (("initial_h", initial_h), ("initial_c", initial_c)):
            if value is None:
                states.append(None)
                continue
            value = _host(value, f"node {self.name!r}: {arg}")
            expected = (d, batch, h) if self.layout == 0 else (batch, d, h)
            if value.shape != expected:
                layout = "(D, B, H)" if self.layout == 0 else "(B, D, H)"
                raise ValueError(f"node {self.name!r}: {arg} must have shape {layout} = {expected}; "
                                 f"got shape {value.shape}")
            states.append(value if self.layout == 0 else value.swapaxes(0, 1))
        params = self.params
        if self.direction == "reverse":
            # one reverse direction: forward_layers runs layers[l][0] forward, so call forward directly
            y, h_n, c_n = self.backend.forward(
                x, params[0], None if states[0] is None else states[0][0],
                None if states[1] is None else states[1][0], lengths=lengths, reverse=True, clip=self.clip,
                input_forget=self.input_forget, activations=self.activations[0])
            y, h_n, c_n = _to_numpy(y), _to_numpy(h_n)[None], _to_numpy(c_n)[None]
        else:
            y, h_n, c_n = (_to_numpy(a) for a in self.backend.forward_layers(
                x, [params], states[0], states[1], lengths=lengths, clip=self.clip,
                input_forget=self.input_forget, activations=self._activations_option()))
        if lengths is not None:
            empty = lengths == 0  # onnxruntime's convention: zeros, not the initial state
            h_n[:, empty] = 0
            c_n[:, empty] = 0
        y4 = y.reshape(steps, batch, d, h)
        if self.layout == 0:
            return (np.ascontiguousarray(y4.transpose(0, 2, 1, 3)), np.ascontiguousarray(h_n),
                    np.ascontiguousarray(c_n))
        return (np.ascontiguousarray(y4.transpose(1, 0, 2, 3)), np.ascontiguousarray(h_n.swapaxes(0, 1)),
                np.ascontiguousarray(c_n.swapaxes(0, 1)))

    def to_lstm(self, backend: Any = None) -> Any:
        """The node as a one-layer :class:`lstm_backends.LSTM` (PyTorch-style outputs).

        Parameters
        ----------
        backend : str or Backend, optional
            Defaults to this node's backend.

        Returns
        -------
        LSTM
            ``batch_first`` follows ``layout``; note that ``LSTM`` returns ``y`` as (T, B, D * H)
            and keeps the initial state for rows of length 0, like PyTorch.

        Raises
        ------
        ValueError
            The node uses something only ONNX has (peepholes, clip, input_forget,
            non-default activations, a reverse-only direction): the message lists it.
        """
        from .layer import LSTM

        used = self.onnx_only
        if used:
            raise ValueError(f"node {self.name!r} cannot become an lstm_backends.LSTM: it uses "
                             f"{', '.join(used)}, which only ONNX has; call the node itself instead")
        lstm = LSTM(self.input_size, self.hidden_size, bidirectional=self.num_directions == 2,
                    batch_first=self.layout == 1, dtype=self.dtype,
                    backend=self.backend if backend is None else backend)
        state = {}
        for k, p in enumerate(self.params):
            suffix = "_reverse" if k else ""
            state.update({f"weight_ih_l0{suffix}": p.w_ih, f"weight_hh_l0{suffix}": p.w_hh,
                          f"bias_ih_l0{suffix}": p.b_ih, f"bias_hh_l0{suffix}": p.b_hh})
        lstm.load_state_dict(state)
        return lstm


def _host(a: Any, what: str) -> np.ndarray:
    if hasattr(a, "__cuda_array_interface__") and not isinstance(a, np.ndarray):
        raise TypeError(f"{what} is a device array; ONNX nodes take and return NumPy arrays (the cuda backend "
                        "copies them to the device itself)")
    return np.asarray(a)


def _to_numpy(a: Any) -> np.ndarray:
    return a if isinstance(a, np.ndarray) else np.asarray(a.copy_to_host())


# ---------------------------------------------------------------------------- loading
def _model(model: Any) -> onnx.ModelProto:
    if isinstance(model, onnx.ModelProto):
        return model
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        if not os.path.exists(path):
            raise FileNotFoundError(f"no ONNX model at {path!r}")
        try:
            proto = onnx.load(path, load_external_data=True)
        except Exception as exc:
            raise ValueError(f"{path!r} is not an ONNX model: {type(exc).__name__}: {exc}") from None
        if not proto.HasField("graph") or proto.ir_version == 0:
            raise ValueError(f"{path!r} is not an ONNX model (it parses, but has no graph or IR version)")
        return proto
    if isinstance(model, (bytes, bytearray)):
        try:
            proto = onnx.load_from_string(bytes(model))
        except Exception as exc:
            raise ValueError(f"the bytes given are not an ONNX model: {type(exc).__name__}: {exc}") from None
        if not proto.HasField("graph") or proto.ir_version == 0:
            raise ValueError("the bytes given are not an ONNX model (no graph or IR version)")
        return proto
    raise TypeError(f"model must be a path, bytes or an onnx.ModelProto; got {type(model).__name__}")


def _is_lstm(node: onnx.NodeProto) -> bool:
    return node.op_type == "LSTM" and node.domain in ("", "ai.onnx")


def _lstm_nodes(graph: onnx.GraphProto) -> list[tuple[str, onnx.NodeProto]]:
    nodes = [n for n in graph.node if _is_lstm(n)]
    return [(n.name or f"LSTM_{k}", n) for k, n in enumerate(nodes)]


def _constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    """Every value of the graph known at load time: initializers and Constant node outputs."""
    values = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type != "Constant" or node.domain not in ("", "ai.onnx"):
            continue
        for attr in node.attribute:
            if attr.name == "value":
                values[node.output[0]] = numpy_helper.to_array(attr.t)
            elif attr.name == "value_float":
                values[node.output[0]] = np.array(attr.f, np.float32)
            elif attr.name == "value_floats":
                values[node.output[0]] = np.array(attr.floats, np.float32)
    return values


def _attributes(name: str, node: onnx.NodeProto) -> dict[str, Any]:
    attrs = {}
    for attr in node.attribute:
        if attr.name not in KNOWN_ATTRIBUTES:
            raise ValueError(f"node {name!r}: unknown attribute {attr.name!r} of the LSTM operator "
                             f"(known: {', '.join(sorted(KNOWN_ATTRIBUTES))})")
        value = onnx.helper.get_attribute_value(attr)
        if isinstance(value, bytes):
            value = value.decode()
        elif isinstance(value, list) and value and isinstance(value[0], bytes):
            value = [v.decode() for v in value]
        attrs[attr.name] = value
    return attrs


def _build(name: str, node: onnx.NodeProto, graph: onnx.GraphProto, constants: Mapping[str, np.ndarray],
           backend: Any) -> OnnxLSTM:
    attrs = _attributes(name, node)
    inputs = list(node.input) + [""] * (len(_INPUTS) - len(node.input))
    if len(node.input) > len(_INPUTS):
        raise ValueError(f"node {name!r}: the LSTM operator has at most {len(_INPUTS)} inputs; got {len(node.input)}")
    if len(node.output) > 3:
        raise ValueError(f"node {name!r}: the LSTM operator has at most 3 outputs; got {len(node.output)}")
    graph_inputs = {i.name for i in graph.input}

    def weight(k: int) -> np.ndarray | None:
        role, ref = _INPUTS[k], inputs[k]
        if not ref:
            return None
        if ref in constants:
            return np.asarray(constants[ref])
        where = "a graph input" if ref in graph_inputs else "computed by another node"
        raise ValueError(f"node {name!r}: input {role} ({ref!r}) is {where}, not a constant; weights must come "
                         "from initializers or Constant nodes (fold the graph first, e.g. onnxsim)")

    W, R, B, P = weight(1), weight(2), weight(3), weight(7)  # noqa: N806
    if W is None or R is None:
        raise ValueError(f"node {name!r}: inputs W and R are required")
    direction = attrs.get("direction", "forward")
    if direction not in _DIRECTIONS:
        raise ValueError(f"node {name!r}: attribute direction must be forward, reverse or bidirectional; "
                         f"got {direction!r}")
    d = _DIRECTIONS[direction]
    dtype = W.dtype
    if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"node {name!r}: input W has dtype {dtype.name}; float32 and float64 are supported")
    if W.ndim != 3 or W.shape[0] != d or W.shape[1] % 4 or W.shape[1] == 0:
        raise ValueError(f"node {name!r}: input W must have shape (num_directions, 4H, I) with num_directions={d} "
                         f"(direction={direction!r}); got shape {W.shape}")
    hidden = W.shape[1] // 4
    if "hidden_size" in attrs:
        if not isinstance(attrs["hidden_size"], int) or attrs["hidden_size"] < 1:
            raise ValueError(f"node {name!r}: attribute hidden_size must be a positive integer; "
                             f"got {attrs['hidden_size']!r}")
        if attrs["hidden_size"] != hidden:
            raise ValueError(f"node {name!r}: attribute hidden_size={attrs['hidden_size']} is inconsistent with "
                             f"input W of shape {W.shape} (4H = {W.shape[1]}, so H = {hidden})")
    for role, arr, shape in (("R", R, (d, 4 * hidden, hidden)), ("B", B, (d, 8 * hidden)),
                             ("P", P, (d, 3 * hidden))):
        if arr is None:
            continue
        if arr.shape != shape:
            raise ValueError(f"node {name!r}: input {role} must have shape {shape} (hidden_size={hidden}, "
                             f"num_directions={d}); got shape {arr.shape}")
        if arr.dtype != dtype:
            raise ValueError(f"node {name!r}: input {role} has dtype {arr.dtype.name} but W has {dtype.name}")
    layout = attrs.get("layout", 0)
    if layout not in (0, 1):
        raise ValueError(f"node {name!r}: attribute layout must be 0 or 1; got {layout!r}")
    input_forget = attrs.get("input_forget", 0)
    if input_forget not in (0, 1):
        raise ValueError(f"node {name!r}: attribute input_forget must be 0 or 1; got {input_forget!r}")
    clip = attrs.get("clip")
    if clip is not None and not clip > 0:
        raise ValueError(f"node {name!r}: attribute clip must be positive; got {clip!r}")
    try:
        activations = onnx_activations(attrs.get("activations", []), attrs.get("activation_alpha", []),
                                       attrs.get("activation_beta", []), d)
    except ValueError as exc:
        raise ValueError(f"node {name!r}: attribute activations: {exc}") from None
    params = [from_onnx(W, R, B, direction=k, P=P) for k in range(d)]
    params = [LSTMParams(*(None if a is None else np.ascontiguousarray(a) for a in p)) for p in params]
    needs = set()
    if P is not None:
        needs.add("peephole")
    if clip is not None or input_forget:
        needs.add("clip")
    if any(a is not None for a in activations):
        needs.add("activations")
    weights = {ref: constants[ref] for ref in (inputs[1], inputs[2], inputs[3], inputs[7]) if ref}
    return OnnxLSTM(name, direction, hidden, W.shape[2], layout, params, None if clip is None else float(clip),
                    bool(input_forget), activations, dtype, get_backend(backend, requires=needs), node, weights)


def load_all(model: Any, backend: Any = "auto") -> dict[str, OnnxLSTM]:
    """Every ``LSTM`` node of a model, by node name.

    Parameters
    ----------
    model : str, os.PathLike, bytes or onnx.ModelProto
    backend : str or Backend
        ``"auto"`` picks, per node, the fastest available backend that has every capability
        the node needs (e.g. ``peephole`` for a node with ``P``).

    Returns
    -------
    dict of str to OnnxLSTM
        Unnamed nodes are called ``"LSTM_<k>"`` (k counts the LSTM nodes of the graph).

    Raises
    ------
    ValueError
        Not an ONNX model, or a node that cannot run (the node and the attribute or input
        are named).
    """
    proto = _model(model)
    constants = _constants(proto.graph)
    return {name: _build(name, node, proto.graph, constants, backend) for name, node in _lstm_nodes(proto.graph)}


def load(model: Any, node: str | int | None = None, backend: Any = "auto") -> OnnxLSTM:
    """One ``LSTM`` node of a model, as a callable ``Y, Y_h, Y_c = m(X, sequence_lens, initial_h, initial_c)``.

    Parameters
    ----------
    model : str, os.PathLike, bytes or onnx.ModelProto
    node : str or int, optional
        The node's name (or its index among the LSTM nodes); may be omitted when the model
        has exactly one LSTM node.
    backend : str or Backend
        As for :func:`load_all`.

    Returns
    -------
    OnnxLSTM

    Raises
    ------
    ValueError
        Not an ONNX model; no LSTM node, several and none chosen, an unknown name, a node
        that is not an LSTM; or a node that cannot run (named, with the attribute or input).
    """
    proto = _model(model)
    graph = proto.graph
    nodes = _lstm_nodes(graph)
    if isinstance(node, int) and not isinstance(node, bool):
        if not 0 <= node < len(nodes):
            raise ValueError(f"the model has {len(nodes)} LSTM node(s); node index {node} is out of range")
        name, chosen = nodes[node]
    elif node is None:
        if len(nodes) != 1:
            listed = ", ".join(repr(n) for n, _ in nodes) or "none"
            raise ValueError(f"the model has {len(nodes)} LSTM nodes ({listed}); pass node= to choose one"
                             if nodes else "the model has no LSTM node")
        name, chosen = nodes[0]
    else:
        match = [(n, nd) for n, nd in nodes if n == node]
        if not match:
            other = next((n for n in graph.node if n.name == node), None)
            if other is not None:
                raise ValueError(f"node {node!r} is a {other.op_type} node, not an LSTM")
            listed = ", ".join(repr(n) for n, _ in nodes) or "none"
            raise ValueError(f"no LSTM node named {node!r}; the LSTM nodes are: {listed}")
        name, chosen = match[0]
    return _build(name, chosen, graph, _constants(graph), backend)


def check_against_onnxruntime(node: OnnxLSTM, *, steps: int = 5, batch: int = 3, seed: int = 0) -> dict[str, Any]:
    """Run one node on random inputs (random lengths, 0 and ``T`` among them, and random
    initial states) with this library and with onnxruntime, and compare.

    The node runs in onnxruntime as a one-node model with its own weight tensors, so the
    loader's conversion is checked too.  onnxruntime refuses ``layout = 1`` (the node then
    runs as layout 0 on transposed data), needs ``hidden_size`` (added when the node
    leaves it to be inferred) and has no float64 LSTM (then nothing is compared).

    Parameters
    ----------
    node : OnnxLSTM
    steps, batch : int
        ``T`` and ``B`` of the random input.
    seed : int

    Returns
    -------
    dict
        ``compared`` (bool), ``reason`` (why not, when not), ``worst`` (largest error as a
        fraction of the float32 tolerance; <= 1 agrees), ``agrees`` (bool).

    Raises
    ------
    ImportError
        onnxruntime is not installed.
    """
    import onnxruntime as ort

    from .testing import worst_error

    if node.dtype != np.float32:
        return {"compared": False, "reason": f"onnxruntime has no {node.dtype.name} LSTM", "worst": float("nan"),
                "agrees": True}
    rng = np.random.default_rng(seed)
    d, h = node.num_directions, node.hidden_size
    x = rng.standard_normal((steps, batch, node.input_size)).astype(np.float32)
    lens = rng.integers(0, steps + 1, batch).astype(np.int32)
    lens[: min(2, batch)] = [steps, 0][: min(2, batch)]
    h0 = rng.uniform(-1, 1, (d, batch, h)).astype(np.float32)
    c0 = rng.standard_normal((d, batch, h)).astype(np.float32)
    src = list(node.node.input) + [""] * (len(_INPUTS) - len(node.node.input))
    names = ["X", src[1], src[2], src[3], "sequence_lens", "initial_h", "initial_c", src[7]]
    attrs = [a for a in node.node.attribute if a.name not in ("layout", "hidden_size")]  # layout 0 only in ORT
    lstm = onnx.helper.make_node("LSTM", names, ["Y", "Y_h", "Y_c"], name=node.name, hidden_size=h)  # ORT needs it
    lstm.attribute.extend(attrs)
    elem = onnx.TensorProto.FLOAT
    graph = onnx.helper.make_graph(
        [lstm], "check",
        [onnx.helper.make_tensor_value_info("X", elem, None),
         onnx.helper.make_tensor_value_info("sequence_lens", onnx.TensorProto.INT32, None),
         onnx.helper.make_tensor_value_info("initial_h", elem, None),
         onnx.helper.make_tensor_value_info("initial_c", elem, None)],
        [onnx.helper.make_tensor_value_info(n, elem, None) for n in ("Y", "Y_h", "Y_c")],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in node.weights.items()])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 14)])
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    want = sess.run(None, {"X": x, "sequence_lens": lens, "initial_h": h0, "initial_c": c0})
    if node.layout == 0:
        got = node(x, lens, h0, c0)
    else:
        y, y_h, y_c = node(x.swapaxes(0, 1), lens, h0.swapaxes(0, 1), c0.swapaxes(0, 1))
        got = (y.transpose(1, 2, 0, 3), y_h.swapaxes(0, 1), y_c.swapaxes(0, 1))
    worst = max(worst_error(g, w.astype(np.float64), np.float32) for g, w in zip(got, want))
    return {"compared": True, "reason": "", "worst": worst, "agrees": bool(worst <= 1.0)}
