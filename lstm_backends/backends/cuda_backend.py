"""The ``cuda`` backend: ``numba.cuda`` kernels (from the ``numba-cuda`` package).

This module imports only NumPy; numba.cuda and the kernels
(:mod:`lstm_backends.backends._cuda_kernels`) load on first use.  Availability is
checked by asking the CUDA driver directly (see ``_cuda_probe``), so
``list_backends()`` reports the driver's own reason without importing numba.

The backend supplies the base class's device hooks — inputs converted to device arrays,
outputs allocated on the device, results handed back to the host or left on the device —
and two kernels; the flow of every call (validation, ``out=``, the aliasing rule, empty
problems, zeros past each row's length, the stacked / bidirectional composition) is the
base class's.  Host arrays in -> host arrays out; device arrays in (anything with
``__cuda_array_interface__``: Numba device arrays, CuPy arrays, PyTorch CUDA tensors) ->
Numba device arrays out.

Per forward call: ``b_ih + b_hh`` folded once (one launch); the input projection of all
steps is one tiled-GEMM launch with that bias; each step is one tiled-GEMM launch for the
recurrent product (no bias) and one fused gate / cell-state launch, all on one stream,
with no host synchronisation or copy inside the time loop.

Peepholes, ``clip`` and ``input_forget`` run in compile-time variants of the fused gate
kernel (capabilities ``peephole`` and ``clip``; a plain call runs the plain kernel); a
projection (``projection``) adds one tiled-GEMM launch per step, ``h = m @ W_hr.T``, whose
epilogue writes ``h`` and ``y`` for the rows still running.  Non-default ONNX activations
are not implemented here (no ``activations`` capability): such calls are refused.  Training
(``backward``, with every feature above): ``forward_train`` runs the training variant of the
gate kernel, which also writes the tape (it stays on the device); ``backward`` runs per step
one fused pointwise kernel and one tiled GEMM (two more with a projection), then ``dx`` and
every weight gradient as one GEMM over all steps, and fixed-order reductions for the biases
— no atomics.  A streaming ``cell`` call
reuses per-thread device scratch (keyed by shape, dtype and stream), so a warm call with
device arrays and ``out=`` allocates nothing on the device.
"""

from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _dist_version
from typing import Any, ClassVar

import numpy as np

from .._args import BackwardArgs, CellArgs, ForwardArgs, TrainArgs
from .._params import LSTMParams
from .._validation import is_device_array
from ._base import Availability, Backend
from ._cuda_probe import cuda_driver_status, simulator_enabled

__all__ = ["CudaBackend"]


def _cuda() -> Any:
    from numba import cuda

    return cuda


def _k(dtype: np.dtype) -> Any:
    from ._cuda_kernels import kernels

    return kernels(dtype)


def _ptr(a: Any) -> Any:
    cai = getattr(a, "__cuda_array_interface__", None)
    if cai is not None:
        return cai["data"][0]
    ary = getattr(a, "_ary", None)  # simulated device arrays wrap a NumPy array
    return ary.__array_interface__["data"][0] if isinstance(ary, np.ndarray) else id(a)


@dataclass
class _Call:
    """Per-call state: the stream, whether the caller passed device arrays, and (for ``cell``)
    the staging of host inputs in reusable device buffers."""

    stream: Any
    device_io: bool
    scratch: dict | None = None  # per-thread cell scratch; None for forward calls
    staged: int = 0  # host inputs staged so far in this call (each gets its own buffer)
    outputs: int = 0  # host outputs so far in this call
    lengths: dict = field(default_factory=dict)  # id(host lengths) -> (host, device)


class CudaBackend(Backend):
    """GPU backend: tiled shared-memory GEMMs and a fused gate kernel in ``numba.cuda``.

    ``forward``, ``cell`` and ``forward_layers`` take one extra keyword option,
    ``stream=`` (a ``numba.cuda`` stream; the default stream when omitted): every copy
    and launch of the call is queued on it, and with device inputs the call returns
    without waiting for the GPU.
    """

    name: ClassVar[str] = "cuda"
    description: ClassVar[str] = "numba.cuda GPU kernels: tiled GEMMs + fused gate kernel, data stays on the device"
    install_hint: ClassVar[str] = ('pip install "lstm-backends[cuda]" and run on a machine with an NVIDIA GPU '
                                   "and driver (or set NUMBA_ENABLE_CUDASIM=1 for the slow CPU simulator)")
    capabilities: ClassVar[frozenset[str]] = frozenset(
        {"forward", "cell", "backward", "device-arrays", "projection", "peephole", "clip"})
    backward_features: ClassVar[frozenset[str]] = frozenset({"projection", "peephole", "clip"})
    auto_priority: ClassVar[int | None] = 20

    #: threads per block of the gate kernels (x = hidden units, y = batch rows)
    gate_block: ClassVar[tuple[int, int]] = (32, 4)

    def __init__(self) -> None:
        self._local = threading.local()  # per-thread cell scratch: concurrent callers never share it

    @classmethod
    def is_available(cls) -> Availability:
        if importlib.util.find_spec("numba_cuda") is None:
            return Availability(False, "the numba-cuda package is not installed")
        if simulator_enabled():
            return Availability(True, "simulated: NUMBA_ENABLE_CUDASIM=1 runs kernels on the CPU, slowly")
        ok, text = cuda_driver_status()
        return Availability(ok, text if not ok else f"GPU: {text}")

    @classmethod
    def auto_eligible(cls) -> bool:
        return not simulator_enabled()

    @classmethod
    def version(cls) -> str:
        try:
            return _dist_version("numba-cuda")
        except PackageNotFoundError:
            return ""

    @staticmethod
    def to_device(params: Any, stream: Any = 0) -> LSTMParams:
        """Upload parameters once, so later calls (e.g. streaming ``cell``) re-use them.

        Parameters
        ----------
        params : LSTMParams or 4-tuple of host arrays
        stream : numba.cuda stream, optional

        Returns
        -------
        LSTMParams of Numba device arrays (C-contiguous), accepted by ``forward``/``cell``.
        """
        cuda = _cuda()
        return LSTMParams(*(p if is_device_array(p) or p is None
                            else cuda.to_device(np.ascontiguousarray(p), stream=stream) for p in params))

    # ------------------------------------------------------------------ hooks
    def _call_context(self, kind: str, x: Any, options: dict[str, Any]) -> _Call:
        stream = options.pop("stream", None)
        if options:
            raise TypeError(f"backend 'cuda' takes the option stream= only; got {', '.join(map(repr, options))}")
        cuda = _cuda()
        scratch = None
        if kind == "cell":
            scratch = getattr(self._local, "scratch", None)
            if scratch is None:
                scratch = self._local.scratch = {}
        return _Call(cuda.default_stream() if stream is None else stream, is_device_array(x), scratch)

    def _buffer(self, ctx: _Call, role: Any, shape: tuple[int, ...], dtype: np.dtype) -> Any:
        """A device buffer: reused across cell calls on this thread, fresh for forward calls."""
        if ctx.scratch is None:
            return _cuda().device_array(shape, dtype=dtype, stream=ctx.stream)
        key = (role, tuple(shape), np.dtype(dtype).str, _stream_key(ctx.stream))
        buf = ctx.scratch.get(key)
        if buf is None:
            if len(ctx.scratch) > 64:  # bounded: a thread that keeps changing shapes starts over
                ctx.scratch.clear()
            buf = ctx.scratch[key] = _cuda().device_array(shape, dtype=dtype, stream=ctx.stream)
        return buf

    def _own_copy(self, a: Any, ctx: _Call) -> Any:
        """``prepare``'s copy of a weight: a device array of its own (moved once, not per call)."""
        host = a.copy_to_host() if hasattr(a, "copy_to_host") else np.array(
            _cuda().as_cuda_array(a).copy_to_host() if is_device_array(a) else a)
        return _cuda().to_device(np.ascontiguousarray(host), stream=ctx.stream)

    def _input(self, a: Any, ctx: _Call) -> Any:
        if is_device_array(a):
            arr = a if hasattr(a, "copy_to_host") else _cuda().as_cuda_array(a)  # zero-copy view
            if not arr.is_c_contiguous():
                raise ValueError("device arrays must be C-contiguous; pass a contiguous copy")
            return arr
        host = np.ascontiguousarray(a)
        if ctx.scratch is None:
            return _cuda().to_device(host, stream=ctx.stream)
        ctx.staged += 1  # the n-th host input of a cell call reuses the n-th staging buffer
        buf = self._buffer(ctx, ("stage", ctx.staged), host.shape, host.dtype)
        buf.copy_to_device(host, stream=ctx.stream)
        return buf

    def _empty(self, shape: tuple[int, ...], dtype: np.dtype, ctx: _Call) -> Any:
        return _cuda().device_array(shape, dtype=dtype, stream=ctx.stream)

    def _zeros(self, shape: tuple[int, ...], dtype: np.dtype, ctx: _Call) -> Any:
        arr = self._buffer(ctx, ("zeros", shape), shape, dtype)
        _fill(arr, 0, ctx.stream)
        return arr

    def _output(self, a: Any, ctx: _Call) -> Any:
        if ctx.device_io:
            if not is_device_array(a):
                raise TypeError(f"with device inputs, out= must hold device arrays; got {type(a).__name__}")
            return self._input(a, ctx)
        if not isinstance(a, np.ndarray):
            raise TypeError(f"with host inputs, out= must hold numpy.ndarray arrays; got {type(a).__name__}")
        # host outputs: the kernel writes a device array, copied into ``a`` by _hand_back
        ctx.outputs += 1
        return self._buffer(ctx, ("out", ctx.outputs), a.shape, a.dtype)

    def _copy(self, dst: Any, src: Any, ctx: _Call) -> None:
        if _ptr(dst) != _ptr(src):
            dst.copy_to_device(src, stream=ctx.stream)

    def _zero_past_lengths(self, y: Any, lengths: np.ndarray, ctx: _Call) -> None:
        if y.size == 0:
            return
        threads = 256
        blocks = min(1024, (y.size + threads - 1) // threads)
        _k(np.dtype(y.dtype)).zero_past_lengths[blocks, threads, ctx.stream](y, self._lengths(lengths, ctx))

    def _hand_back(self, results: tuple[Any, ...], out: tuple[Any, ...] | None, ctx: _Call) -> tuple[Any, ...]:
        if ctx.device_io:
            return results
        host = []
        for n, arr in enumerate(results):
            if out is not None:
                arr.copy_to_host(out[n], stream=ctx.stream)
                host.append(out[n])
            else:
                host.append(arr.copy_to_host(stream=ctx.stream))
        ctx.stream.synchronize()
        return tuple(host)

    def _lengths(self, lengths: np.ndarray, ctx: _Call) -> Any:
        """``lengths`` on the device, uploaded once per call."""
        cached = ctx.lengths.get(id(lengths))
        if cached is None or cached[0] is not lengths:
            cached = ctx.lengths[id(lengths)] = (lengths, _cuda().to_device(lengths, stream=ctx.stream))
        return cached[1]

    # ------------------------------------------------------------------ kernels
    def _folded_bias(self, ctx: _Call, b_ih: Any, b_hh: Any, dtype: np.dtype) -> Any:
        bias = self._buffer(ctx, "bias", b_ih.shape, dtype)
        threads = 256
        _k(dtype).add[(b_ih.shape[0] + threads - 1) // threads, threads, ctx.stream](b_ih, b_hh, bias)
        return bias

    def _prologue(self, args: ForwardArgs) -> tuple[Any, Any, Any, Any, tuple, tuple]:
        """What every forward pass queues first: the input projection of all T*B rows (bias folded
        in), the recurrent-product scratch, the state copied into h_n/c_n (which then hold the
        running state) and the lengths on the device."""
        ctx: _Call = args.context
        k = _k(args.dtype)
        steps, batch, hidden = args.steps, args.batch, args.hidden_size
        four_h = 4 * hidden
        xp = _cuda().device_array((steps, batch, four_h), dtype=args.dtype, stream=ctx.stream)
        bias = self._folded_bias(ctx, args.b_ih, args.b_hh, args.dtype)
        _matmul(k, args.x.reshape(steps * batch, args.input_size), args.w_ih, xp.reshape(steps * batch, four_h),
                ctx.stream, bias)
        rec = _cuda().device_array((batch, four_h), dtype=args.dtype, stream=ctx.stream)
        self._copy(args.h_n, args.h0, ctx)
        self._copy(args.c_n, args.c0, ctx)
        return k, xp, rec, self._lengths(args.lengths, ctx), *_gate_launch(batch, hidden, self.gate_block)

    def _forward(self, args: ForwardArgs) -> None:
        """Queue one layer/direction on the call's stream (h_n, c_n hold the running state)."""
        ctx: _Call = args.context
        k, xp, rec, d_lens, grid, block = self._prologue(args)
        if args.plain:
            for s in range(int(args.lengths.max())):  # launches only: no host synchronisation in here
                _matmul(k, args.h_n, args.w_hh, rec, ctx.stream)
                k.lstm_gates[grid, block, ctx.stream](s, args.reverse, xp, rec, d_lens, args.h_n, args.c_n, args.y)
            return
        v, peep, limit, m = self._variant(args, ctx)
        project = args.w_hr is not None
        proj_grid, proj_block = _tile_grid(k, args.batch, args.proj_size)
        for s in range(int(args.lengths.max())):
            _matmul(k, args.h_n, args.w_hh, rec, ctx.stream)  # (B, S) @ (4H, S).T
            v.lstm_gates[grid, block, ctx.stream](s, args.reverse, xp, rec, d_lens, args.h_n, args.c_n, args.y,
                                                  peep, limit, m)
            if project:  # h = m @ W_hr.T, written with y for the rows still running
                k.matmul_nt_proj[proj_grid, proj_block, ctx.stream](s, args.reverse, d_lens, m, args.w_hr,
                                                                    args.h_n, args.y)

    def _forward_train(self, args: TrainArgs) -> None:
        """``_forward`` with the training variant of the gate kernel, which also writes the tape
        (gates, cells, clipped) at each valid step: still one GEMM and one fused launch per step
        (plus the projection's GEMM)."""
        from ._cuda_kernels import train_variants

        ctx: _Call = args.context
        k, xp, rec, d_lens, grid, block = self._prologue(args)
        v = train_variants(np.dtype(args.dtype), peephole=args.w_peep is not None, clip=args.clip is not None,
                           input_forget=args.input_forget, project=args.w_hr is not None)
        peep, limit, m = self._variant_args(args, ctx)
        clipped = args.clipped if args.clipped is not None else self._buffer(ctx, "flags", (1, 1, 1), np.bool_)
        proj_grid, proj_block = _tile_grid(k, args.batch, args.proj_size)
        for s in range(int(args.lengths.max())):
            _matmul(k, args.h_n, args.w_hh, rec, ctx.stream)
            v.lstm_gates[grid, block, ctx.stream](s, args.reverse, xp, rec, d_lens, args.h_n, args.c_n, args.y, peep,
                                                  limit, m, args.gates, args.cells, clipped)
            if args.w_hr is not None:
                k.matmul_nt_proj[proj_grid, proj_block, ctx.stream](s, args.reverse, d_lens, m, args.w_hr,
                                                                    args.h_n, args.y)

    def _backward(self, args: BackwardArgs) -> None:
        """BPTT on the call's stream, no host synchronisation and no atomics.

        Per step (from the last down): [with a projection: ``bwd_dh_total`` (dL/dh of the step)
        and ``dm = dh @ W_hr`` (``matmul_nn``)], the fused pointwise backward ``lstm_bwd`` (dz of
        the step from dh, dc and the saved activations; dc carried in ``dc0``), then the recurrent
        gradient ``dh = dz @ W_hh`` for the rows that ran the step (``matmul_nn_rows``, carried in
        ``dh0``).  After the loop, over all T * B rows at once: ``dx = dz @ W_ih`` (one GEMM),
        ``dW_ih = dzᵀ x`` and ``dW_hh = dzᵀ h_prev`` (one ``matmul_tn`` each, ``h_prev``
        rebuilt from the tape by ``h_prev``), ``db`` (``col_sum_*``, a fixed-order reduction),
        and ``dW_hr = dhᵀ m``, ``dw_peep`` likewise.
        """
        from ._cuda_kernels import train_variants

        ctx: _Call = args.context
        tape = args.tape
        stream, dtype = ctx.stream, np.dtype(args.dtype)
        k = _k(dtype)
        steps, batch, hidden, width = args.steps, args.batch, args.hidden_size, args.state_size
        rows, four_h = steps * batch, 4 * hidden
        project, peephole = tape.w_hr is not None, tape.w_peep is not None

        def scratch(shape: tuple[int, ...], zero: bool = False) -> Any:
            arr = _cuda().device_array(shape, dtype=dtype, stream=stream)
            if zero:  # entries at steps past a row's length are never written, but are summed over
                _fill(arr, 0, stream)
            return arr

        dgates = scratch((steps, batch, four_h), zero=not tape.full)  # dz at every [t, b]
        m_all = scratch((steps, batch, hidden), zero=not tape.full)  # o * tanh(c) at every [t, b]
        dg_step = scratch((batch, four_h))
        dpeep = (scratch((steps, batch, 3 * hidden), zero=not tape.full) if peephole
                 else self._buffer(ctx, "placeholder3", (1, 1, 1), dtype))
        peep = tape.w_peep if peephole else self._buffer(ctx, "placeholder", (1, 1), dtype)
        clipped = tape.clipped if tape.clipped is not None else self._buffer(ctx, "flags", (1, 1, 1), np.bool_)
        v = train_variants(dtype, peephole=peephole, clip=tape.clip is not None, input_forget=tape.input_forget,
                           project=project)
        self._copy(args.dh0, args.dh_n, ctx)  # dh0, dc0 carry dL/dh, dL/dc from step to step
        self._copy(args.dc0, args.dc_n, ctx)
        d_lens = self._lengths(tape.lengths, ctx)
        grid, block = _gate_launch(batch, hidden, self.gate_block)
        dh_in = args.dh0
        if project:
            dh_step, dm = scratch((batch, width)), scratch((batch, hidden))
            dh_all = scratch((steps, batch, width), zero=not tape.full)
            proj_grid, proj_block = _gate_launch(batch, width, self.gate_block)
            dh_in = dm
        for s in reversed(range(int(tape.lengths.max()))):  # launches only
            if project:
                k.bwd_dh_total[proj_grid, proj_block, stream](s, tape.reverse, d_lens, args.dy, args.dh0, dh_step,
                                                              dh_all)
                _matmul_nn(k, dh_step, tape.w_hr, dm, stream)
            v.lstm_bwd[grid, block, stream](s, tape.reverse, d_lens, tape.gates, tape.cells, clipped, tape.c0,
                                            args.dy, dh_in, args.dc0, peep, dg_step, dgates, m_all, dpeep)
            _matmul_nn(k, dg_step, tape.w_hh, args.dh0, stream, step=s, lengths=d_lens)
        flat = dgates.reshape(rows, four_h)
        _matmul_nn(k, flat, tape.w_ih, args.dx.reshape(rows, args.input_size), stream)
        _matmul_tn(k, flat, tape.x.reshape(rows, args.input_size), args.dw_ih, stream)
        if project:  # h_t = m_t @ W_hr.T, all steps in one GEMM
            h_src = scratch((steps, batch, width))
            _matmul(k, m_all.reshape(rows, hidden), tape.w_hr, h_src.reshape(rows, width), stream)
        else:
            h_src = m_all
        h_prev = scratch((steps, batch, width))
        k.h_prev[_flat_launch(h_prev.size) + (stream,)](tape.reverse, d_lens, h_src, tape.h0, h_prev)
        _matmul_tn(k, flat, h_prev.reshape(rows, width), args.dw_hh, stream)
        _col_sum(k, flat, args.db, stream)
        if project:
            _matmul_tn(k, dh_all.reshape(rows, width), m_all.reshape(rows, hidden), args.dw_hr, stream)
        if peephole:
            _col_sum(k, dpeep.reshape(rows, 3 * hidden), args.dw_peep.reshape(3 * hidden), stream)

    def _accumulate(self, dst: Any, src: Any, ctx: _Call) -> None:
        if dst.size == 0:
            return
        flat_dst, flat_src = dst.reshape(dst.size), src.reshape(src.size)
        _k(np.dtype(dst.dtype)).add[_flat_launch(dst.size) + (ctx.stream,)](flat_dst, flat_src, flat_dst)

    def _variant(self, args: ForwardArgs | CellArgs, ctx: _Call) -> tuple[Any, Any, Any, Any]:
        """The gate kernels compiled for this call's features, and their extra arguments: the
        peepholes (or a 1x1 placeholder), the clip bound (0 when unused) and the (B, H) scratch
        for ``o * tanh(c)`` (a placeholder without a projection)."""
        from ._cuda_kernels import gate_variants

        v = gate_variants(np.dtype(args.dtype), peephole=args.w_peep is not None, clip=args.clip is not None,
                          input_forget=args.input_forget, project=args.w_hr is not None)
        return (v, *self._variant_args(args, ctx))

    def _variant_args(self, args: ForwardArgs | CellArgs, ctx: _Call) -> tuple[Any, Any, Any]:
        """The extra arguments of the full-cell gate kernels (see ``_variant``); the 1x1
        placeholder is fetched only when a feature is off."""
        placeholder = (self._buffer(ctx, "placeholder", (1, 1), args.dtype)
                       if args.w_peep is None or args.w_hr is None else None)
        peep = args.w_peep if args.w_peep is not None else placeholder
        limit = np.dtype(args.dtype).type(0 if args.clip is None else args.clip)
        m = self._buffer(ctx, "m", (args.batch, args.hidden_size), args.dtype) if args.w_hr is not None else placeholder
        return peep, limit, m

    def _cell(self, args: CellArgs) -> None:
        """Two products into per-thread scratch, then one fused launch writing (h_out, c_out)
        (and with a projection one more product, ``h_out = m @ W_hr.T``)."""
        ctx: _Call = args.context
        k = _k(args.dtype)
        shape = (args.batch, 4 * args.hidden_size)
        xp = self._buffer(ctx, "xp", shape, args.dtype)
        rec = self._buffer(ctx, "rec", shape, args.dtype)
        _matmul(k, args.x, args.w_ih, xp, ctx.stream, self._folded_bias(ctx, args.b_ih, args.b_hh, args.dtype))
        _matmul(k, args.h, args.w_hh, rec, ctx.stream)  # reads all of h before h_out (maybe h) is written
        grid, block = _gate_launch(args.batch, args.hidden_size, self.gate_block)
        if args.plain:
            k.cell_gates[grid, block, ctx.stream](xp, rec, args.c, args.h_out, args.c_out)
            return
        v, peep, limit, m = self._variant(args, ctx)
        v.cell_gates[grid, block, ctx.stream](xp, rec, args.c, args.h_out, args.c_out, peep, limit, m)
        if args.w_hr is not None:
            _matmul(k, m, args.w_hr, args.h_out, ctx.stream)


def _stream_key(stream: Any) -> Any:
    """The CUDA stream handle (0 for the default stream; the simulator runs every launch at
    once, so its streams need no distinguishing)."""
    if not hasattr(stream, "handle"):
        return "simulator"
    handle = stream.handle
    value = getattr(handle, "value", handle)  # ctypes c_void_p, or a cuda-python CUstream
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return repr(handle)


def _tile_grid(k: Any, rows: int, cols: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """(grid, block) of a tiled GEMM writing a (rows, cols) output: one TILE x TILE block per tile."""
    tile = k.matmul_tile
    return ((cols + tile - 1) // tile, (rows + tile - 1) // tile), (tile, tile)


def _matmul(k: Any, a: Any, w: Any, out: Any, stream: Any, bias: Any = None) -> None:
    """out = a @ w.T (+ bias) on ``stream``."""
    grid, block = _tile_grid(k, *out.shape)
    if bias is None:
        k.matmul_nt[grid, block, stream](a, w, out)
    else:
        k.matmul_nt_bias[grid, block, stream](a, w, bias, out)


def _matmul_nn(k: Any, a: Any, w: Any, out: Any, stream: Any, step: int | None = None, lengths: Any = None) -> None:
    """out = a @ w on ``stream``; with ``step``, only the rows m with step < lengths[m] are written."""
    grid, block = _tile_grid(k, *out.shape)
    if step is None:
        k.matmul_nn[grid, block, stream](a, w, out)
    else:
        k.matmul_nn_rows[grid, block, stream](step, lengths, a, w, out)


def _matmul_tn(k: Any, a: Any, b: Any, out: Any, stream: Any) -> None:
    """out = a.T @ b on ``stream`` (a weight gradient: one fixed-order sum over all rows)."""
    grid, block = _tile_grid(k, *out.shape)
    k.matmul_tn[grid, block, stream](a, b, out)


def _col_sum(k: Any, a: Any, out: Any, stream: Any) -> None:
    """out[n] = sum over m of a[m, n] in a fixed order: chunks of rows (their number set by the
    shape alone) summed in parallel, then the partial sums in order."""
    rows, cols = a.shape
    chunks = max(1, min(64, rows // 256))
    partial = _cuda().device_array((chunks, cols), dtype=a.dtype, stream=stream)
    threads = min(128, cols)
    k.col_sum_partial[((cols + threads - 1) // threads, chunks), threads, stream](a, partial)
    k.col_sum_final[(cols + threads - 1) // threads, threads, stream](partial, out)


def _gate_launch(batch: int, hidden: int, block: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
    # no more threads than work in either direction (the simulator pays for idle ones)
    block = (min(block[0], hidden), min(block[1], batch))
    grid = ((hidden + block[0] - 1) // block[0], (batch + block[1] - 1) // block[1])
    return grid, block


def _flat_launch(size: int) -> tuple[int, int]:
    """(blocks, threads) of a grid-stride kernel over ``size`` elements (size > 0)."""
    threads = min(256, size)  # no idle threads for tiny arrays (the simulator pays for each)
    return min(1024, (size + threads - 1) // threads), threads


def _fill(arr: Any, value: float, stream: Any) -> None:
    if arr.size == 0:
        return
    _k(np.dtype(arr.dtype)).fill[_flat_launch(arr.size) + (stream,)](arr.reshape(arr.size), arr.dtype.type(value))
