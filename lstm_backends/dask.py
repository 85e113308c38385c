"""Batch inference over Dask: one task per batch chunk runs the whole stacked LSTM.

>>> import numpy as np, dask.array as da, lstm_backends as lb
>>> import lstm_backends.dask
>>> lstm = lb.LSTM(3, 4, num_layers=2, backend="numpy", seed=0)
>>> x = da.random.default_rng(0).standard_normal((6, 10, 3), chunks=(6, 5, 3)).astype(np.float32)
>>> y, (h_n, c_n) = lstm_backends.dask.forward(lstm, x)      # lazy; x: (T, B, I) chunked on B
>>> y.chunks, h_n.chunks
(((6,), (5, 5), (4,)), ((2,), (5, 5), (4,)))
>>> y_np, h_np = y.compute(scheduler="threads"), h_n.compute(scheduler="threads")
>>> bool(np.allclose(y_np, lstm(x.compute())[0], rtol=1e-6, atol=1e-6))
True

The graph (built from :func:`dask.array.blockwise`, so Dask's own optimisations and
schedulers apply unchanged):

* ``lstm-weights-<token>``: **one key** holding a copy of every layer's parameters,
  taken when :func:`forward` is called.  Every task depends on it, so a worker receives
  the weights once, not once per task (a ``distributed`` worker fetches a dependency
  once and keeps it while its tasks need it).  ``scatter=True`` broadcasts them to every
  worker of the active ``distributed`` client instead.
* ``lstm-forward-<token>``, index ``i``: one task per batch chunk, which runs every
  layer and direction over the whole sequence with the chosen backend's
  ``forward_layers`` (never a task per time step) and returns ``(y, h_n, c_n)``.
* ``lstm-y``/``lstm-h_n``/``lstm-c_n``: one cheap selection per chunk.

In each worker process the backend is looked up by name in that process's registry and
created once per thread budget (a process-wide cache), so Numba compiles (or loads from
its on-disk cache) once per process, on the first task.

Threads.  A backend whose constructor takes ``num_threads`` (``numba``) gets a budget of
``max(1, threads // min(threads, chunks))`` per task, where ``threads`` is what the
scheduler was given to run tasks with — on ``distributed`` the worker's ``nthreads``, on
the local threaded scheduler its ``num_workers`` setting (default: the CPU count) — and
``chunks`` the number of batch chunks.  Tasks that run side by side share those threads
instead of oversubscribing the cores (one each when there are enough chunks), and a lone
task gets them all.  ``forward(..., num_threads=n)`` overrides the rule.

Importing this module imports Dask; ``import lstm_backends`` never does.
"""

from __future__ import annotations

import inspect
import math
import operator
import os
import socket
import sys
import threading
import warnings
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

try:
    import dask
    import dask.array as da
    from dask.array.utils import meta_from_array
    from dask.base import tokenize
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        'lstm_backends.dask needs Dask: pip install "lstm-backends[dask]" (dask[array] and distributed)'
    ) from exc

from ._errors import BackendUnavailableError, UnknownBackendError
from ._registry import ENTRY_POINT_GROUP, get_backend
from ._validation import validate_lengths
from .backends._base import Backend
from .layer import LSTM

__all__ = ["forward"]


class _Spec(NamedTuple):
    """What every task needs besides its blocks and the weights (a small graph literal)."""

    backend: str
    batch_first: bool
    steps: int
    chunks: int
    num_threads: int | None  # an explicit budget, or None for the rule


# ---------------------------------------------------------------------------- the graph
def forward(
    lstm: LSTM,
    x: Any,
    lengths: Any = None,
    h0: Any = None,
    c0: Any = None,
    *,
    backend: str | Backend | None = None,
    num_threads: int | None = None,
    scatter: bool = False,
) -> tuple[da.Array, tuple[da.Array, da.Array]]:
    """Run a stacked LSTM over a Dask array, one task per batch chunk.

    Lazy: builds a graph and returns Dask arrays; nothing runs until they are computed
    or stored.  Compute or store ``y``, ``h_n`` and ``c_n`` together
    (``dask.compute(y, h_n)``, ``dask.array.store``): each separate computation runs
    the LSTM again.

    Parameters
    ----------
    lstm : LSTM
        The layer; its weights are copied into the graph now (later changes to
        ``lstm.params`` do not affect this graph), and ``lstm.batch_first`` selects
        the layout of ``x`` and ``y``.
    x : dask.array.Array, shape (T, B, I), or (B, T, I) with ``lstm.batch_first``
        Chunked along the batch axis B.  Other chunkings are rechunked to one chunk along
        T and I (every task needs whole sequences), with a
        :class:`dask.array.PerformanceWarning` since that moves data.  A NumPy array is
        wrapped with :func:`dask.array.from_array`, chunked along B by Dask's ``"auto"``
        rule (``array.chunk-size``, 128 MiB by default, so a small array is one task):
        pass a Dask array to choose the parallelism.  Its dtype must be ``lstm.dtype``.
    lengths : NumPy or Dask array of int, shape (B,), optional
        Valid steps per sequence, ``0 <= lengths[b] <= T`` (see :class:`~lstm_backends.LSTM`).
        Rechunked to ``x``'s batch chunks.
    h0 : NumPy or Dask array, shape (L * D, B, H), optional
        Initial hidden states, index ``layer * D + direction``; zeros when omitted.
        Rechunked to one chunk along axes 0 and 2 and to ``x``'s batch chunks.
    c0 : NumPy or Dask array, shape (L * D, B, H), optional
        Initial cell states, like ``h0``.
    backend : str or Backend, optional
        The backend the workers run, looked up by name in each worker's registry
        (default: ``lstm.backend``'s name).  ``"auto"`` lets every worker pick its fastest.
        A backend instance contributes only its name: its settings do not travel.
    num_threads : int, optional
        Threads per task for backends that take a thread budget (``numba``), instead of
        the rule in the module notes (``max(1, threads // min(threads, chunks))``).
    scatter : bool
        Broadcast the weights now to every worker of the active ``distributed`` client
        (``client.scatter(broadcast=True, hash=True)``) instead of placing them in the
        graph.  Worth it for large models (several MB of weights).  The result can then
        only be computed on that client.

    Returns
    -------
    y : dask.array.Array, shape (T, B, D * H), or (B, T, D * H) with ``batch_first``
        Chunked like ``x`` along B, one chunk along the other axes.
    (h_n, c_n) : tuple of dask.array.Array, shape (L * D, B, H)
        Final states, chunked like ``x`` along B.

    Raises
    ------
    TypeError
        ``lstm`` is not an :class:`~lstm_backends.LSTM`; ``x``, ``h0`` or ``c0`` is neither
        a Dask nor a NumPy array or has the wrong dtype; ``backend`` is not a name or a
        backend; ``scatter=True`` without a ``distributed`` client.
    ValueError
        A wrong shape (naming the argument, the shape received and the shape expected),
        ``lengths`` of the wrong length, not integers or (NumPy) out of ``[0, T]``;
        ``x`` with unknown chunk sizes.  Dask ``lengths`` out of range raise
        ``ValueError`` when computed, naming the global index.
    BackendUnavailableError, UnknownBackendError
        When computed, from a worker that cannot run the backend: the message names the
        worker, the backend, why, and the fix.

    Examples
    --------
    >>> import numpy as np, dask.array as da, lstm_backends as lb, lstm_backends.dask
    >>> lstm = lb.LSTM(2, 3, bidirectional=True, batch_first=True, backend="numpy", seed=0)
    >>> x = da.zeros((8, 5, 2), chunks=(4, 5, 2), dtype=np.float32)     # (B, T, I)
    >>> y, (h_n, c_n) = lstm_backends.dask.forward(lstm, x, lengths=np.array([5, 0] * 4))
    >>> y.shape, y.chunks[0], h_n.shape
    ((8, 5, 6), (4, 4), (2, 8, 3))
    """
    if not isinstance(lstm, LSTM):
        raise TypeError(f"lstm must be an lstm_backends.LSTM; got {type(lstm).__name__}")
    spec_backend = _backend_name(lstm.backend if backend is None else backend)
    if num_threads is not None and (
        not isinstance(num_threads, (int, np.integer)) or isinstance(num_threads, bool) or num_threads < 1
    ):
        raise ValueError(f"num_threads must be a positive integer or None; got {num_threads!r}")

    time_axis, batch_axis = (1, 0) if lstm.batch_first else (0, 1)
    x = _check_x(x, lstm, time_axis, batch_axis)
    batch_chunks = x.chunks[batch_axis]
    steps, batch = x.shape[time_axis], x.shape[batch_axis]
    layers = lstm.params
    num_states = lstm.num_layers * lstm.num_directions
    h_size, c_size = lstm.state_size, lstm.hidden_size  # they differ with a projection

    lengths_arr = _align_lengths(lengths, batch_chunks, batch, steps)
    states = [
        _align_state(name, s, (num_states, batch, size), batch_chunks, lstm.dtype)
        for name, s, size in (("h0", h0, h_size), ("c0", c0, c_size))
    ]
    weights = _weights(layers, scatter)
    starts = np.cumsum((0, *batch_chunks[:-1]), dtype=np.int64)
    offsets = da.from_array(starts, chunks=1, name="lstm-offsets-" + tokenize(batch_chunks))
    spec = _Spec(spec_backend, lstm.batch_first, int(steps), len(batch_chunks),
                 None if num_threads is None else int(num_threads))

    x_ind = "bti" if lstm.batch_first else "tbi"
    args: list[Any] = [x, x_ind]
    args += [lengths_arr, "b"] if lengths_arr is not None else [None, None]
    for state, ind in zip(states, ("kbp", "kbq")):
        args += [state, ind] if state is not None else [None, None]
    args += [offsets, "b", weights, None, spec, None]
    token = tokenize(x.name, *(None if a is None else a.name for a in (lengths_arr, *states)), weights.key, spec)
    # align_arrays=False: every input is already chunked exactly like x along B (the tiny
    # offsets array has one element per chunk, so its chunk sizes differ but not its count).
    parts = da.blockwise(
        _forward_block, "b", *args, name="lstm-forward-" + token, concatenate=True,
        align_arrays=False, meta=np.empty((0,), dtype=object),
    )
    y_ind = "btz" if lstm.batch_first else "tbz"
    y_axes = {"t": steps, "z": lstm.num_directions * h_size}
    y = _select(parts, 0, "lstm-y-" + token, y_ind, y_axes, x, lstm.dtype)
    h_n = _select(parts, 1, "lstm-h_n-" + token, "kbz", {"k": num_states, "z": h_size}, x, lstm.dtype)
    c_n = _select(parts, 2, "lstm-c_n-" + token, "kbz", {"k": num_states, "z": c_size}, x, lstm.dtype)
    return y, (h_n, c_n)


def _select(parts: da.Array, index: int, name: str, out_ind: str, new_axes: dict[str, int], like: da.Array,
            dtype: np.dtype) -> da.Array:
    """Output ``index`` of every task as an array chunked like ``parts`` along ``b``."""
    return da.blockwise(operator.getitem, out_ind, parts, "b", index, None, new_axes=new_axes, name=name,
                        meta=meta_from_array(like, ndim=len(out_ind), dtype=dtype))


def _backend_name(backend: Any) -> str:
    if isinstance(backend, Backend):
        backend = backend.name
    if not isinstance(backend, str) or not backend:
        raise TypeError(f"backend must be a backend name or a Backend instance; got {backend!r}")
    return backend


def _check_x(x: Any, lstm: LSTM, time_axis: int, batch_axis: int) -> da.Array:
    """``x`` as a Dask array of the right shape and dtype, one chunk along T and I."""
    layout = "(B, T, I)" if lstm.batch_first else "(T, B, I)"
    if isinstance(x, np.ndarray):
        if x.ndim == 3:  # shape errors are reported below, for both kinds of input
            chunks = {time_axis: -1, batch_axis: "auto", 2: -1}
            x = da.from_array(x, chunks=chunks)
        else:
            x = da.from_array(x)
    elif not isinstance(x, da.Array):
        raise TypeError(
            f"x must be a dask.array.Array {layout} chunked along the batch axis (e.g. from "
            "dask.array.from_zarr, or dask.array.from_array(x, chunks=...)) or a NumPy array; "
            f"got {type(x).__name__}"
        )
    if x.ndim != 3 or x.shape[2] != lstm.input_size:
        raise ValueError(
            f"x must have shape {layout} with I={lstm.input_size} (lstm.input_size); got shape {x.shape}"
        )
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"x has dtype {x.dtype.name}; it must be floating point: {lstm.dtype.name}, the "
                        f"LSTM's dtype (x.astype(np.{lstm.dtype.name}))")
    if x.dtype != lstm.dtype:
        raise TypeError(
            f"mixed dtypes: x is {x.dtype.name} but the LSTM's weights are {lstm.dtype.name}; cast with "
            f"x.astype(np.{lstm.dtype.name}) or build the LSTM with dtype=np.{x.dtype.name}"
        )
    if any(math.isnan(c) for axis in x.chunks for c in axis):
        raise ValueError("x has unknown chunk sizes (NaN); call x.compute_chunk_sizes() first")
    split = [(name, len(x.chunks[axis])) for name, axis in (("time", time_axis), ("feature", 2))
             if len(x.chunks[axis]) > 1]
    if split:
        what = " and ".join(f"{n} chunks along the {name} axis" for name, n in split)
        target = {time_axis: -1, 2: -1}
        warnings.warn(
            f"lstm_backends.dask.forward: x has {what}; rechunking them to one chunk (every task needs whole "
            f"sequences), which moves data. Chunk x along the batch axis only (axis {batch_axis}), e.g. "
            f"x.rechunk({{{time_axis}: -1, {batch_axis}: 'auto', 2: -1}}), or store it that way",
            da.PerformanceWarning,
            stacklevel=3,
        )
        x = x.rechunk(target)
    return x


def _align_lengths(lengths: Any, batch_chunks: tuple[int, ...], batch: int, steps: int) -> da.Array | None:
    """``lengths`` as an int64 Dask array chunked like ``x`` along B (NumPy input checked now)."""
    if lengths is None:
        return None
    if isinstance(lengths, da.Array):
        if lengths.shape != (batch,):
            raise ValueError(f"lengths must have shape (B,) = ({batch},); got shape {lengths.shape}")
        if lengths.dtype == np.bool_ or not np.issubdtype(lengths.dtype, np.integer):
            raise ValueError(f"lengths must be integers; got dtype {lengths.dtype.name} "
                             "(pass e.g. lengths.astype(np.int64))")
        return lengths.astype(np.int64).rechunk((batch_chunks,))
    checked = validate_lengths(lengths, batch, steps)  # ValueError naming the shape or the bad entry
    assert checked is not None
    return da.from_array(checked, chunks=(batch_chunks,))


def _align_state(name: str, state: Any, shape: tuple[int, int, int], batch_chunks: tuple[int, ...],
                 dtype: np.dtype) -> da.Array | None:
    """``h0``/``c0`` as a Dask array chunked like ``x`` along B, one chunk along axes 0 and 2."""
    if state is None:
        return None
    if not isinstance(state, (np.ndarray, da.Array)):
        raise TypeError(f"{name} must be a NumPy or Dask array of shape (L * D, B, H) = {shape}; "
                        f"got {type(state).__name__}")
    if state.shape != shape:
        raise ValueError(f"{name} must have shape (L * D, B, H) = {shape}; got shape {state.shape}")
    if state.dtype != dtype:
        raise TypeError(f"mixed dtypes: {name} is {state.dtype.name} but x and the LSTM are {dtype.name}; "
                        f"cast with {name}.astype(np.{dtype.name})")
    chunks = ((shape[0],), batch_chunks, (shape[2],))
    if isinstance(state, np.ndarray):
        return da.from_array(state, chunks=chunks)
    return state.rechunk(chunks)


def _weights(layers: Sequence[Sequence[Any]], scatter: bool) -> Any:
    """The layers' parameters as one graph key (a Delayed), or a Future broadcast to every worker."""
    frozen = tuple(tuple(type(p)(*(None if a is None else np.array(a, copy=True) for a in p)) for p in layer)
                   for layer in layers)
    for layer in frozen:
        for p in layer:
            for a in p:
                if a is not None:
                    a.flags.writeable = False
    if scatter:
        try:
            from distributed import default_client

            client = default_client()
        except (ImportError, ValueError) as exc:
            raise TypeError("scatter=True needs an active distributed.Client (the weights are broadcast to its "
                            f"workers); none found: {exc}") from None
        # A one-item list: scatter would otherwise send each layer as a future of its own.
        return client.scatter([frozen], broadcast=True, hash=True)[0]
    return dask.delayed(frozen, name="lstm-weights-" + tokenize(frozen), pure=True, traverse=False)


# ---------------------------------------------------------------------------- in the worker
_backends: dict[tuple[str, int], Backend] = {}
_backends_lock = threading.Lock()


def _thread_budget(threads: int, chunks: int) -> int:
    """Threads per task: the scheduler's threads shared by the tasks that can run at once, at least one."""
    return max(1, threads // max(1, min(threads, chunks)))


def _where() -> tuple[str, int]:
    """``(who, threads)``: the process running this task, and the threads its scheduler runs tasks with."""
    if "distributed" in sys.modules:  # a worker process has imported it; never import it here
        from distributed import get_worker

        try:
            worker = get_worker()
        except ValueError:
            worker = None
        if worker is not None:
            nthreads = int(getattr(getattr(worker, "state", worker), "nthreads", 1))
            return f"dask worker {worker.address}", nthreads
    from dask.system import CPU_COUNT

    threads = dask.config.get("num_workers", None) or CPU_COUNT
    return f"process {os.getpid()} on {socket.gethostname()}", int(threads)


def _takes_num_threads(cls: type) -> bool:
    try:
        return "num_threads" in inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return False


def _worker_backend(name: str, num_threads: int) -> Backend:
    """This process's backend for ``name`` with a budget of ``num_threads`` (created once)."""
    key = (name, num_threads)
    backend = _backends.get(key)
    if backend is None:
        with _backends_lock:
            backend = _backends.get(key)
            if backend is None:
                shared = get_backend(name)  # the registry's errors say why and how to fix it
                cls = type(shared)
                backend = cls(num_threads=num_threads) if _takes_num_threads(cls) else shared
                _backends[key] = backend
    return backend


def _forward_block(
    x: np.ndarray,
    lengths: np.ndarray | None,
    h0: np.ndarray | None,
    c0: np.ndarray | None,
    offset: np.ndarray,
    layers: Any,
    spec: _Spec,
) -> tuple[Any, Any, Any]:
    """One task: the whole stack over one batch chunk of ``b`` sequences.

    Parameters
    ----------
    x : ndarray, shape (T, b, I) (or (b, T, I) with ``spec.batch_first``)
    lengths : ndarray of int64, shape (b,), or None
    h0, c0 : ndarray, shape (L * D, b, H), or None
    offset : ndarray of int64, shape (1,)
        Index of this chunk's first sequence in the whole batch (for error messages).
    layers : tuple over layers of tuples over directions of LSTMParams
    spec : _Spec

    Returns
    -------
    y : ndarray, shape (T, b, D * H) (or (b, T, D * H))
    h_n, c_n : ndarray, shape (L * D, b, H)
    """
    who, scheduler_threads = _where()
    threads = spec.num_threads or _thread_budget(scheduler_threads, spec.chunks)
    try:
        backend = _worker_backend(spec.backend, threads)
    except UnknownBackendError as exc:
        raise UnknownBackendError(
            f"{who} cannot run backend {spec.backend!r}: {exc}. Note that register_backend() registers in "
            "the calling process only: install the backend on every worker as a plugin (entry-point group "
            f"{ENTRY_POINT_GROUP!r}), or register it in every worker process too (e.g. from a distributed "
            "WorkerPlugin's setup)"
        ) from None
    except BackendUnavailableError as exc:
        raise BackendUnavailableError(f"{who} cannot run backend {spec.backend!r}: {exc}") from None
    if lengths is not None and lengths.size:
        bad = np.flatnonzero((lengths < 0) | (lengths > spec.steps))
        if bad.size:
            i = int(bad[0])
            raise ValueError(f"lengths must lie in [0, T] = [0, {spec.steps}]; "
                             f"lengths[{int(offset[0]) + i}] = {int(lengths[i])}")
    if spec.batch_first:
        x = x.swapaxes(0, 1)
    y, h_n, c_n = backend.forward_layers(x, layers, h0, c0, lengths=lengths)
    if spec.batch_first:
        y = y.swapaxes(0, 1)
    return y, h_n, c_n


def _backend_cache() -> dict[tuple[str, int], str]:
    """``{(name, num_threads): repr}`` of the backends this process has created (for tests)."""
    with _backends_lock:
        return {k: f"{type(b).__name__}(num_threads={getattr(b, 'num_threads', None)}) id={id(b)}"
                for k, b in _backends.items()}
