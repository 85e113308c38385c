"""The ``numba`` backend: compiled CPU kernels, BLAS for the matrix products.

This module imports only NumPy; Numba and the kernels
(:mod:`lstm_backends.backends._numba_kernels`) load on first use, so listing
backends stays cheap and importing the package compiles nothing.

Threads: the matrix products run in BLAS (OpenBLAS via SciPy, through Numba's
``np.dot``) with ``num_threads`` threads; the compiled time loop and the fused
gate update run on the calling thread.  No Numba parallel region is used, so
Numba's threads and BLAS's never spin against each other and no threading layer
(``workqueue`` aborts on concurrent use) is ever involved: calls from many
Python threads at once are safe, and each releases the GIL.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import threading
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _dist_version
from typing import Any, ClassVar

import numpy as np

from .._args import CellArgs, ForwardArgs
from ._base import Availability, Backend

__all__ = ["NumbaBackend", "warmup"]


def _use_rowwise(batch: int, hidden: int) -> bool:
    """Few rows: a compiled matrix-vector product per row beats a BLAS GEMM call per step
    (whose thread wake-up costs ~60 us).  Crossover measured on a 2-core EPYC (Zen 3)."""
    return batch <= 2 or batch * hidden <= 1536


_state = threading.local()


def _kernels() -> Any:
    from . import _numba_kernels

    return _numba_kernels


_controller_lock = threading.Lock()
_controller: Any = None


def _blas_limit(threads: int | None) -> Any:
    """Context manager limiting BLAS to ``threads`` (a no-op context when None)."""
    global _controller
    if threads is None:
        return contextlib.nullcontext()
    with _controller_lock:
        if _controller is None:
            import scipy.linalg  # noqa: F401 - make sure SciPy's BLAS (used by numba) is loaded
            from threadpoolctl import ThreadpoolController

            _controller = ThreadpoolController()
    return _controller.limit(limits=threads, user_api="blas")


class NumbaBackend(Backend):
    """Numba ``@njit`` kernels: the time loop compiled, BLAS for the products, fused gate math.

    Parameters
    ----------
    num_threads : int, optional
        BLAS threads used for the matrix products during ``forward`` (the calling
        thread runs the rest; ``cell`` leaves BLAS's setting alone).  Default: leave
        BLAS's setting as it is (``OPENBLAS_NUM_THREADS``, or all cores).  Change later
        with :meth:`set_num_threads`.
    """

    name: ClassVar[str] = "numba"
    description: ClassVar[str] = "Numba-compiled CPU kernels: compiled time loop, BLAS products, fused gate update"
    install_hint: ClassVar[str] = 'pip install "lstm-backends" (numba is a dependency; reinstall it)'
    capabilities: ClassVar[frozenset[str]] = frozenset({"forward", "cell"})
    auto_priority: ClassVar[int | None] = 10

    def __init__(self, num_threads: int | None = None) -> None:
        self.num_threads: int | None = None
        if num_threads is None and os.environ.get("LSTM_BACKENDS_NUM_THREADS"):
            num_threads = int(os.environ["LSTM_BACKENDS_NUM_THREADS"])
        if num_threads is not None:
            self.set_num_threads(num_threads)

    def set_num_threads(self, num_threads: int | None) -> None:
        """Set the BLAS threads used inside calls (``None``: leave BLAS's own setting).

        Parameters
        ----------
        num_threads : int or None
        """
        if num_threads is not None and (not isinstance(num_threads, (int, np.integer)) or num_threads < 1):
            raise ValueError(f"num_threads must be a positive integer or None; got {num_threads!r}")
        self.num_threads = None if num_threads is None else int(num_threads)

    @classmethod
    def is_available(cls) -> Availability:
        if importlib.util.find_spec("numba") is None:
            return Availability(False, "numba is not installed")
        return Availability(True, "")

    @classmethod
    def version(cls) -> str:
        try:
            return _dist_version("numba")
        except PackageNotFoundError:
            return ""

    def _forward(self, args: ForwardArgs) -> None:
        k = _kernels()
        bias = args.b_ih + args.b_hh
        kernel = k.forward_layer_rowwise if _use_rowwise(args.batch, args.hidden_size) else k.forward_layer
        with _blas_limit(self.num_threads):
            kernel(args.x, args.w_ih, args.w_hh, bias, args.h0, args.c0, args.lengths, args.reverse,
                   args.y, args.h_n, args.c_n)

    def _cell(self, args: CellArgs) -> None:
        k = _kernels()
        shape = (args.batch, 4 * args.hidden_size)
        scratch = getattr(_state, "scratch", {})
        key = (shape, args.dtype)
        buffers = scratch.get(key)
        if buffers is None:  # per-thread scratch, reused by later calls of the same shape
            buffers = (np.empty(shape, args.dtype), np.empty(shape, args.dtype),
                       np.empty(4 * args.hidden_size, args.dtype), np.empty(args.hidden_size, args.dtype))
            scratch = {key: buffers}  # keep one shape per thread: bounded memory
            _state.scratch = scratch
        gates, xp, bias, c_tmp = buffers
        np.add(args.b_ih, args.b_hh, out=bias)
        # No thread limit here: a step is two small products, and setting BLAS's thread
        # count through threadpoolctl costs more than the step itself.
        k.cell_step(args.x, args.h, args.c, args.w_ih, args.w_hh, bias, args.h_out, args.c_out, gates, xp, c_tmp)


def warmup(dtypes: tuple[Any, ...] = (np.float32, np.float64)) -> None:
    """Compile (or load from Numba's on-disk cache) every kernel for the given dtypes.

    Call once at start-up to take compilation out of the first real call; with a
    warm cache this only loads machine code.

    Parameters
    ----------
    dtypes : tuple of numpy dtypes
    """
    k = _kernels()
    rng = np.random.default_rng(0)
    for dtype in dtypes:
        steps, batch, in_size, hidden = 2, 2, 3, 2
        x = rng.standard_normal((steps, batch, in_size)).astype(dtype)
        w_ih = rng.standard_normal((4 * hidden, in_size)).astype(dtype)
        w_hh = rng.standard_normal((4 * hidden, hidden)).astype(dtype)
        bias = np.zeros(4 * hidden, dtype)
        state = np.zeros((batch, hidden), dtype)
        lengths = np.full(batch, steps, np.int64)
        outs = (np.empty((steps, batch, hidden), dtype), np.empty_like(state), np.empty_like(state))
        for kernel in (k.forward_layer, k.forward_layer_rowwise):
            kernel(x, w_ih, w_hh, bias, state, state, lengths, False, *outs)
        scratch = np.empty((batch, 4 * hidden), dtype)
        k.cell_step(x[0], state, state, w_ih, w_hh, bias, outs[1], outs[2], scratch, scratch.copy(),
                    np.empty(hidden, dtype))
