"""``LSTM``: a stacked, optionally bidirectional layer that mirrors ``torch.nn.LSTM``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ._args import StackTape
from ._params import LSTMParams
from ._prepared import validate_precision
from ._registry import get_backend
from ._validation import describe, is_device_array
from .backends._checks import _check_tape

__all__ = ["LSTM"]

_KINDS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")
_FIELDS = {"weight_ih": "w_ih", "weight_hh": "w_hh", "bias_ih": "b_ih", "bias_hh": "b_hh", "weight_hr": "w_hr"}


def _to_numpy(value: Any) -> np.ndarray:
    # A torch tensor (CPU) converts without importing torch here.
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


class LSTM:
    """Multi-layer, optionally bidirectional LSTM, porting ``torch.nn.LSTM`` mechanically.

    Parameters
    ----------
    input_size : int
        ``I``, features per time step.
    hidden_size : int
        ``H``, features of the hidden state.
    num_layers : int
        Stacked layers; layer ``l > 0`` reads the output of layer ``l - 1``.
    bias : bool
        Whether the layer has biases (zeros otherwise, and no bias keys in state dicts).
    batch_first : bool
        Inputs and outputs are (B, T, ·) instead of (T, B, ·).
    bidirectional : bool
        Run a reverse direction too and concatenate the outputs along the last axis.
    dtype : numpy dtype
        float32 or float64; the dtype of the weights and of accepted inputs.
    backend : str or Backend
        Registry name (``"auto"`` picks the fastest available) or instance.
    seed : int or numpy.random.Generator, optional
        Initialises weights like PyTorch, uniform in ``[-1/sqrt(H), 1/sqrt(H)]``.
    proj_size : int
        ``P > 0`` adds a projection to every layer and direction (LSTMP, like PyTorch's
        ``proj_size``, ``0 < P < H``): ``h_t = W_hr (o ⊙ tanh(c_t))`` has ``P`` features, so
        ``y`` is (T, B, D * P), ``h_n`` (L * D, B, P) while ``c_n`` stays (L * D, B, H), and
        the state dict gains ``weight_hr_l{k}[_reverse]`` of shape (P, H).  Needs a backend
        with the ``projection`` capability.
    precision : {None, "bf16", "bf16x3"}
        Run the products in a precision mode (see :meth:`Backend.prepare`; float32 only, no
        training): every layer and direction is prepared once, and again whenever
        :meth:`load_state_dict` or an assignment to :attr:`params` replaces weights (edits of the
        arrays in place need :meth:`prepare`).

    Attributes
    ----------
    params : list of list of LSTMParams
        ``params[layer][direction]``.
    backend : Backend

    Examples
    --------
    >>> import numpy as np, lstm_backends as lb
    >>> lstm = lb.LSTM(8, 16, num_layers=2, bidirectional=True, backend="numpy", seed=0)
    >>> x = np.random.default_rng(1).standard_normal((5, 3, 8)).astype(np.float32)
    >>> y, (h_n, c_n) = lstm(x, lengths=[5, 3, 0])
    >>> y.shape, h_n.shape
    ((5, 3, 32), (4, 3, 16))
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        bidirectional: bool = False,
        dtype: Any = np.float32,
        backend: Any = "auto",
        seed: Any = None,
        proj_size: int = 0,
        precision: str | None = None,
    ) -> None:
        for name, v in (("input_size", input_size), ("hidden_size", hidden_size), ("num_layers", num_layers)):
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive integer; got {v!r}")
        if not isinstance(proj_size, (int, np.integer)) or isinstance(proj_size, bool) or proj_size < 0:
            raise ValueError(f"proj_size must be a non-negative integer (0: no projection); got {proj_size!r}")
        if proj_size >= hidden_size:
            raise ValueError(f"proj_size must be smaller than hidden_size (as in torch.nn.LSTM); got "
                             f"proj_size={proj_size}, hidden_size={hidden_size}")
        dtype = np.dtype(dtype)
        if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise TypeError(f"dtype must be float32 or float64; got {dtype.name}")
        self.input_size = int(input_size)
        self.hidden_size = int(hidden_size)
        self.num_layers = int(num_layers)
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.bidirectional = bool(bidirectional)
        self.proj_size = int(proj_size)
        self.dtype = dtype
        self.backend = get_backend(backend)
        if self.proj_size:
            self.backend._require("projection", f"proj_size={self.proj_size}")
        self.precision = validate_precision(precision)
        if self.precision is not None:
            self.backend._require(self.precision, f"precision={self.precision!r}")
            if dtype != np.float32:
                raise ValueError(f"precision={self.precision!r} needs dtype=np.float32; got {dtype.name}")
        self._prepared: tuple[Any, list[list[Any]]] | None = None   # (the params prepared, their PreparedParams)
        rng = np.random.default_rng(seed)
        bound = 1.0 / np.sqrt(self.hidden_size)
        self.params: list[list[LSTMParams]] = []
        for layer in range(self.num_layers):
            directions = []
            for _ in range(self.num_directions):
                shapes = self._shapes(layer)
                arrays = {
                    _FIELDS[k]: rng.uniform(-bound, bound, size=shape).astype(dtype)
                    if (k.startswith("weight") or self.bias)
                    else np.zeros(shape, dtype)
                    for k, shape in shapes.items()
                }
                directions.append(LSTMParams(**arrays))
            self.params.append(directions)
        if self.precision is not None:
            self.prepare()

    def prepare(self) -> None:
        """Prepare every layer and direction for the backend in the layer's precision mode (done
        for you at construction, by :meth:`load_state_dict` and after :attr:`params` is replaced;
        call it after editing weight arrays in place)."""
        key = [list(layer) for layer in self.params]
        self._prepared = (key, [[self.backend.prepare(p, self.precision) for p in layer] for layer in self.params])

    def _stack(self) -> list[list[Any]]:
        """What the backend runs: the params, or their prepared form in a precision mode."""
        if self.precision is None:
            return self.params
        key = self._prepared[0] if self._prepared is not None else None
        if key is None or len(key) != len(self.params) or any(
                len(a) != len(b) or any(p is not q for p, q in zip(a, b)) for a, b in zip(key, self.params)):
            self.prepare()
        return self._prepared[1]

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def state_size(self) -> int:
        """Features of ``h``: ``proj_size`` when projecting, else ``hidden_size``."""
        return self.proj_size or self.hidden_size

    def _shapes(self, layer: int) -> dict[str, tuple[int, ...]]:
        h, s = self.hidden_size, self.state_size
        layer_in = self.input_size if layer == 0 else s * self.num_directions
        shapes = {"weight_ih": (4 * h, layer_in), "weight_hh": (4 * h, s), "bias_ih": (4 * h,), "bias_hh": (4 * h,)}
        if self.proj_size:
            shapes["weight_hr"] = (self.proj_size, h)
        return shapes

    def _keys(self) -> list[tuple[str, int, int, str]]:
        kinds = [k for k in _KINDS if (self.bias or not k.startswith("bias")) and (self.proj_size or k != "weight_hr")]
        keys = []
        for layer in range(self.num_layers):
            for d in range(self.num_directions):
                suffix = "_reverse" if d else ""
                keys.extend((f"{kind}_l{layer}{suffix}", layer, d, kind) for kind in kinds)
        return keys

    # ------------------------------------------------------------------ weights
    def state_dict(self) -> dict[str, np.ndarray]:
        """Weights under PyTorch's names (``weight_ih_l0``, ``bias_hh_l1_reverse``, ``weight_hr_l0``, …).

        Returns
        -------
        dict of str to numpy.ndarray
            Copies; shapes as in ``torch.nn.LSTM``.
        """
        return {key: getattr(self.params[layer][d], _FIELDS[kind]).copy() for key, layer, d, kind in self._keys()}

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True) -> None:
        """Load weights named like ``torch.nn.LSTM.state_dict()`` (NumPy values; no torch needed).

        Parameters
        ----------
        state_dict : mapping of str to array
            ``weight_ih_l{k}``, ``weight_hh_l{k}``, ``bias_ih_l{k}``, ``bias_hh_l{k}`` (and
            ``weight_hr_l{k}`` with ``proj_size``), with ``_reverse`` for the second direction.
            Values are converted to the layer's dtype.
        strict : bool
            Refuse unexpected keys (missing keys are always refused).

        Raises
        ------
        KeyError
            Missing (or, with ``strict``, unexpected) keys, all listed.
        ValueError
            A value of the wrong shape (named, with both shapes).
        TypeError
            A non-floating value.
        """
        keys = self._keys()
        expected = {k for k, *_ in keys}
        missing = sorted(expected - set(state_dict))
        unexpected = sorted(set(state_dict) - expected)
        if missing or (strict and unexpected):
            parts = []
            if missing:
                parts.append(f"missing keys: {', '.join(missing)}")
            if strict and unexpected:
                parts.append(f"unexpected keys: {', '.join(unexpected)}")
            raise KeyError(
                f"state_dict does not match LSTM(num_layers={self.num_layers}, "
                f"bidirectional={self.bidirectional}, bias={self.bias}, proj_size={self.proj_size}): "
                + "; ".join(parts)
            )
        new = [[p._asdict() for p in layer] for layer in self.params]
        for key, layer, d, kind in keys:
            value = _to_numpy(state_dict[key])
            if not np.issubdtype(value.dtype, np.floating):
                raise TypeError(f"state_dict[{key!r}] has dtype {value.dtype.name}; weights must be floating point")
            shape = self._shapes(layer)[kind]
            if value.shape != shape:
                raise ValueError(f"state_dict[{key!r}] must have shape {shape}; got shape {value.shape}")
            new[layer][d][_FIELDS[kind]] = np.array(value, dtype=self.dtype, order="C", copy=True)
        self.params = [[LSTMParams(**p) for p in layer] for layer in new]
        if self.precision is not None:
            self.prepare()

    # ------------------------------------------------------------------ forward
    def __call__(
        self,
        x: Any,
        hx: tuple[Any, Any] | None = None,
        lengths: Any = None,
    ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
        """Run the stack over a sequence.

        Parameters
        ----------
        x : array, shape (T, B, I), or (B, T, I) with ``batch_first``, or (T, I) unbatched
            An array (NumPy, or a device array on a device backend) of the layer's dtype,
            or a nested list, which is converted to it.
        hx : tuple (h0, c0) of arrays shaped (L * D, B, S) and (L * D, B, H), optional
            Initial states (without the batch axis when unbatched); zeros when omitted.
            ``S`` is ``proj_size`` when projecting, else ``H``.  Like ``x``: the layer's
            dtype, or lists.
        lengths : array_like of int, shape (B,), optional
            Valid steps per row (like a packed sequence): outputs past a row's length
            are zero and its final state is taken at its last valid step.

        Returns
        -------
        y : array, shape (T, B, D * S) (or (B, T, D * S) with ``batch_first``)
        (h_n, c_n) : arrays, shapes (L * D, B, S) and (L * D, B, H)

        Raises
        ------
        TypeError
            An array of another dtype than the layer's (the message says how to cast it, or
            which ``dtype=`` the layer would need); ``hx`` that is not a pair ``(h0, c0)``.
        ValueError
            A shape that does not fit; when the batch sizes of ``lengths`` or ``hx`` match
            the other layout of ``x``, the message suggests flipping ``batch_first``.
        """
        y, state, _ = self._run(x, hx, lengths, train=False)
        return y, state

    def _run(self, x: Any, hx: tuple[Any, Any] | None, lengths: Any, *, train: bool) -> tuple[Any, Any, Any]:
        """Check the call with the layer's own words (layout, dtype, ``hx``), then run the stack.

        Only what the layer knows better than the backend is checked here: the rest (lengths'
        values, device placement, …) is left to the backend's validation.
        """
        x = self._as_input("x", x)
        h0, c0 = self._unpack_state(hx)
        x_shape = tuple(describe(x)[0])
        unbatched = len(x_shape) == 2
        layout = "(T, I)" if unbatched else "(B, T, I)" if self.batch_first else "(T, B, I)"
        if len(x_shape) not in (2, 3):
            raise ValueError(f"x must have shape {layout} or (T, I); got shape {x_shape}")
        if x_shape[-1] != self.input_size:
            raise ValueError(f"x must have shape {layout} with I={self.input_size} (this LSTM's input_size); "
                             f"got shape {x_shape}")
        if unbatched:
            if lengths is not None:
                raise ValueError("lengths needs batched input (T, B, I)")
            self._check_states(h0, c0, None, x_shape)
            x = x[:, None, :]
            if h0 is not None:
                h0, c0 = h0[:, None, :], c0[:, None, :]
        else:
            self._check_batch(x_shape, h0, c0, lengths)
            if self.batch_first:
                if not hasattr(x, "swapaxes"):
                    raise ValueError(
                        "batch_first=True needs an array with swapaxes (NumPy); for device arrays "
                        "pass time-major (T, B, I) input with batch_first=False"
                    )
                x = x.swapaxes(0, 1)
        if train:
            y, h_n, c_n, tape = self.backend.forward_layers_train(x, self._stack(), h0, c0, lengths=lengths)
            tape.layout = "TI" if unbatched else "BTI" if self.batch_first else "TBI"
        else:
            y, h_n, c_n = self.backend.forward_layers(x, self._stack(), h0, c0, lengths=lengths)
            tape = None
        if unbatched:
            return y[:, 0], (h_n[:, 0], c_n[:, 0]), tape
        if self.batch_first:
            y = y.swapaxes(0, 1)
        return y, (h_n, c_n), tape

    def _as_input(self, name: str, a: Any) -> Any:
        """``a`` as an array of this layer's dtype, or a ``TypeError`` saying how to get one.

        Arrays (NumPy, device arrays) and array-likes with a dtype of their own (e.g. a CPU
        tensor) must have the layer's dtype: nothing is cast silently.  Other array-likes
        (nested lists, tuples) have no dtype to keep and are converted to the layer's.
        """
        if isinstance(a, np.ndarray) or is_device_array(a):
            dtype = describe(a)[1]
        elif a is None:
            raise TypeError(f"{name} must be an array; got None")
        else:
            try:
                a = np.asarray(a) if hasattr(a, "dtype") else np.asarray(a, dtype=self.dtype)
            except (TypeError, ValueError) as exc:
                raise TypeError(f"{name} must be an array of numbers; np.asarray could not convert the "
                                f"{type(a).__name__} given to {self.dtype.name}: {exc}") from None
            dtype = a.dtype
        if dtype != self.dtype:
            layer = self.dtype.name
            if dtype in (np.dtype(np.float32), np.dtype(np.float64)):
                raise TypeError(f"mixed dtypes: {name} is {dtype.name} but this LSTM is {layer}; cast with "
                                f"{name}.astype(np.{layer}) or build the layer as LSTM(..., dtype=np.{dtype.name})")
            raise TypeError(f"{name} has dtype {dtype.name} but this LSTM computes in {layer} (LSTM supports "
                            f"float32 and float64); cast with {name}.astype(np.{layer})")
        return a

    def _unpack_state(self, hx: Any) -> tuple[Any, Any]:
        """``(h0, c0)`` from ``hx`` (both checked by :meth:`_as_input`), or ``(None, None)``."""
        if hx is None:
            return None, None
        if not isinstance(hx, (tuple, list)):
            got = f"an array of shape {tuple(describe(hx)[0])}" if hasattr(hx, "shape") else type(hx).__name__
            raise TypeError(f"hx must be the pair (h0, c0), as in torch.nn.LSTM: call lstm(x, (h0, c0)); got {got}")
        if len(hx) != 2:
            raise ValueError(f"hx must be the pair (h0, c0), as in torch.nn.LSTM: call lstm(x, (h0, c0)); "
                             f"got a {type(hx).__name__} of {len(hx)} items")
        for name, s in zip(("h0", "c0"), hx):
            if s is None:
                raise TypeError(f"hx must be the pair (h0, c0) of arrays; {name} is None (omit hx for zero states)")
        return self._as_input("h0", hx[0]), self._as_input("c0", hx[1])

    def _check_states(self, h0: Any, c0: Any, batch: int | None, x_shape: tuple[int, ...], hint: str = "") -> None:
        """``h0``/``c0`` shapes: (L * D, B, S) and (L * D, B, H), without B for unbatched ``x``
        (``batch`` None); ``hint`` ends the message of a batched mismatch."""
        if h0 is None:
            return
        stack = self.num_layers * self.num_directions
        letter = "P" if self.proj_size else "H"
        for name, s, width, w_name in (("h0", h0, self.state_size, letter), ("c0", c0, self.hidden_size, "H")):
            shape = tuple(describe(s)[0])
            if batch is None:
                if shape != (stack, width):
                    raise ValueError(f"{name} must have shape (L * D, {w_name}) = {(stack, width)} for unbatched x of "
                                     f"shape (T, I) = {x_shape}; got shape {shape}")
            elif shape != (stack, batch, width):
                raise ValueError(f"{name} must have shape (L * D, B, {w_name}) = {(stack, batch, width)}; got shape "
                                 f"{shape}{hint}")

    def _check_batch(self, x_shape: tuple[int, ...], h0: Any, c0: Any, lengths: Any) -> None:
        """The batch sizes of ``lengths`` and the states against ``x``'s.

        When they all count ``x``'s other leading axis instead, ``x`` is likely in the other
        layout: the error says to flip ``batch_first``.  (A (B, T, I) array read as (T, B, I)
        is a valid input of its own, so nothing else can tell.)
        """
        batch_axis = 0 if self.batch_first else 1
        batch, other = x_shape[batch_axis], x_shape[1 - batch_axis]
        lengths_shape = None if lengths is None or is_device_array(lengths) else tuple(np.shape(lengths))
        counts = [lengths_shape[0]] if lengths_shape is not None and len(lengths_shape) == 1 else []
        for s in (h0, c0):
            shape = () if s is None else describe(s)[0]
            if len(shape) == 3:
                counts.append(shape[1])
        hint = ""
        if other != batch and other in counts and batch not in counts:
            if self.batch_first:
                hint = (f"; x of shape {x_shape} is read as (B, T, I) with B={batch} (batch_first=True): if it is "
                        "(T, B, I), build the layer with batch_first=False")
            else:
                hint = (f"; x of shape {x_shape} is read as (T, B, I) with B={batch}: if it is (B, T, I), build the "
                        "layer as LSTM(..., batch_first=True)")
        if lengths_shape is not None and lengths_shape != (batch,) and hint:
            raise ValueError(f"lengths must have shape (B,) = ({batch},); got shape {lengths_shape}{hint}")
        self._check_states(h0, c0, batch, x_shape, hint)

    # ------------------------------------------------------------------ training
    def forward_train(
        self,
        x: Any,
        hx: tuple[Any, Any] | None = None,
        lengths: Any = None,
    ) -> tuple[Any, tuple[Any, Any], StackTape]:
        """Run the stack like :meth:`__call__`, also recording the tape :meth:`backward` needs.

        Needs a backend with the ``backward`` capability (and, with ``proj_size``, whose
        ``backward_features`` include ``projection``).

        Parameters
        ----------
        x, hx, lengths
            As for :meth:`__call__`.

        Returns
        -------
        y : array, shape (T, B, D * S) (or (B, T, D * S) with ``batch_first``, (T, D * S) unbatched)
        (h_n, c_n) : arrays, shapes (L * D, B, S) and (L * D, B, H)
        tape : StackTape
            References ``x``, ``hx`` and the weights (do not modify them before the last
            :meth:`backward` with it; an optimizer step after ``backward`` is fine) and owns the
            saved activations: ``T * B * 5H`` numbers per layer and direction, plus the inner
            layers' outputs.

        Examples
        --------
        >>> import numpy as np, lstm_backends as lb
        >>> lstm = lb.LSTM(3, 4, num_layers=2, backend="numpy", dtype=np.float64, seed=0)
        >>> x = np.random.default_rng(1).standard_normal((5, 2, 3))
        >>> y, (h_n, c_n), tape = lstm.forward_train(x)
        >>> dx, (dh0, dc0), grads = lstm.backward(tape, dy=np.ones_like(y))   # d(sum y)/d(...)
        >>> dx.shape, grads["weight_hh_l1"].shape
        ((5, 2, 3), (16, 4))
        """
        y, state, tape = self._run(x, hx, lengths, train=True)
        return y, state, tape

    def backward(
        self,
        tape: StackTape,
        dy: Any = None,
        dhx: tuple[Any, Any] | None = None,
    ) -> tuple[Any, tuple[Any, Any], dict[str, Any]]:
        """Gradients of a loss through the call that recorded ``tape`` (PyTorch autograd's values).

        Parameters
        ----------
        tape : StackTape
            From :meth:`forward_train` of this layer (same configuration); reusable.
        dy : array, shape like ``y`` from :meth:`forward_train`, optional
            ``∂L/∂y``; ``None``: zeros.  Entries past a row's length are ignored.
        dhx : tuple (dh_n, dc_n), optional
            ``∂L/∂h_n`` (L * D, B, S) and ``∂L/∂c_n`` (L * D, B, H) (without the batch axis when
            unbatched); the tuple or either entry may be ``None``: zeros.

        Returns
        -------
        dx : array, shape like ``x``
            Zero at steps past a row's length.
        (dh0, dc0) : arrays, shapes like ``h0``, ``c0``
        grads : dict of str to array
            The gradient of every weight under its PyTorch name (the keys of :meth:`state_dict`:
            ``weight_ih_l0``, ``bias_hh_l1_reverse``, ``weight_hr_l0``, …).

        Raises
        ------
        TypeError
            ``tape`` is not a :class:`~lstm_backends.StackTape`.
        ValueError
            ``tape`` does not match this layer's configuration or backend; a gradient of the
            wrong shape.
        """
        _check_tape(tape, StackTape, self.backend.name, "LSTM.forward_train", "LSTM.backward")
        expected = (self.num_layers, self.num_directions, self.hidden_size, self.state_size, self.input_size,
                    self.dtype)
        got = (tape.num_layers, tape.num_directions, tape.hidden_size, tape.state_size, tape.input_size, tape.dtype)
        if got != expected:
            raise ValueError(f"tape was recorded by another configuration (layers, directions, H, S, I, dtype) = "
                             f"{got}; this LSTM is {expected}")
        dh_n, dc_n = (None, None) if dhx is None else dhx
        if tape.layout == "TI":
            dy, dh_n, dc_n = (None if a is None else a[:, None] for a in (dy, dh_n, dc_n))
        elif tape.layout == "BTI" and dy is not None:
            if not hasattr(dy, "swapaxes"):
                raise ValueError("batch_first=True needs dy with swapaxes (NumPy)")
            dy = dy.swapaxes(0, 1)
        dx, dh0, dc0, dparams = self.backend.backward_layers(tape, dy, dh_n, dc_n)
        grads = {key: getattr(dparams[layer][d], _FIELDS[kind]) for key, layer, d, kind in self._keys()}
        if tape.layout == "TI":
            return dx[:, 0], (dh0[:, 0], dc0[:, 0]), grads
        if tape.layout == "BTI":
            dx = dx.swapaxes(0, 1)
        return dx, (dh0, dc0), grads

    def __repr__(self) -> str:
        return (
            f"LSTM({self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, "
            f"bias={self.bias}, batch_first={self.batch_first}, bidirectional={self.bidirectional}, "
            + (f"proj_size={self.proj_size}, " if self.proj_size else "")
            + f"dtype={self.dtype.name}, backend={self.backend.name!r}"
            + (f", precision={self.precision!r})" if self.precision is not None else ")")
        )
