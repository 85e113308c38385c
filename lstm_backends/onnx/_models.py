"""Whole ONNX models in one call (:func:`load_model`): the ``LSTM`` nodes on our backends, every
other node in :class:`onnx.reference.ReferenceEvaluator`; random inputs and the command line."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import onnx

from ._nodes import _INPUTS, _WEIGHTS, OnnxLSTM, _build, _constants, _host, _is_lstm, _lstm_nodes, _model

__all__ = ["DEFAULT_DIM", "ModelInput", "OnnxModel", "load_model", "random_feeds"]


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


def _lstm_op(nodes: Mapping[bytes, tuple[OnnxLSTM, frozenset[str]]], backend: Any,
             precision: str | None = None) -> type:
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
                found = (_build(onnx_node.name or "LSTM", onnx_node, {}, backend, precision), frozenset())
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

    def __init__(self, model: Any, backend: Any = "auto", precision: str | None = None) -> None:
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
                lstm = _build(path + name, node, constants, backend, precision)
                # an initializer that is also a graph input is a default a feed may replace
                overridable = frozenset(role for role, ref in lstm.weight_names.items()
                                        if not path and ref in feedable and ref in initializers)
                self.lstm_nodes[lstm.name] = lstm
                key = _node_key(node)
                if key in nodes:
                    # The same node text in two places (the branches of an If, each with constants of its
                    # own under the same names): the evaluator cannot tell them apart, so every weight it
                    # hands over is compared with the first one's and converted when it differs.
                    first, _ = nodes[key]
                    overridable = frozenset(first.weight_names)
                    lstm = first
                nodes[key] = (lstm, overridable)
        self._optional = feedable & initializers
        self.input_names = [i.name for i in graph.input if i.name not in initializers]
        self.output_names = [o.name for o in graph.output]
        self.inputs = [_model_input(i) for i in graph.input if i.name not in initializers]
        self.evaluator = ReferenceEvaluator(proto, new_ops=[_lstm_op(nodes, backend, precision)])

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


def load_model(model: Any, backend: Any = "auto", precision: str | None = None) -> OnnxModel:
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
    precision : {None, "bf16", "bf16x3"}
        Run every LSTM node's products in this mode (see :meth:`Backend.prepare`; float32
        models only); ``"auto"`` then picks among the backends that have it.

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
    return OnnxModel(model, backend, precision)


# ---------------------------------------------------------------------------- command line
DEFAULT_DIM = 3  #: the size given to a dynamic axis of a random input (``lstm-backends onnx --run``)


def random_feeds(model: OnnxModel, dims: Mapping[str, int] | None = None, *, default_dim: int = DEFAULT_DIM,
                 seed: int = 0, given: Collection[str] = ()) -> dict[str, np.ndarray]:
    """Random values for every input of a model, shaped as the graph declares.

    Parameters
    ----------
    model : OnnxModel
    dims : mapping of str to int, optional
        Sizes of named dynamic axes (``{"batch": 4, "T": 7}``).
    default_dim : int
        Size of every other dynamic axis.
    seed : int
    given : collection of str
        Inputs the caller gives itself: left out (they need no declared type or shape).

    Returns
    -------
    dict of str to ndarray
        Every other input: floating inputs standard normal; integer inputs in ``{0, 1}`` (valid token ids and
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
        if inp.name in given:
            continue
        if inp.dtype is None or inp.shape is None:
            raise ValueError(f"input {inp.name!r} has no declared tensor type and shape: {_give(inp.name)}")
        shape = tuple(d if isinstance(d, int) and d > 0 else dims.get(d, default_dim) if isinstance(d, str)
                      else default_dim for d in inp.shape)
        if np.issubdtype(inp.dtype, np.floating):
            feeds[inp.name] = rng.standard_normal(shape).astype(inp.dtype)
        elif np.issubdtype(inp.dtype, np.integer):
            feeds[inp.name] = rng.integers(0, 2, shape).astype(inp.dtype)
        elif inp.dtype == np.bool_:
            feeds[inp.name] = rng.integers(0, 2, shape).astype(bool)
        else:
            raise ValueError(f"input {inp.name!r} has dtype {inp.dtype}, which has no random values here: "
                             f"{_give(inp.name)}")
    return feeds


def _give(name: str) -> str:
    return f"give its value: --input {name}=FILE.npy on the command line, feeds[{name!r}] to OnnxModel.run"


def _pairs(items: Sequence[str], what: str) -> dict[str, str]:
    pairs = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise ValueError(f"{what} must look like NAME=VALUE; got {item!r}")
        pairs[name] = value
    return pairs


def _cli_run(path: str, *, backend: Any = "auto", inputs: Sequence[str] = (), dims: Sequence[str] = (),
             seed: int = 0, check: bool = True, precision: str | None = None) -> int:
    """``lstm-backends onnx MODEL --run``: run the whole model, compare with onnxruntime, print.

    ``inputs``: ``NAME=FILE.npy`` items; ``dims``: ``NAME=N`` items (a named dynamic axis)
    or ``N`` (every other dynamic axis).  Returns the exit status: 1 when an output
    disagrees with onnxruntime, else 0.
    """
    import importlib.util

    from ..testing import TOLERANCES, worst_error

    session = load_model(path, backend=backend, precision=precision)
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
    feeds = random_feeds(session, named, default_dim=default_dim, seed=seed, given=files)
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
                if precision is not None and np.issubdtype(value.dtype, np.floating):   # the mode's accuracy
                    from .._prepared import ACCURACY

                    agrees = err <= ACCURACY[precision]
                    diff += f" (precision {precision}: stated bound {ACCURACY[precision]:g})"
                elif np.issubdtype(value.dtype, np.floating):  # the library's tolerance, as everywhere
                    dtype = value.dtype if value.dtype in TOLERANCES else np.dtype(np.float32)
                    agrees = worst_error(value, want.astype(np.float64), dtype) <= 1.0
                else:
                    agrees = bool(np.array_equal(value, want))
            failures += not agrees
            line += f"  {diff}  {'agrees' if agrees else 'DISAGREES'}"
        print(line)
    return 1 if failures else 0

