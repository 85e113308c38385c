"""Run the ``LSTM`` nodes of ONNX models without onnxruntime, or whole models in one call.

Needs the ``onnx`` package (``pip install "lstm-backends[onnx]"``), imported only when
this module is; ``import lstm_backends`` never imports it.

>>> import lstm_backends.onnx as lbo                        # doctest: +SKIP
>>> m = lbo.load("model.onnx", backend="numpy")            # doctest: +SKIP
>>> Y, Y_h, Y_c = m(X, sequence_lens=lens)                 # doctest: +SKIP
>>> sess = lbo.load_model("model.onnx")                    # doctest: +SKIP
>>> outputs = sess.run(None, {"x": x})                     # doctest: +SKIP

:func:`load` / :func:`load_all` give one callable per ``LSTM`` node; :func:`load_model`
runs the whole model like ``onnxruntime.InferenceSession``: its ``LSTM`` nodes on our
backends, every other node through onnx's own :class:`onnx.reference.ReferenceEvaluator`.

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

Weights (``W``, ``R``, ``B``, ``P``) that are initializers or ``Constant`` outputs are
converted once, at load.  Weights that are not constants of the model (graph inputs, or
computed by other nodes) are given at call time — ``m(X, W=W, R=R)`` or, by tensor name,
``m.run(feeds)`` — and converted at every call.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from ._activations import DEFAULT_ACTIVATIONS, Activation, describe_activations, onnx_activations
from ._errors import UnsupportedFeatureError
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

__all__ = ["ModelInput", "OnnxLSTM", "OnnxModel", "check_against_onnxruntime", "load", "load_all", "load_model",
           "random_feeds"]

#: Every attribute of the ONNX ``LSTM`` operator (opsets 1 to 22); anything else is refused.
KNOWN_ATTRIBUTES = frozenset({"activation_alpha", "activation_beta", "activations", "clip", "direction",
                              "hidden_size", "input_forget", "layout"})
_DIRECTIONS = {"forward": 1, "reverse": 1, "bidirectional": 2}
_INPUTS = ("X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P")
_WEIGHTS = {"W": 1, "R": 2, "B": 3, "P": 7}  # the operator's weight inputs by role, with their input index


@dataclass
class OnnxLSTM:
    """One ONNX ``LSTM`` node, ready to run on a backend: ``Y, Y_h, Y_c = m(X)``.

    Made by :func:`load` / :func:`load_all` (and :func:`load_model`, one per node).
    Constant weights (initializers, ``Constant`` nodes) are converted once, at load; the
    others are given at every call (see :attr:`call_time`).

    Attributes
    ----------
    name : str
        The node's name (``"LSTM_<k>"`` for the k-th unnamed LSTM node).
    direction : str
        ``"forward"``, ``"reverse"`` or ``"bidirectional"``.
    hidden_size, input_size : int or None
        ``H`` and ``I``; ``None`` when they come from weights given at call time (``H``
        is known anyway when the node has the ``hidden_size`` attribute).
    layout : int
        0: ``X`` is (T, B, I), ``Y`` (T, D, B, H), states (D, B, H); 1: ``X`` is (B, T, I),
        ``Y`` (B, T, D, H), states (B, D, H).
    params : list of LSTMParams
        One per direction (forward first), gates in our order ``i, f, g, o``; peepholes as
        ``w_peep`` (3, H), ``i, f, o``.  Empty when some weight is given at call time.
    clip : float or None
    input_forget : bool
    activations : list of (tuple of 3 Activation or None)
        ``(f, g, h)`` per direction; ``None`` for the defaults ``Sigmoid, Tanh, Tanh``.
    dtype : numpy.dtype or None
        That of the weights; ``X`` and the initial states must have it.  ``None`` when
        some weight is given at call time.
    backend : Backend
    node : onnx.NodeProto
        The node as loaded.
    weights : dict of str to ndarray
        The node's constant weight inputs (W, R and, when present, B and P) by tensor name.
    weight_names : dict of str to str
        The tensor name of each weight input the node has, by role (``"W"``, ``"R"``,
        ``"B"``, ``"P"``).
    call_time : tuple of str
        The roles of the weights that are not constants of the model (graph inputs, or
        computed by other nodes): they must be given at every call.
    """

    name: str
    direction: str
    hidden_size: int | None
    input_size: int | None
    layout: int
    params: list[LSTMParams]
    clip: float | None
    input_forget: bool
    activations: list[tuple[Activation, Activation, Activation] | None]
    dtype: np.dtype | None
    backend: Any = field(repr=False)
    node: Any = field(default=None, repr=False)  # the onnx.NodeProto
    weights: dict = field(default_factory=dict, repr=False)  # input name -> constant array of the node
    weight_names: dict = field(default_factory=dict, repr=False)  # role -> input name
    call_time: tuple[str, ...] = ()
    _hidden_attribute: int | None = field(default=None, repr=False)

    def describe(self) -> dict[str, Any]:
        """The node's attributes as plain values (what ``lstm-backends onnx`` prints)."""
        return {"direction": self.direction, "hidden_size": self.hidden_size, "input_size": self.input_size,
                "layout": self.layout, "dtype": self.dtype.name if self.dtype is not None else "?",
                "peepholes": self.peepholes, "clip": self.clip, "input_forget": self.input_forget,
                "activations": [describe_activations(a) for a in self.activations],
                "backend": self.backend.name, "onnx_only": self.onnx_only, "call_time": list(self.call_time)}

    @property
    def num_directions(self) -> int:
        return _DIRECTIONS[self.direction]

    @property
    def peepholes(self) -> bool:
        """Whether the node has the peephole input ``P``."""
        return "P" in self.weight_names

    @property
    def requires(self) -> frozenset[str]:
        """The backend capabilities the node needs (``forward``, and ``peephole``, ``clip``,
        ``activations`` when it uses them); ``backend="auto"`` picks by them."""
        return _needs(self.peepholes, self.clip is not None or self.input_forget,
                      any(a is not None for a in self.activations))

    @property
    def onnx_only(self) -> list[str]:
        """What this node uses that :class:`lstm_backends.LSTM` (and PyTorch) cannot express."""
        used = []
        if self.peepholes:
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

    def _params_for(self, given: Mapping[str, Any]) -> tuple[list[LSTMParams], int, int]:
        """The params of one call: those converted at load, or the constants merged with
        the weights given now (``given``: role -> array), converted now.  Returns
        ``(params, hidden_size, input_size)``."""
        extra = [role for role in given if role not in self.weight_names]
        if extra:
            has = ", ".join(self.weight_names)
            raise ValueError(f"LSTM node {self.name!r} has no input {', '.join(extra)} (its weight inputs: {has}); "
                             "a weight the node does not have cannot be given")
        missing = [role for role in self.call_time if role not in given]
        if missing:
            names = ", ".join(f"{role} ({self.weight_names[role]!r})" for role in missing)
            raise ValueError(f"LSTM node {self.name!r}: input {names} {'is' if len(missing) == 1 else 'are'} not "
                             f"a constant of the model (a graph input, or computed by another node): give "
                             f"{'it' if len(missing) == 1 else 'them'} at call time, m(X, {missing[0]}=...) or "
                             f"m.run({{{self.weight_names[missing[0]]!r}: ...}})")
        if not given:
            assert self.hidden_size is not None and self.input_size is not None
            return self.params, self.hidden_size, self.input_size
        arrays = {role: (_host(given[role], f"LSTM node {self.name!r}: {role}") if role in given
                         else self.weights[ref]) for role, ref in self.weight_names.items()}
        params, hidden, input_size, _ = _convert(self.name, self.direction, self._hidden_attribute, arrays)
        return params, hidden, input_size

    def __call__(
        self,
        X: Any,  # noqa: N803 - the operator's names
        sequence_lens: Any = None,
        initial_h: Any = None,
        initial_c: Any = None,
        *,
        W: Any = None,  # noqa: N803
        R: Any = None,  # noqa: N803
        B: Any = None,  # noqa: N803
        P: Any = None,  # noqa: N803
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Run the node.

        Parameters
        ----------
        X : array, shape (T, B, I) (layout 0) or (B, T, I) (layout 1)
        sequence_lens : array_like of int, shape (B,), optional
            Valid steps per row, in ``[0, T]``; ``T`` everywhere when omitted.
        initial_h, initial_c : array, shape (D, B, H) (layout 0) or (B, D, H) (layout 1), optional
            Zeros when omitted.
        W : array, shape (D, 4H, I), optional
        R : array, shape (D, 4H, H), optional
        B : array, shape (D, 8H), optional
        P : array, shape (D, 3H), optional
            The operator's weights, in ONNX's layout.  Required for the roles in
            :attr:`call_time` (weights that are not constants of the model); a weight given
            for a constant one replaces it for this call (as a feed replaces an
            initializer that is also a graph input).  Weights given here are converted at
            every call.

        Returns
        -------
        Y : ndarray, shape (T, D, B, H) (layout 0) or (B, T, D, H) (layout 1)
        Y_h, Y_c : ndarray, shape (D, B, H) (layout 0) or (B, D, H) (layout 1)

        Raises
        ------
        ValueError
            A weight of :attr:`call_time` is missing, a weight the node has no input for is
            given, or an argument has the wrong shape (the node and argument are named).
        """
        given = {role: value for role, value in (("W", W), ("R", R), ("B", B), ("P", P)) if value is not None}
        params, h, input_size = self._params_for(given)
        X = _host(X, f"LSTM node {self.name!r}: X")  # noqa: N806
        if X.ndim != 3 or X.shape[2] != input_size:
            layout = "(T, B, I)" if self.layout == 0 else "(B, T, I)"
            raise ValueError(f"LSTM node {self.name!r}: X must have shape {layout} with I={input_size} "
                             f"(from W); got shape {X.shape}")
        x = X if self.layout == 0 else X.swapaxes(0, 1)  # time-major view
        steps, batch = x.shape[:2]
        d = self.num_directions
        lengths = None
        if sequence_lens is not None:
            lengths = _host(sequence_lens, f"LSTM node {self.name!r}: sequence_lens")
            if lengths.shape != (batch,) or not np.issubdtype(lengths.dtype, np.integer):
                raise ValueError(f"LSTM node {self.name!r}: sequence_lens must hold B={batch} integers; got "
                                 f"shape {lengths.shape}, dtype {lengths.dtype.name}")
            if lengths.size and (lengths.min() < 0 or lengths.max() > steps):
                raise ValueError(f"LSTM node {self.name!r}: sequence_lens must lie in [0, T] = [0, {steps}]; "
                                 f"got {lengths.tolist()}")
        states = []
        for arg, value in (("initial_h", initial_h), ("initial_c", initial_c)):
            if value is None:
                states.append(None)
                continue
            value = _host(value, f"LSTM node {self.name!r}: {arg}")
            expected = (d, batch, h) if self.layout == 0 else (batch, d, h)
            if value.shape != expected:
                layout = "(D, B, H)" if self.layout == 0 else "(B, D, H)"
                raise ValueError(f"LSTM node {self.name!r}: {arg} must have shape {layout} = {expected}; "
                                 f"got shape {value.shape}")
            states.append(value if self.layout == 0 else value.swapaxes(0, 1))
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

    def run(self, feeds: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Run the node on inputs given by tensor name, as in the model.

        Parameters
        ----------
        feeds : mapping of str to array
            Values of the node's inputs by the names they have in the model (``node.input``):
            ``X`` and every other named input that is not a constant of the model
            (``sequence_lens``, ``initial_h``, ``initial_c`` and the weights of
            :attr:`call_time`); a weight fed for a constant one replaces it for this call.

        Returns
        -------
        dict of str to ndarray
            The node's outputs by the names they have in the model (outputs the node leaves
            unnamed are left out); shapes as for :meth:`__call__`.

        Raises
        ------
        ValueError
            A feed that is not an input of the node, or a named input without a value.
        """
        names = list(self.node.input) + [""] * (len(_INPUTS) - len(self.node.input))
        unknown = sorted(set(feeds) - {n for n in names if n})
        if unknown:
            listed = ", ".join(f"{role}={ref!r}" for role, ref in zip(_INPUTS, names) if ref)
            raise ValueError(f"LSTM node {self.name!r} has no input named {', '.join(map(repr, unknown))}; "
                             f"its inputs: {listed}")
        args = {}
        for role, ref in zip(_INPUTS, names):
            if not ref:
                continue
            if ref in feeds:
                args[role] = feeds[ref]
            elif role not in _WEIGHTS or role in self.call_time:
                raise ValueError(f"LSTM node {self.name!r}: no value for input {role} ({ref!r}) in feeds")
        outputs = self(**args)
        return {name: value for name, value in zip(self.node.output, outputs) if name}

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
            non-default activations, a reverse-only direction): the message lists it; or its
            weights are given at call time (not constants of the model).
        """
        from .layer import LSTM

        used = self.onnx_only
        if used:
            raise ValueError(f"node {self.name!r} cannot become an lstm_backends.LSTM: it uses "
                             f"{', '.join(used)}, which only ONNX has; call the node itself instead")
        if self.call_time:
            raise ValueError(f"node {self.name!r} cannot become an lstm_backends.LSTM: its input(s) "
                             f"{', '.join(self.call_time)} are not constants of the model (given at call time)")
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
            raise ValueError(f"LSTM node {name!r}: unknown attribute {attr.name!r} of the LSTM operator "
                             f"(known: {', '.join(sorted(KNOWN_ATTRIBUTES))})")
        value = onnx.helper.get_attribute_value(attr)
        if isinstance(value, bytes):
            value = value.decode()
        elif isinstance(value, list) and value and isinstance(value[0], bytes):
            value = [v.decode() for v in value]
        attrs[attr.name] = value
    return attrs


def _convert(name: str, direction: str, hidden_attribute: int | None,
             arrays: Mapping[str, np.ndarray | None]) -> tuple[list[LSTMParams], int, int, np.dtype]:
    """Check one node's weights (ONNX layout) and convert them to ours.

    Parameters
    ----------
    name, direction : str
        The node's name (for messages) and its ``direction`` attribute.
    hidden_attribute : int or None
        Its ``hidden_size`` attribute, when it has one.
    arrays : mapping of str to ndarray
        ``"W"`` (D, 4H, I), ``"R"`` (D, 4H, H) and, when the node has them, ``"B"`` (D, 8H)
        and ``"P"`` (D, 3H).

    Returns
    -------
    params : list of LSTMParams
        One per direction, forward first, contiguous.
    hidden_size, input_size : int
    dtype : numpy.dtype
    """
    W, R, B, P = (None if arrays.get(r) is None else np.asarray(arrays[r]) for r in _WEIGHTS)  # noqa: N806
    d = _DIRECTIONS[direction]
    dtype = W.dtype
    if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"LSTM node {name!r}: input W has dtype {dtype.name}; float32 and float64 are supported")
    if W.ndim != 3 or W.shape[0] != d or W.shape[1] % 4 or W.shape[1] == 0:
        raise ValueError(f"LSTM node {name!r}: input W must have shape (num_directions, 4H, I) with "
                         f"num_directions={d} (direction={direction!r}); got shape {W.shape}")
    hidden = W.shape[1] // 4
    if hidden_attribute is not None and hidden_attribute != hidden:
        raise ValueError(f"LSTM node {name!r}: attribute hidden_size={hidden_attribute} is inconsistent with "
                         f"input W of shape {W.shape} (4H = {W.shape[1]}, so H = {hidden})")
    for role, arr, shape in (("R", R, (d, 4 * hidden, hidden)), ("B", B, (d, 8 * hidden)),
                             ("P", P, (d, 3 * hidden))):
        if arr is None:
            continue
        if arr.shape != shape:
            raise ValueError(f"LSTM node {name!r}: input {role} must have shape {shape} (hidden_size={hidden}, "
                             f"num_directions={d}); got shape {arr.shape}")
        if arr.dtype != dtype:
            raise ValueError(f"LSTM node {name!r}: input {role} has dtype {arr.dtype.name} but W has {dtype.name}")
    params = [from_onnx(W, R, B, direction=k, P=P) for k in range(d)]
    params = [LSTMParams(*(None if a is None else np.ascontiguousarray(a) for a in p)) for p in params]
    return params, hidden, W.shape[2], dtype


def _needs(peepholes: bool, clip: bool, activations: bool) -> frozenset[str]:
    return frozenset({"forward"} | ({"peephole"} if peepholes else set()) | ({"clip"} if clip else set())
                     | ({"activations"} if activations else set()))


def _build(name: str, node: onnx.NodeProto, constants: Mapping[str, np.ndarray], backend: Any) -> OnnxLSTM:
    """One node as an :class:`OnnxLSTM`: attributes checked, constant weights converted,
    the backend chosen by the capabilities the node needs."""
    attrs = _attributes(name, node)
    inputs = list(node.input) + [""] * (len(_INPUTS) - len(node.input))
    if len(node.input) > len(_INPUTS):
        raise ValueError(f"LSTM node {name!r}: the LSTM operator has at most {len(_INPUTS)} inputs; "
                         f"got {len(node.input)}")
    if len(node.output) > 3:
        raise ValueError(f"LSTM node {name!r}: the LSTM operator has at most 3 outputs; got {len(node.output)}")
    if not inputs[0]:
        raise ValueError(f"LSTM node {name!r}: input X is required")
    weight_names = {role: inputs[k] for role, k in _WEIGHTS.items() if inputs[k]}
    if "W" not in weight_names or "R" not in weight_names:
        raise ValueError(f"LSTM node {name!r}: inputs W and R are required")
    call_time = tuple(role for role, ref in weight_names.items() if ref not in constants)
    weights = {ref: np.asarray(constants[ref]) for role, ref in weight_names.items() if role not in call_time}
    direction = attrs.get("direction", "forward")
    if direction not in _DIRECTIONS:
        raise ValueError(f"LSTM node {name!r}: attribute direction must be forward, reverse or bidirectional; "
                         f"got {direction!r}")
    d = _DIRECTIONS[direction]
    hidden_attribute = attrs.get("hidden_size")
    if hidden_attribute is not None and (not isinstance(hidden_attribute, int) or hidden_attribute < 1):
        raise ValueError(f"LSTM node {name!r}: attribute hidden_size must be a positive integer; "
                         f"got {hidden_attribute!r}")
    layout = attrs.get("layout", 0)
    if layout not in (0, 1):
        raise ValueError(f"LSTM node {name!r}: attribute layout must be 0 or 1; got {layout!r}")
    input_forget = attrs.get("input_forget", 0)
    if input_forget not in (0, 1):
        raise ValueError(f"LSTM node {name!r}: attribute input_forget must be 0 or 1; got {input_forget!r}")
    clip = attrs.get("clip")
    if clip is not None and not clip > 0:
        raise ValueError(f"LSTM node {name!r}: attribute clip must be positive; got {clip!r}")
    try:
        activations = onnx_activations(attrs.get("activations", []), attrs.get("activation_alpha", []),
                                       attrs.get("activation_beta", []), d)
    except ValueError as exc:
        raise ValueError(f"LSTM node {name!r}: attribute activations: {exc}") from None
    if call_time:  # converted at every call, with the weights given then
        params, hidden, input_size, dtype = [], hidden_attribute, None, None
    else:
        params, hidden, input_size, dtype = _convert(
            name, direction, hidden_attribute, {role: weights[ref] for role, ref in weight_names.items()})
    needs = _needs("P" in weight_names, clip is not None or bool(input_forget),
                   any(a is not None for a in activations))
    try:
        chosen = get_backend(backend, requires=needs)
    except UnsupportedFeatureError as exc:
        raise UnsupportedFeatureError(f"LSTM node {name!r} (operator LSTM) cannot run here: {exc}") from None
    return OnnxLSTM(name, direction, hidden, input_size, layout, params, None if clip is None else float(clip),
                    bool(input_forget), activations, dtype, chosen, node, weights, weight_names, call_time,
                    hidden_attribute)


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
        Weights that are initializers or ``Constant`` outputs are converted now; the others
        (graph inputs, or computed by other nodes) are given at call time, see
        :meth:`OnnxLSTM.__call__` and :meth:`OnnxLSTM.run`.

    Raises
    ------
    ValueError
        Not an ONNX model, or a node that cannot run (the node and the attribute or input
        are named).
    UnsupportedFeatureError
        The backend named lacks a capability a node needs (the node is named).
    """
    proto = _model(model)
    constants = _constants(proto.graph)
    return {name: _build(name, node, constants, backend) for name, node in _lstm_nodes(proto.graph)}


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
        Constant weights (initializers, ``Constant`` outputs) converted once; weights that
        are graph inputs or computed by other nodes are given at call time:
        ``m(X, W=W, R=R, B=B)`` by the operator's input names, or ``m.run(feeds)`` by the
        tensor names of the model.

    Raises
    ------
    ValueError
        Not an ONNX model; no LSTM node, several and none chosen, an unknown name, a node
        that is not an LSTM; or a node that cannot run (named, with the attribute or input).
    UnsupportedFeatureError
        The backend named lacks a capability the node needs (the node is named).
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
    return _build(name, chosen, _constants(graph), backend)


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

    if node.call_time:
        return {"compared": False, "reason": f"input(s) {', '.join(node.call_time)} are not constants of the model "
                "(given at call time)", "worst": float("nan"), "agrees": True}
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


# ---------------------------------------------------------------------------- whole models
class ModelInput(NamedTuple):
    """One input a model needs at :meth:`OnnxModel.run`.

    Attributes
    ----------
    name : str
    dtype : numpy.dtype or None
        ``None`` for an input that is not a tensor (a sequence, an optional).
    shape : tuple of (int or str or None), or None
        Per axis: the size, the name of a dynamic size (``"batch"``), or ``None`` for an
        unnamed dynamic size; ``None`` when the model declares no shape.
    """

    name: str
    dtype: np.dtype | None
    shape: tuple[int | str | None, ...] | None


def _graphs(graph: onnx.GraphProto, outer: Mapping[str, np.ndarray], path: str
            ) -> Iterator[tuple[str, onnx.GraphProto, dict[str, np.ndarray]]]:
    """A graph and every subgraph (bodies of If, Loop, Scan, …), each with the constants it sees."""
    constants = {**outer, **_constants(graph)}
    yield path, graph, constants
    for node in graph.node:
        for attr in node.attribute:
            subgraphs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else \
                list(attr.graphs) if attr.type == onnx.AttributeProto.GRAPHS else []
            for k, sub in enumerate(subgraphs):
                where = f"{path}{node.name or node.op_type}.{attr.name}{f'[{k}]' if len(subgraphs) > 1 else ''}/"
                yield from _graphs(sub, constants, where)


def _node_key(node: onnx.NodeProto) -> bytes:
    return node.SerializeToString(deterministic=True)


def _lstm_op(nodes: Mapping[bytes, tuple[OnnxLSTM, frozenset[str]]], backend: Any) -> type:
    """The ``LSTM`` implementation handed to :class:`onnx.reference.ReferenceEvaluator` (``new_ops``).

    The evaluator makes one instance per LSTM node of the model and of its subgraphs; each
    instance finds its node among those :class:`OnnxModel` built (weights converted then), so
    nothing is converted per run except weights that are not constants of the model.
    """
    from onnx.reference.op_run import OpRun

    class LSTM(OpRun):  # the evaluator keys new_ops by (op_domain, class name)
        op_domain = ""

        def __init__(self, onnx_node: onnx.NodeProto, run_params: dict[str, Any], schema: Any = None) -> None:
            super().__init__(onnx_node, run_params, schema)
            found = nodes.get(_node_key(onnx_node))
            if found is None:  # not met while loading (cannot happen for a model's own graphs): all at call time
                found = (_build(onnx_node.name or "LSTM", onnx_node, {}, backend), frozenset())
            self.lstm, self.overridable = found

        def _run(self, *inputs: Any, **attributes: Any) -> tuple[np.ndarray, ...]:  # noqa: ARG002 - node has them
            lstm = self.lstm
            args = list(inputs) + [None] * (len(_INPUTS) - len(inputs))
            given = {}
            for role, k in _WEIGHTS.items():
                value = args[k]
                if value is None or role not in lstm.weight_names:
                    continue
                if role in lstm.call_time:
                    given[role] = value
                elif role in self.overridable and not np.array_equal(value, lstm.weights[lstm.weight_names[role]]):
                    given[role] = value  # an initializer that is also a graph input, replaced by a feed
            return lstm(args[0], args[4], args[5], args[6], **given)[: len(self.onnx_node.output)]

        def run(self, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
            # The evaluator stores every output under its name, an unnamed one ("", e.g. an unused Y) too,
            # and "" is also the name of every absent optional input: that value must stay None, else the
            # next node with an absent input would receive our Y (onnx 1.23's own LSTM has this bug).
            outputs = super().run(*args, **kwargs)
            return tuple(value if name else None for name, value in zip(self.onnx_node.output, outputs))

    return LSTM


class OnnxModel:
    """A whole ONNX model, run like ``onnxruntime.InferenceSession``: ``m.run(None, feeds)``.

    Made by :func:`load_model`.  The ``LSTM`` nodes (of the graph and of its subgraphs) run
    on our backends, each an :class:`OnnxLSTM` built once, at load; every other node runs in
    onnx's own reference implementation, :class:`onnx.reference.ReferenceEvaluator`.

    Attributes
    ----------
    model : onnx.ModelProto
    lstm_nodes : dict of str to OnnxLSTM
        Every LSTM node by name (``"LSTM_<k>"`` for unnamed ones; a node of a subgraph is
        prefixed with the path to it, e.g. ``"loop.body/LSTM_0"``).
    input_names, output_names : list of str
        The graph's inputs (without initializers) and outputs, in order.
    inputs : list of ModelInput
        Name, dtype and shape of each input of :attr:`input_names`.
    evaluator : onnx.reference.ReferenceEvaluator
        What runs the graph.
    """

    def __init__(self, model: Any, backend: Any = "auto") -> None:
        from onnx.reference import ReferenceEvaluator

        proto = _model(model)
        self.model = proto
        graph = proto.graph
        initializers = {i.name for i in graph.initializer} | {i.values.name for i in graph.sparse_initializer}
        feedable = {i.name for i in graph.input}
        self.lstm_nodes: dict[str, OnnxLSTM] = {}
        nodes: dict[bytes, tuple[OnnxLSTM, frozenset[str]]] = {}
        for path, sub, constants in _graphs(graph, {}, ""):
            for name, node in _lstm_nodes(sub):
                lstm = _build(path + name, node, constants, backend)
                # an initializer that is also a graph input is a default a feed may replace
                overridable = frozenset(role for role, ref in lstm.weight_names.items()
                                        if not path and ref in feedable and ref in initializers)
                self.lstm_nodes[lstm.name] = lstm
                nodes[_node_key(node)] = (lstm, overridable)
        self._optional = feedable & initializers
        self.input_names = [i.name for i in graph.input if i.name not in initializers]
        self.output_names = [o.name for o in graph.output]
        self.inputs = [_model_input(i) for i in graph.input if i.name not in initializers]
        self.evaluator = ReferenceEvaluator(proto, new_ops=[_lstm_op(nodes, backend)])

    def __repr__(self) -> str:
        return (f"OnnxModel(inputs={self.input_names}, outputs={self.output_names}, "
                f"lstm_nodes={ {n: m.backend.name for n, m in self.lstm_nodes.items()} })")

    def run(self, output_names: Sequence[str] | None, feeds: Mapping[str, Any]) -> list[np.ndarray]:
        """Run the model, as ``onnxruntime.InferenceSession.run`` does.

        Parameters
        ----------
        output_names : sequence of str or None
            The outputs to return, in that order; ``None`` for all of :attr:`output_names`.
        feeds : mapping of str to array
            A value for every input of :attr:`input_names`, with the dtype the model
            declares (and, optionally, values replacing initializers that are also graph
            inputs).

        Returns
        -------
        list of ndarray
            One per output asked for.

        Raises
        ------
        ValueError
            An unknown input or output name, or a missing input.
        TypeError
            An input whose dtype is not the one the model declares.
        """
        if not isinstance(feeds, Mapping):
            raise TypeError(f"feeds must be a mapping of input name to array; got {type(feeds).__name__}")
        unknown = sorted(set(feeds) - set(self.input_names) - self._optional)
        if unknown:
            raise ValueError(f"the model has no input {', '.join(map(repr, unknown))}; its inputs: "
                             f"{', '.join(map(repr, self.input_names)) or 'none'}")
        missing = [n for n in self.input_names if n not in feeds]
        if missing:
            raise ValueError(f"no value for the model input(s) {', '.join(map(repr, missing))}")
        names = self.output_names if output_names is None else list(output_names)
        bad = [n for n in names if n not in self.output_names]
        if bad:
            raise ValueError(f"the model has no output {', '.join(map(repr, bad))}; its outputs: "
                             f"{', '.join(map(repr, self.output_names))}")
        arrays = {}
        declared = {i.name: i.dtype for i in self.inputs}
        for name, value in feeds.items():
            value = _host(value, f"input {name!r}")
            want = declared.get(name)
            if want is not None and value.dtype != want:
                raise TypeError(f"input {name!r} has dtype {value.dtype.name}; the model declares {want.name} "
                                f"(convert it: x.astype(np.{want.name}))")
            arrays[name] = value
        return [np.asarray(v) for v in self.evaluator.run(names, arrays)]


def _model_input(value: onnx.ValueInfoProto) -> ModelInput:
    kind = value.type.WhichOneof("value")
    if kind != "tensor_type":
        return ModelInput(value.name, None, None)
    tensor = value.type.tensor_type
    dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type) if tensor.elem_type else None
    if not tensor.HasField("shape"):
        return ModelInput(value.name, dtype, None)
    shape = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tensor.shape.dim)
    return ModelInput(value.name, dtype, shape)


def load_model(model: Any, backend: Any = "auto") -> OnnxModel:
    """A whole ONNX model, run in one call like ``onnxruntime.InferenceSession``.

    Its ``LSTM`` nodes run on our backends; every other node runs in onnx's own reference
    implementation (:class:`onnx.reference.ReferenceEvaluator`, given our ``LSTM`` through
    its ``new_ops``): no graph runtime of our own.  Each LSTM node is built once, here —
    constant weights converted once; weights that are not constants of the model (graph
    inputs, or computed by other nodes) are converted at every run.

    Parameters
    ----------
    model : str, os.PathLike, bytes or onnx.ModelProto
    backend : str or Backend
        As for :func:`load_all`: ``"auto"`` picks, per LSTM node, the fastest available
        backend that has every capability the node needs.

    Returns
    -------
    OnnxModel
        ``outputs = m.run(None, {"x": x})``: a list of arrays, what
        ``onnxruntime.InferenceSession(...).run(None, {"x": x})`` returns.

    Raises
    ------
    ValueError
        Not an ONNX model, or an LSTM node that cannot run (the node and the attribute or
        input are named).
    UnsupportedFeatureError
        The backend named lacks a capability an LSTM node needs, e.g. ``activations`` for
        non-default activation functions (the node and the operator are named).

    Examples
    --------
    >>> sess = lbo.load_model("model.onnx", backend="numba")           # doctest: +SKIP
    >>> (logits,) = sess.run(None, {"tokens": tokens})                # doctest: +SKIP
    """
    return OnnxModel(model, backend)


# ---------------------------------------------------------------------------- command line
DEFAULT_DIM = 3  #: the size given to a dynamic axis of a random input (``lstm-backends onnx --run``)


def random_feeds(model: OnnxModel, dims: Mapping[str, int] | None = None, *, default_dim: int = DEFAULT_DIM,
                 seed: int = 0) -> dict[str, np.ndarray]:
    """Random values for every input of a model, shaped as the graph declares.

    Parameters
    ----------
    model : OnnxModel
    dims : mapping of str to int, optional
        Sizes of named dynamic axes (``{"batch": 4, "T": 7}``).
    default_dim : int
        Size of every other dynamic axis.
    seed : int

    Returns
    -------
    dict of str to ndarray
        Floating inputs standard normal; integer inputs in ``{0, 1}`` (valid token ids and
        sequence lengths for any model that takes them); booleans random.

    Raises
    ------
    ValueError
        An input that is not a tensor, or has no declared shape.
    """
    rng = np.random.default_rng(seed)
    dims = dict(dims or {})
    feeds = {}
    for inp in model.inputs:
        if inp.dtype is None or inp.shape is None:
            raise ValueError(f"input {inp.name!r} has no declared tensor type and shape: give it as a .npy file")
        shape = tuple(d if isinstance(d, int) and d > 0 else dims.get(d, default_dim) if isinstance(d, str)
                      else default_dim for d in inp.shape)
        if np.issubdtype(inp.dtype, np.floating):
            feeds[inp.name] = rng.standard_normal(shape).astype(inp.dtype)
        elif np.issubdtype(inp.dtype, np.integer):
            feeds[inp.name] = rng.integers(0, 2, shape).astype(inp.dtype)
        elif inp.dtype == np.bool_:
            feeds[inp.name] = rng.integers(0, 2, shape).astype(bool)
        else:
            raise ValueError(f"input {inp.name!r} has dtype {inp.dtype}: give it as a .npy file")
    return feeds


def _pairs(items: Sequence[str], what: str) -> dict[str, str]:
    pairs = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise ValueError(f"{what} must look like NAME=VALUE; got {item!r}")
        pairs[name] = value
    return pairs


def _cli_run(path: str, *, backend: Any = "auto", inputs: Sequence[str] = (), dims: Sequence[str] = (),
             seed: int = 0, check: bool = True) -> int:
    """``lstm-backends onnx MODEL --run``: run the whole model, compare with onnxruntime, print.

    ``inputs``: ``NAME=FILE.npy`` items; ``dims``: ``NAME=N`` items (a named dynamic axis)
    or ``N`` (every other dynamic axis).  Returns the exit status: 1 when an output
    disagrees with onnxruntime, else 0.
    """
    import importlib.util

    from .testing import TOLERANCES, worst_error

    session = load_model(path, backend=backend)
    default_dim = DEFAULT_DIM
    named = {}
    for item in dims:
        if item.isdigit():
            default_dim = int(item)
            continue
        for name, value in _pairs([item], "--dim").items():
            if not value.isdigit() or int(value) < 1:
                raise ValueError(f"--dim {item!r}: the size must be a positive integer")
            named[name] = int(value)
    files = _pairs(inputs, "--input")
    unknown = sorted(set(files) - set(session.input_names))
    if unknown:
        raise ValueError(f"--input: the model has no input {', '.join(map(repr, unknown))}; its inputs: "
                         f"{', '.join(map(repr, session.input_names))}")
    feeds = random_feeds(session, named, default_dim=default_dim, seed=seed) if \
        set(session.input_names) - set(files) else {}
    for name, file in files.items():
        feeds[name] = np.load(file, allow_pickle=False)
    lstm = ", ".join(f"{n} on {m.backend.name}" for n, m in session.lstm_nodes.items()) or "none"
    others = sum(1 for n in session.model.graph.node if not _is_lstm(n))
    print(f"\nwhole model: LSTM nodes: {lstm}; {others} other node(s) in onnx.reference")
    for name in session.input_names:
        source = files.get(name, "random")
        print(f"  input  {name}: {feeds[name].dtype.name} {tuple(feeds[name].shape)} ({source})")
    ours = session.run(None, feeds)
    theirs = None
    if check and importlib.util.find_spec("onnxruntime") is not None:
        import onnxruntime as ort

        try:
            sess = ort.InferenceSession(session.model.SerializeToString(), providers=["CPUExecutionProvider"])
            theirs = sess.run(None, {k: feeds[k] for k in session.input_names})
        except Exception as exc:  # noqa: BLE001 - onnxruntime refuses some models we run (layout 1, float64)
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            print(f"  onnxruntime cannot run this model ({type(exc).__name__}: {first[:200]}); nothing compared")
    elif check:
        print("  (onnxruntime is not installed: nothing compared)")
    failures = 0
    for k, (name, value) in enumerate(zip(session.output_names, ours)):
        line = f"  output {name}: {value.dtype.name} {tuple(value.shape)}"
        if theirs is not None:
            want = np.asarray(theirs[k])
            if want.shape != value.shape:
                agrees, diff = False, f"shape differs from onnxruntime's {tuple(want.shape)}"
            else:
                err = float(np.max(np.abs(value.astype(np.float64) - want))) if value.size else 0.0
                diff = f"max |ours - onnxruntime| = {err:.3g}"
                if np.issubdtype(value.dtype, np.floating):  # the library's tolerance, as everywhere
                    dtype = value.dtype if value.dtype in TOLERANCES else np.dtype(np.float32)
                    agrees = worst_error(value, want.astype(np.float64), dtype) <= 1.0
                else:
                    agrees = bool(np.array_equal(value, want))
            failures += not agrees
            line += f"  {diff}  {'agrees' if agrees else 'DISAGREES'}"
        print(line)
    return 1 if failures else 0
