"""The ``cuda`` backend: ``numba.cuda`` kernels (from the ``numba-cuda`` package).

This module imports only NumPy; numba.cuda and the kernels
(:mod:`lstm_backends.backends._cuda_kernels`) load on first use.  Availability is
checked by asking the CUDA driver directly (see ``_cuda_probe``), so
``list_backends()`` reports the driver's own reason without importing numba.

Design: inputs and weights go to the device once per call (or stay there: pass
device arrays, e.g. from :meth:`CudaBackend.to_device`); the input projection of all
steps is one tiled-GEMM launch; each step is one tiled-GEMM launch for the
recurrent product and one fused gate / cell-state launch, all on one stream, with
no host synchronisation or copy inside the time loop.  Host arrays in -> host
arrays out; device arrays in (anything with ``__cuda_array_interface__``: Numba
device arrays, CuPy arrays, PyTorch CUDA tensors) -> Numba device arrays out.
"""

from __future__ import annotations

import importlib.util
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _dist_version
from typing import Any, ClassVar

import numpy as np

from .._params import LSTMParams
from .._validation import check_cell_out, check_forward_out, prepare_cell, prepare_forward
from ._base import Availability, Backend
from ._cuda_probe import cuda_driver_status, simulator_enabled

__all__ = ["CudaBackend"]


def _cuda() -> Any:
    from numba import cuda

    return cuda


def _k(dtype: np.dtype) -> Any:
    from ._cuda_kernels import kernels

    return kernels(dtype)


def _is_device(a: Any) -> bool:
    """Device array: ``__cuda_array_interface__`` (CuPy, PyTorch, Numba), or a Numba
    device array of the simulator (which has no interface)."""
    if a is None or isinstance(a, np.ndarray):
        return False
    return hasattr(a, "__cuda_array_interface__") or hasattr(a, "copy_to_host")


def _ptr(a: Any) -> Any:
    cai = getattr(a, "__cuda_array_interface__", None)
    return cai["data"][0] if cai is not None else id(a)


class CudaBackend(Backend):
    """GPU backend: tiled shared-memory GEMMs and a fused gate kernel in ``numba.cuda``."""

    name: ClassVar[str] = "cuda"
    description: ClassVar[str] = "numba.cuda GPU kernels: tiled GEMMs + fused gate kernel, data stays on the device"
    install_hint: ClassVar[str] = ('pip install "lstm-backends[cuda]" and run on a machine with an NVIDIA GPU '
                                   "and driver (or set NUMBA_ENABLE_CUDASIM=1 for the slow CPU simulator)")
    auto_priority: ClassVar[int | None] = 20

    #: threads per block of the gate kernel (x = hidden units, y = batch rows)
    gate_block: ClassVar[tuple[int, int]] = (32, 4)

    def __init__(self) -> None:
        # cell()'s per-row lengths (all 1), uploaded once per batch size instead of every step
        self._ones: dict[int, Any] = {}

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

    # ------------------------------------------------------------------ helpers
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
        return LSTMParams(*(p if _is_device(p) else cuda.to_device(np.ascontiguousarray(p), stream=stream)
                            for p in params))

    @staticmethod
    def _convert(stream: Any) -> Any:
        cuda = _cuda()

        def convert(a: Any) -> Any:
            if _is_device(a):
                arr = a if hasattr(a, "copy_to_host") else cuda.as_cuda_array(a)  # zero-copy view
                if not arr.is_c_contiguous():
                    raise ValueError("device arrays must be C-contiguous; pass a contiguous copy")
                return arr
            return cuda.to_device(np.ascontiguousarray(a), stream=stream)

        return convert

    @staticmethod
    def _factories(stream: Any) -> tuple[Any, Any]:
        cuda = _cuda()

        def empty(shape: tuple[int, ...], dtype: np.dtype) -> Any:
            return cuda.device_array(shape, dtype=dtype, stream=stream)

        def zeros(shape: tuple[int, ...], dtype: np.dtype) -> Any:
            return _device_zeros(shape, dtype, stream)

        return empty, zeros

    # ------------------------------------------------------------------ public API
    def forward(self, x: Any, params: Any, h0: Any = None, c0: Any = None, *, lengths: Any = None,
                reverse: bool = False, out: Any = None, stream: Any = None) -> tuple[Any, Any, Any]:
        """As :meth:`Backend.forward`, plus device arrays and a stream.

        Parameters
        ----------
        x, params, h0, c0, lengths, reverse : see :meth:`lstm_backends.Backend.forward`
            Arrays may be host (NumPy) or device arrays (``__cuda_array_interface__``).
        out : tuple (y, h_n, c_n), optional
            Host arrays when ``x`` is a host array, device arrays otherwise.
        stream : numba.cuda stream, optional
            Every copy and launch is queued on it (default stream when omitted).  With
            device inputs the call returns without waiting for the GPU.

        Returns
        -------
        y : (T, B, H); h_n, c_n : (B, H)
            NumPy arrays for host ``x``, Numba device arrays for device ``x``.
        """
        cuda = _cuda()
        stream = cuda.default_stream() if stream is None else stream
        device_io = _is_device(x)
        empty, zeros = self._factories(stream)
        args = prepare_forward(
            x, params, h0, c0, lengths=lengths, reverse=reverse, out=out if device_io else None,
            dtypes=self.dtypes, convert=self._convert(stream), empty=empty, zeros=zeros, host=False,
        )
        if out is not None and not device_io:  # host outputs, checked like the other backends'
            check_forward_out(out, args.steps, args.batch, args.hidden_size, args.dtype, host=True,
                              inputs=(x, *params, h0, c0))
        if device_io and out is not None:
            convert = self._convert(stream)
            args.y, args.h_n, args.c_n = convert(args.y), convert(args.h_n), convert(args.c_n)
        h_n, c_n = args.h_n, args.c_n
        _fill(args.y, 0, stream)
        if args.steps and args.batch:
            self._run_layer(args.x, args.params, args.h0, args.c0, args.lengths, args.reverse, args.y, 0,
                            h_n, c_n, stream)
        else:
            h_n.copy_to_device(args.h0, stream=stream)
            c_n.copy_to_device(args.c0, stream=stream)
        if device_io:
            return args.y, h_n, c_n
        return _to_host((args.y, h_n, c_n), out, stream)

    def cell(self, x: Any, h: Any, c: Any, params: Any, *, out: Any = None,
             stream: Any = None) -> tuple[Any, Any]:
        """As :meth:`Backend.cell`, plus device arrays and a stream.

        With device arrays and ``out=(h, c)`` the state is updated in place on the device;
        pass parameters from :meth:`to_device` so that nothing is uploaded per step.
        """
        cuda = _cuda()
        stream = cuda.default_stream() if stream is None else stream
        device_io = _is_device(x)
        empty, zeros = self._factories(stream)
        args = prepare_cell(x, h, c, params, out=out if device_io else None, dtypes=self.dtypes,
                            convert=self._convert(stream), empty=empty, zeros=zeros, host=False)
        if out is not None and not device_io:  # host outputs, checked like the other backends'
            check_cell_out(out, args.batch, args.hidden_size, args.dtype, host=True, x=x, h=h, c=c, params=params)
        if device_io and out is not None:
            convert = self._convert(stream)
            args.h_out, args.c_out = convert(args.h_out), convert(args.c_out)
        if args.batch:
            k = _k(args.dtype)
            hidden = args.hidden_size
            xp = cuda.device_array((1, args.batch, 4 * hidden), dtype=args.dtype, stream=stream)
            rec = cuda.device_array((args.batch, 4 * hidden), dtype=args.dtype, stream=stream)
            _matmul(k, args.x, args.w_ih, args.b_ih, args.b_hh, xp.reshape(args.batch, 4 * hidden), stream)
            zero_bias = zeros((4 * hidden,), args.dtype)
            _matmul(k, args.h, args.w_hh, zero_bias, zero_bias, rec, stream)
            # the gate kernel updates (h, c) in place: copy the state into the outputs first
            if _ptr(args.h_out) != _ptr(args.h):
                args.h_out.copy_to_device(args.h, stream=stream)
            if _ptr(args.c_out) != _ptr(args.c):
                args.c_out.copy_to_device(args.c, stream=stream)
            ones = self._ones.get(args.batch)
            if ones is None:
                ones = self._ones[args.batch] = cuda.to_device(np.ones(args.batch, np.int64), stream=stream)
            # the kernel's y output is h_out itself, viewed as (1, B, H): it writes h_new twice
            y = args.h_out.reshape(1, args.batch, hidden)
            _gates(k, 0, False, xp, rec, ones, args.h_out, args.c_out, y, 0, stream, self.gate_block)
        if device_io:
            return args.h_out, args.c_out
        return _to_host((args.h_out, args.c_out), out, stream)

    def forward_layers(self, x: Any, layers: Any, h0: Any = None, c0: Any = None, *,
                       lengths: Any = None, stream: Any = None) -> tuple[Any, Any, Any]:
        """Stacked, bidirectional LSTM with every intermediate kept on the device.

        Directions write straight into their half of one (T, B, 2H) buffer, which is the
        next layer's input; only the final outputs return to the host (for host input).
        """
        cuda = _cuda()
        stream = cuda.default_stream() if stream is None else stream
        device_io = _is_device(x)
        num_dirs = len(layers[0])
        convert = self._convert(stream)
        empty, zeros = self._factories(stream)
        layer_input = x
        h_all = c_all = None
        for layer_index, layer in enumerate(layers):
            outs = None
            for d, p in enumerate(layer):
                kidx = layer_index * num_dirs + d
                args = prepare_forward(layer_input, p, None if h0 is None else h0[kidx],
                                       None if c0 is None else c0[kidx], lengths=lengths, dtypes=self.dtypes,
                                       convert=convert, empty=empty, zeros=zeros, host=False)
                hidden = args.hidden_size
                if h_all is None:
                    shape = (len(layers) * num_dirs, args.batch, hidden)
                    h_all, c_all = empty(shape, args.dtype), empty(shape, args.dtype)
                if outs is None:
                    outs = zeros((args.steps, args.batch, num_dirs * hidden), args.dtype)
                if args.steps and args.batch:
                    self._run_layer(args.x, args.params, args.h0, args.c0, args.lengths, d == 1, outs, d * hidden,
                                    h_all[kidx], c_all[kidx], stream)
                else:
                    h_all[kidx].copy_to_device(args.h0, stream=stream)
                    c_all[kidx].copy_to_device(args.c0, stream=stream)
            layer_input = outs
        if device_io:
            return layer_input, h_all, c_all
        return _to_host((layer_input, h_all, c_all), None, stream)

    # ------------------------------------------------------------------ the time loop
    def _run_layer(self, x: Any, params: LSTMParams, h0: Any, c0: Any, lengths: np.ndarray,
                   reverse: bool, y: Any, y_offset: int, h: Any, c: Any, stream: Any) -> None:
        """Queue one layer/direction on ``stream``: y[..., y_offset:y_offset+H], h, c written.

        x (T, B, I) device; h, c (B, H) device outputs (the running state); y (T, B, >= H)
        already zeroed by the caller (rows past their length are never written).
        """
        cuda = _cuda()
        steps, batch, in_size = x.shape
        hidden = h.shape[1]
        dtype = np.dtype(x.dtype)
        k = _k(dtype)
        max_len = int(lengths.max(initial=0))
        d_lens = cuda.to_device(lengths, stream=stream)
        xp = cuda.device_array((steps, batch, 4 * hidden), dtype=dtype, stream=stream)
        _matmul(k, x.reshape(steps * batch, in_size), params.w_ih, params.b_ih, params.b_hh,
                xp.reshape(steps * batch, 4 * hidden), stream)
        zero_bias = _device_zeros((4 * hidden,), dtype, stream)
        rec = cuda.device_array((batch, 4 * hidden), dtype=dtype, stream=stream)
        h.copy_to_device(h0, stream=stream)
        c.copy_to_device(c0, stream=stream)
        for s in range(max_len):  # launches only: no host synchronisation in here
            _matmul(k, h, params.w_hh, zero_bias, zero_bias, rec, stream)
            _gates(k, s, reverse, xp, rec, d_lens, h, c, y, y_offset, stream, self.gate_block)


def _matmul(k: Any, a: Any, w: Any, bias_a: Any, bias_b: Any, out: Any, stream: Any) -> None:
    """out = a @ w.T + bias_a + bias_b on ``stream``."""
    tile = k.matmul_tile
    rows, cols = out.shape
    grid = ((cols + tile - 1) // tile, (rows + tile - 1) // tile)
    k.matmul_nt[grid, (tile, tile), stream](a, w, bias_a, bias_b, out)


def _gates(k: Any, step: int, reverse: bool, xp: Any, rec: Any, lengths: Any, h: Any, c: Any, y: Any,
           y_offset: int, stream: Any, block: tuple[int, int]) -> None:
    batch, hidden = h.shape
    # no more threads than work in either direction (the simulator pays for idle ones)
    block = (min(block[0], hidden), min(block[1], batch))
    grid = ((hidden + block[0] - 1) // block[0], (batch + block[1] - 1) // block[1])
    k.lstm_gates[grid, block, stream](step, reverse, xp, rec, lengths, h, c, y, y_offset)


def _device_zeros(shape: tuple[int, ...], dtype: np.dtype, stream: Any) -> Any:
    arr = _cuda().device_array(shape, dtype=dtype, stream=stream)
    _fill(arr, 0, stream)
    return arr


def _fill(arr: Any, value: float, stream: Any) -> None:
    if arr.size == 0:
        return
    k = _k(np.dtype(arr.dtype))
    flat = arr.reshape(arr.size) if arr.is_c_contiguous() else None
    if flat is None:
        raise ValueError("internal: fill needs a contiguous array")
    threads = 256
    blocks = min(1024, (arr.size + threads - 1) // threads)
    k.fill[blocks, threads, stream](flat, arr.dtype.type(value))


def _to_host(arrays: tuple[Any, ...], out: Any, stream: Any) -> tuple[np.ndarray, ...]:
    results = []
    for n, arr in enumerate(arrays):
        if out is not None:
            arr.copy_to_host(out[n], stream=stream)
            results.append(out[n])
        else:
            results.append(arr.copy_to_host(stream=stream))
    stream.synchronize()
    return tuple(results)
