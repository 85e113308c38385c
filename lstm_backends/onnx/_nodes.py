"""The ``LSTM`` nodes of ONNX models: conversion at load, one callable per node (:func:`load`,
:func:`load_all`), and the per-node check against onnxruntime."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._activations import DEFAULT_ACTIVATIONS, Activation, describe_activations, onnx_activations
from .._errors import UnsupportedFeatureError
from .._params import LSTMParams
from .._prepared import validate_precision
from .._registry import get_backend
from ..layouts import from_onnx

try:
    import onnx
    from onnx import numpy_helper
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        'lstm_backends.onnx needs the onnx package: pip install "lstm-backends[onnx]"'
    ) from exc

__all__ = ["KNOWN_ATTRIBUTES", "OnnxLSTM", "check_against_onnxruntime", "load", "load_all"]

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
    precision: str | None = None
    _prepared: list = field(default_factory=list, repr=False)   # params prepared in ``precision``, once

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
            if self.precision is None:
                return self.params, self.hidden_size, self.input_size
            if not self._prepared:
                self._prepared.extend(self.backend.prepare(p, self.precision) for p in self.params)
            return self._prepared, self.hidden_size, self.input_size
        arrays = {role: (_host(given[role], f"LSTM node {self.name!r}: {role}") if role in given
                         else self.weights[ref]) for role, ref in self.weight_names.items()}
        params, hidden, input_size, _ = _convert(self.name, self.direction, self._hidden_attribute, arrays)
        if self.precision is not None:
            params = [self.backend.prepare(p, self.precision) for p in params]
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
        from ..layer import LSTM

        used = self.onnx_only
        if used:
            raise ValueError(f"node {self.name!r} cannot become an lstm_backends.LSTM: it uses "
                             f"{', '.join(used)}, which only ONNX has; call the node itself instead")
        if self.call_time:
            raise ValueError(f"node {self.name!r} cannot become an lstm_backends.LSTM: its input(s) "
                             f"{', '.join(self.call_time)} are not constants of the model (given at call time)")
        lstm = LSTM(self.input_size, self.hidden_size, bidirectional=self.num_directions == 2,
                    batch_first=self.layout == 1, dtype=self.dtype,
                    backend=self.backend if backend is None else backend, precision=self.precision)
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


def _build(name: str, node: onnx.NodeProto, constants: Mapping[str, np.ndarray], backend: Any,
           precision: str | None = None) -> OnnxLSTM:
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
    precision = validate_precision(precision)
    if precision is not None:
        needs = needs | {precision}
    try:
        chosen = get_backend(backend, requires=needs)
    except UnsupportedFeatureError as exc:
        raise UnsupportedFeatureError(f"LSTM node {name!r} (operator LSTM) cannot run here: {exc}") from None
    return OnnxLSTM(name, direction, hidden, input_size, layout, params, None if clip is None else float(clip),
                    bool(input_forget), activations, dtype, chosen, node, weights, weight_names, call_time,
                    hidden_attribute, precision)


def load_all(model: Any, backend: Any = "auto", precision: str | None = None) -> dict[str, OnnxLSTM]:
    """Every ``LSTM`` node of a model, by node name.

    Parameters
    ----------
    model : str, os.PathLike, bytes or onnx.ModelProto
    backend : str or Backend
        ``"auto"`` picks, per node, the fastest available backend that has every capability
        the node needs (e.g. ``peephole`` for a node with ``P``).
    precision : {None, "bf16", "bf16x3"}
        Run the nodes' products in this mode (see :meth:`Backend.prepare`; float32 weights):
        the weights are prepared once (at the first call), ``"auto"`` picks among the backends
        that have the mode.

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
    return {name: _build(name, node, constants, backend, precision) for name, node in _lstm_nodes(proto.graph)}


def load(model: Any, node: str | int | None = None, backend: Any = "auto", precision: str | None = None) -> OnnxLSTM:
    """One ``LSTM`` node of a model, as a callable ``Y, Y_h, Y_c = m(X, sequence_lens, initial_h, initial_c)``.

    Parameters
    ----------
    model : str, os.PathLike, bytes or onnx.ModelProto
    node : str or int, optional
        The node's name (or its index among the LSTM nodes); may be omitted when the model
        has exactly one LSTM node.
    backend : str or Backend
        As for :func:`load_all`.
    precision : {None, "bf16", "bf16x3"}
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
    return _build(name, chosen, _constants(graph), backend, precision)


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
        fraction of the float32 tolerance, or of the stated accuracy of the node's precision
        mode; <= 1 agrees), ``agrees`` (bool).

    Raises
    ------
    ImportError
        onnxruntime is not installed.
    """
    import onnxruntime as ort

    from ..testing import worst_error

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
    if node.precision is not None:   # the mode's stated accuracy, not float32's tolerance
        from .._prepared import ACCURACY

        err = max(float(np.max(np.abs(g.astype(np.float64) - w))) if g.size else 0.0 for g, w in zip(got, want))
        worst = err / ACCURACY[node.precision]
    else:
        worst = max(worst_error(g, w.astype(np.float64), np.float32) for g, w in zip(got, want))
    return {"compared": True, "reason": "", "worst": worst, "agrees": bool(worst <= 1.0)}


