"""The ``numba`` backend: compiled CPU kernels with their own AVX-512 / AVX2 micro-kernel.

This module imports only NumPy; Numba and the kernels
(the package :mod:`lstm_backends.backends._numba`) load on first use, so listing backends stays
cheap and importing the package compiles nothing.

Paths (``describe_path`` says which one a call takes; ``kind=`` forces one, for tests):

``serial``
    one thread: pack the weights, then per step the input product, the recurrent product and
    the fused gate update.
``team``
    hidden split over a team of up to ``num_threads`` workers in one Numba parallel region per
    call, a spin barrier per step (hidden behind the part of the step that needs no partner
    data), the input product inside each step.
``serial+bulk`` / ``team+bulk``
    the same with the input product of every step done first, as one compute-bound GEMM:
    better at small batches, where it would otherwise stream W_ih once per step.

Every path sums every gate pre-activation in one canonical order, so all of them (and the
cell) give bitwise the same results, for any team size and thread count.

Training (``forward_train`` / ``backward``): ``forward_train`` is the forward kernel of the same
path with the gate update also storing the tape (bitwise ``forward``'s outputs); ``backward`` runs
on a team of up to ``num_threads`` workers (one for the ``serial`` kinds): per step the fused
pointwise backward and ``dh = dz W_hh`` split over the columns, then ``dx`` and the weight
gradients as products over the rows of all steps.  Projection, peepholes, ``clip`` and
``input_forget`` are differentiated; the gradients are bitwise the same for every kind, team
size and thread count.

Threads: ``num_threads`` (or ``LSTM_BACKENDS_NUM_THREADS``; default Numba's
``NUMBA_NUM_THREADS``) is the budget of a backend instance; a call never keeps more threads
busy (no BLAS runs inside the kernels).  The team forms by a handshake inside the region: the
first worker waits a bounded time for the others, then the team is whoever arrived, so a call
never deadlocks, whatever the threading layer, nesting or load.  Under the ``workqueue``
layer, which aborts the process when two threads launch parallel regions at once, parallel
calls are serialised by a lock.

GEMM: the own micro-kernel by default (``gemm="auto"`` / ``"own"``); ``gemm="mkl"`` (or
``LSTM_BACKENDS_GEMM=mkl``) runs the products on MKL's packed GEMM with the sequential MKL
(extra ``mkl``).
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import os
import threading
import time
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _dist_version
from typing import Any, ClassVar

import numpy as np

from .._args import BackwardArgs, CellArgs, ForwardArgs, Tape, TrainArgs
from .._params import LSTMParams
from ._base import Availability, Backend
from ._compile_notice import cache_dir
from ._compile_notice import quietly as _quietly
from ._compile_notice import watched as _watched
from ._memory import aligned_empty as _aligned_empty

__all__ = ["KINDS", "NumbaBackend", "auto_kind", "cache_dir", "describe_threads", "last_team_size", "warmup",
           "warmup_steps"]

#: kinds that ``NumbaBackend(kind=...)`` / ``LSTM_BACKENDS_NUMBA_KIND`` may force
KINDS = ("auto", "serial", "serial+bulk", "team", "team+bulk")
GEMMS = ("auto", "own", "mkl")

_PEEP, _CLIP, _IFORGET = 1, 2, 4  # gate feature bits of the kernels
#: ``auto`` runs sequences of at most this many steps and rows as cell steps (no packing)
SHORT_STEPS, SHORT_BATCH = 2, 16


@functools.cache
def _kernels() -> Any:
    from . import _numba

    return _numba




def _lanes(dtype: np.dtype) -> int:
    return 64 // np.dtype(dtype).itemsize


def auto_kind(batch: int, hidden: int, budget: int, dtype: Any = np.float32) -> str:
    """The dispatch rule (measured on a 2-vCPU AMD EPYC Zen 5, float32, see docs/performance).

    * one thread, or ``H <= 64`` (at most 4 panels: exchanging h every step costs more than the
      halved weight stream): ``serial``;
    * otherwise a team: with the bulk input projection at ``B <= 8`` (W_ih is streamed once
      instead of once per step) and at ``B <= 16, H >= 1024``; the input product inside the
      step elsewhere (the projection buffer would go to DRAM and back).
    """
    bulk = batch <= 8 or (batch <= 16 and hidden >= 1024)
    if budget < 2 or hidden <= 64:
        return "serial+bulk" if bulk else "serial"
    return "team+bulk" if bulk else "team"


_tls = threading.local()
_CELL_PLANS: dict = {}  # (B, I, H, dtype, projection, budget, kind) -> workers of a cell call
def _workspace(dtype: np.dtype, n_float: int = 0, n_int: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """This thread's scratch for ``dtype``, grown to at least the given sizes (scratch only:
    nothing survives between calls; weights are packed on every call)."""
    cache = getattr(_tls, "ws", None)
    if cache is None:
        cache = _tls.ws = {}
    ws = cache.get(dtype)
    if ws is None or ws[0].shape[0] < n_float or ws[1].shape[0] < n_int:
        old_f, old_i = ws if ws is not None else (np.empty(0, dtype), np.empty(0, np.int64))
        nf = max(n_float, old_f.shape[0], 4096)
        ni = max(n_int, old_i.shape[0], 4096)
        ws = (_aligned_empty(nf, dtype), np.zeros(ni, np.int64))
        cache[dtype] = ws
    return ws


class _Threads:
    """Numba's threading layer, found on first use; parallel launches go through here."""

    lock = threading.Lock()
    layer: str | None = None
    get_n: Any = None
    set_n: Any = None

    @classmethod
    def start(cls) -> str:
        if cls.layer is None:
            with cls.lock:
                if cls.layer is None:
                    import numba
                    from numba.np.ufunc import parallel

                    parallel._launch_threads()
                    # the raw setters (the public ones validate and re-check the pool: ~2 us each)
                    cls.get_n = getattr(parallel, "_get_num_threads", None) or numba.get_num_threads
                    cls.set_n = getattr(parallel, "_set_num_threads", None) or numba.set_num_threads
                    cls.layer = numba.threading_layer()
        return cls.layer

    @classmethod
    def launch(cls, kernels: Any, fn: int, zero: Any, argp: int, n: int) -> None:
        """Run ``n`` workers in one parallel region with exactly ``n`` of Numba's threads."""
        cls.call(n, kernels.run_team, fn, zero, argp, n)

    @classmethod
    def call(cls, n: int, kernel: Any, *args: Any) -> Any:
        """Call a parallel ``kernel`` with exactly ``n`` of Numba's threads (one at a time under
        ``workqueue``)."""
        layer = cls.layer or cls.start()
        old = cls.get_n()
        if old != n:
            cls.set_n(n)
        try:
            if layer == "workqueue":  # aborts the process on concurrent regions: one at a time
                with cls.lock:
                    return kernel(*args)
            return kernel(*args)
        finally:
            if old != n:
                cls.set_n(old)


@functools.cache
def _default_budget() -> int:
    """Numba's ``NUMBA_NUM_THREADS`` (fixed once Numba is imported)."""
    import numba

    return int(numba.config.NUMBA_NUM_THREADS)


class NumbaBackend(Backend):
    """Numba kernels on their own register-blocked micro-kernel, fused gate update, a thread team.

    Parameters
    ----------
    num_threads : int, optional
        Thread budget of this instance: a call keeps at most this many threads busy.  Default:
        ``LSTM_BACKENDS_NUM_THREADS``, else Numba's ``NUMBA_NUM_THREADS``.  Change it later with
        :meth:`set_num_threads`.
    kind : {"auto", "serial", "serial+bulk", "team", "team+bulk"}, optional
        Force a kernel path (tests, experiments); default ``LSTM_BACKENDS_NUMBA_KIND``, else
        ``"auto"`` (:meth:`describe_path` says what ``auto`` picks).  Every kind gives bitwise
        the same results.
    gemm : {"auto", "own", "mkl"}, optional
        Matrix products: the own micro-kernel (``auto``, ``own``) or MKL's packed GEMM
        (``mkl``: needs the ``mkl`` extra).  Which is faster depends on the CPU (on AMD CPUs
        MKL may run a generic code path): ``lstm-backends info`` says which, measured on this
        machine (the last ``lstm-backends bench``, else a short probe).  Default
        ``LSTM_BACKENDS_GEMM``, else ``auto``.
    """

    name: ClassVar[str] = "numba"
    description: ClassVar[str] = ("Numba-compiled CPU kernels: own AVX-512/AVX2 micro-kernel, fused gate update, "
                                  "hidden-split thread team")
    install_hint: ClassVar[str] = 'pip install "lstm-backends" (numba is a dependency; reinstall it)'
    capabilities: ClassVar[frozenset[str]] = frozenset({"forward", "cell", "backward", "projection", "peephole",
                                                         "clip", "njit", "bf16", "bf16x3"})
    backward_features: ClassVar[frozenset[str]] = frozenset({"projection", "peephole", "clip"})
    auto_priority: ClassVar[int | None] = 10

    def __init__(self, num_threads: int | None = None, *, kind: str | None = None, gemm: str | None = None) -> None:
        self.num_threads: int | None = None
        if num_threads is None and os.environ.get("LSTM_BACKENDS_NUM_THREADS"):
            num_threads = int(os.environ["LSTM_BACKENDS_NUM_THREADS"])
        self.set_num_threads(num_threads)
        kind = kind or os.environ.get("LSTM_BACKENDS_NUMBA_KIND") or "auto"
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}; got {kind!r}")
        gemm = gemm or os.environ.get("LSTM_BACKENDS_GEMM") or "auto"
        if gemm not in GEMMS:
            raise ValueError(f"gemm must be one of {', '.join(GEMMS)}; got {gemm!r}")
        if gemm == "mkl":
            from . import _mkl

            if not _mkl.register():
                from .._errors import BackendUnavailableError

                raise BackendUnavailableError(
                    f"numba backend with gemm='mkl': MKL cannot be used ({_mkl.info()}); install it with "
                    'pip install "lstm-backends[mkl]" (x86-64), or use gemm="own" (the default)')
        self.kind = kind
        self.gemm = gemm
        self._solo_until = 0.0
        self._misses = 0

    @property
    def jit(self) -> Any:
        """The kernels for your own ``@numba.njit`` code: the module :mod:`lstm_backends.jit`
        (``prepare``, ``cell``, ``forward``; capability ``njit``)."""
        from .. import jit

        return jit

    def set_num_threads(self, num_threads: int | None) -> None:
        """Set the thread budget (``None``: Numba's ``NUMBA_NUM_THREADS``).

        Parameters
        ----------
        num_threads : int or None
        """
        if num_threads is not None and (not isinstance(num_threads, (int, np.integer)) or num_threads < 1):
            raise ValueError(f"num_threads must be a positive integer or None; got {num_threads!r}")
        self.num_threads = None if num_threads is None else int(num_threads)

    @property
    def budget(self) -> int:
        """Threads a call may keep busy (``num_threads``, or Numba's thread count)."""
        limit = _default_budget()
        return max(1, min(self.num_threads or limit, limit))

    @classmethod
    def test_variants(cls) -> dict[str, dict[str, Any]]:
        """Every kernel path forced (each kind; MKL's GEMM where MKL can be loaded)."""
        variants: dict[str, dict[str, Any]] = {k: {"kind": k} for k in KINDS[1:]}
        from . import _mkl

        if _mkl.available():
            variants["mkl"] = {"gemm": "mkl"}
        return variants

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

    # ------------------------------------------------------------------ dispatch
    def _plan(self, batch: int, hidden: int, dtype: Any) -> tuple[str, int]:
        """(kind, workers launched) of a forward call."""
        budget = self.budget
        kind = self.kind if self.kind != "auto" else auto_kind(batch, hidden, budget, dtype)
        if kind.startswith("serial") or time.monotonic() < self._solo_until:
            return kind.replace("team", "serial"), 1
        panels = -(-hidden // _lanes(dtype))
        return kind, max(1, min(budget, panels, 64))

    def _plan_backward(self) -> int:
        """Workers launched for a backward call: 1 for a forced serial kind, else a team whenever the
        budget allows (the weight-gradient GEMMs dominate and split over any team)."""
        if self.kind.startswith("serial") or self.budget < 2 or time.monotonic() < self._solo_until:
            return 1
        return min(self.budget, 64)

    def _short(self, steps: int, batch: int) -> bool:
        """Whether ``auto`` runs a forward of this size (every row full) as cell steps."""
        return steps <= SHORT_STEPS and batch <= SHORT_BATCH and self.kind == "auto" and self.gemm != "mkl"

    def describe_path(self, batch: int, hidden: int, dtype: Any = np.float32, *, steps: int | None = None,
                      input_size: int | None = None, cell: bool = False, precision: str | None = None) -> str:
        """Which kernel path a call of this size takes, in words.

        Parameters
        ----------
        batch, hidden : int
            ``B`` and ``H``.
        dtype : numpy dtype
        steps : int, optional
            ``T`` of a forward call (a short sequence runs as cell steps); default: long.
        input_size : int, optional
            ``I`` (the cell's choice between one worker and a team depends on it); default ``H``.
        cell : bool
            Describe a ``cell`` call instead of a forward call.
        precision : {None, "bf16", "bf16x3"}
            Describe a call on params prepared in that mode.

        Returns
        -------
        str
            e.g. ``"team+bulk x2, own micro-kernel"``, ``"cell x2, own micro-kernel"``.
        """
        if precision is not None:   # (lstm-backends info says more: bf16_path)
            from ._numba.ir import BF16_FEATURES

            has = ", ".join(BF16_FEATURES) or "no bf16"
            from ._numba.amx import bf16_kernel

            f32 = np.dtype(np.float32)
            kernel = bf16_kernel()
            if cell and precision == "bf16" and kernel == "fma":   # the float32 cell on rounded operands
                kind, workers = "cell", self._cell_workers(batch, input_size or hidden, hidden, f32, False)
            else:   # (a cell: a one-step forward)
                kind, workers = self._plan(batch, hidden, f32)
            how = _BF16_HOW[kernel] + (", h split in three" if precision == "bf16x3" else "")
            return (f"{precision}: {kind} x{workers}, {how} (with a projection: portable path x1; "
                    f"this CPU has: {has})")
        dtype = np.dtype(dtype)
        short = steps is not None and self._short(steps, batch)
        if cell or short:
            workers = self._cell_workers(batch, hidden if input_size is None else input_size, hidden, dtype, False)
            mkl = " (gemm='mkl' has no cell kernel)" if self.gemm == "mkl" else ""
            return f"{'cell' if cell else 'cell steps'} x{workers}, own micro-kernel{mkl}"
        kind, workers = self._plan(batch, hidden, dtype)
        return f"{kind} x{workers}, {'MKL packed GEMM' if self.gemm == 'mkl' else 'own micro-kernel'}"

    # ------------------------------------------------------------------ kernels
    def _prepare(self, params: LSTMParams, precision: str | None, ctx: Any) -> Any:
        """Private writeable copies of the weights (the kernels are compiled for writeable arrays;
        nobody else holds these) and the panels the forward workers would pack on every call."""
        from ._numba.panels import panels

        own = LSTMParams(*(None if a is None else np.array(a) for a in params))
        if precision is not None:   # the split weights' panels of the mode (modes.py)
            from ._numba.amx import bf16_kernel
            from ._numba.modes import mode_panels, split_weights, x3_panels

            if own.w_hr is not None:   # the portable path
                return {"params": own, "mode_panels": mode_panels(own, precision == "bf16x3")}
            if precision == "bf16x3":   # the float32 paths' panels (_mode_forward_float32)
                data = {"params": own, "x3_panels": x3_panels(own)}
                key = "x3_panels"
            else:
                rounded = own._replace(w_ih=split_weights(own.w_ih, False), w_hh=split_weights(own.w_hh, False))
                data = {"params": own, "mode_panels": mode_panels(own, False), "bf16_params": rounded}
                key = "mode_panels"
            if bf16_kernel() != "fma":
                data["bf16_pairs"] = _pair_panels(data[key])
            return data
        return {"params": own, "panels": panels(own.w_ih, own.w_hh, own.b_ih, own.b_hh, own.w_hr, own.w_ih.dtype)}

    def _mode_data(self, args: Any) -> dict:
        """The data of a precision-mode call's weights: what this backend's ``prepare`` made, or the
        same made now for params another backend prepared (``_prepare``)."""
        return args.prepared if args.prepared is not None else self._prepare(args.params, args.precision, None)

    def _mode_forward_portable(self, args: ForwardArgs) -> None:
        """A precision mode on the portable path (``_numba/modes.py``, one thread): x split once, the
        weights' split panels from ``prepare``."""
        from ._numba.microkernels import MRMAX
        from ._numba.modes import mode_forward_entry, scratch_size, split_rows

        three = args.precision == "bf16x3"
        w_ih, w_hh, bias, w_hr = self._mode_data(args)["mode_panels"]
        H, S = args.hidden_size, args.state_size
        if args.h_n is not args.h0:
            args.h_n[...] = args.h0
        if args.c_n is not args.c0:
            args.c_n[...] = args.c0
        y = args.y if args.y.flags.c_contiguous else np.empty(args.y.shape, np.float32)
        mr = MRMAX   # rows per block (the micro-kernel holds them in registers, AVX2's narrow one too)
        flags, clip = _features(args)
        w_peep = args.w_peep if args.w_peep is not None else np.zeros((0, H), np.float32)
        _watched(("precision-mode forward", np.dtype(np.float32)), mode_forward_entry, split_rows(args.x, three),
                 w_ih, w_hh, bias, w_hr, w_peep, np.zeros(64, np.float32), args.h_n, args.c_n,
                 np.ascontiguousarray(args.lengths, np.int64), y, bool(args.reverse), flags, clip, 3 if three else 1,
                 mr, np.empty(scratch_size(mr, H, S, three), np.float32))
        if y is not args.y:
            args.y[...] = y

    @staticmethod
    def _use_prepared(args: Any) -> None:
        """Point ``args`` at the private copies of params this backend prepared (as in ``_prepare``)."""
        if args.prepared is not None:
            for name, a in zip(LSTMParams._fields, args.prepared["params"]):
                if a is not None:
                    setattr(args, name, a)

    def _forward(self, args: ForwardArgs) -> None:
        self._use_prepared(args)
        if args.precision is not None:
            if args.w_hr is None:   # both modes without a projection: the float32 kernels
                self._mode_forward_float32(args)
            else:
                self._mode_forward_portable(args)
            return
        if args.full and self._short(args.steps, args.batch):
            self._forward_by_cells(args)
            return
        self._run(args, (0, 0, 0))

    def _forward_train(self, args: TrainArgs) -> None:
        # the forward kernel of the same path, its gate update also storing the tape: y, h_n, c_n
        # bitwise those of forward (short sequences included: their cell steps are bitwise the
        # packed paths)
        self._use_prepared(args)
        clipped = 0 if args.clipped is None else args.clipped.ctypes.data
        self._run(args, (args.gates.ctypes.data, args.cells.ctypes.data, clipped))

    def _mode_forward_float32(self, args: ForwardArgs) -> None:
        """The precision modes on the float32 forward paths (team, bulk; the own micro-kernel or the
        pair kernels).  ``bf16``: the weights' panels and x rounded to bfloat16 once, h0 too, and
        every new h rounded by the gate update where it becomes the next step's operand (``ROUNDH``;
        y gets it unrounded).  ``bf16x3``: x as ``[hi | hi | lo]``, the weights split once
        (``modes.x3_panels``), h0 and every new h in three blocks per gate panel (``SPLIT3``,
        ``modes.three_blocks``): each product a chain over the three.  Products are float32 FMA
        chains of exact bfloat16 products (or the same products on ``vdpbf16ps`` / AMX tiles): the
        mode's arithmetic.  h_n is then the unrounded h of each row's last step, taken from y (h0
        for rows of length 0)."""
        from ._numba.amx import bf16_kernel
        from ._numba.modes import split_rows, three_blocks

        three = args.precision == "bf16x3"
        data = self._mode_data(args)
        panels = data["x3_panels" if three else "mode_panels"]
        how = bf16_kernel()
        if how != "fma":   # the products on vdpbf16ps (bf16.py) or AMX tiles (amx.py): bfloat16 pairs
            panels = data["bf16_pairs"] if "bf16_pairs" in data else _pair_panels(panels)   # (kernel forced later)
        h0 = np.array(args.h0)   # (h_n may be h0 itself)
        run = copy.copy(args)
        run.x = split_rows(args.x, three)
        if three:   # h in three blocks; the worker's final h (split) goes to a scratch
            run.h0 = three_blocks(h0, False)
            run.h_n = np.empty_like(run.h0)
        else:
            run.h0 = split_rows(h0, False)
        self._run(run, (0, 0, 0), panels=panels, round_h=True, products=None if how == "fma" else how,
                  split3=three)
        lengths = np.asarray(args.lengths)
        last = np.zeros_like(lengths) if args.reverse else np.maximum(lengths - 1, 0)
        rows = np.arange(args.batch)
        args.h_n[...] = np.where((lengths > 0)[:, None], args.y[last, rows], h0)

    def _run(self, args: ForwardArgs, tape: tuple[int, int, int], panels: Any = None, round_h: bool = False,
             products: str | None = None, split3: bool = False) -> None:
        if panels is not None:   # a precision mode's rounded panels: on the own micro-kernel
            _watched(("forward", args.dtype), self._run_kernels, args, tape, panels, round_h, products, split3)
            return
        _watched(("forward" if self.gemm != "mkl" else "MKL forward", args.dtype), self._run_kernels, args, tape)

    def _run_kernels(self, args: ForwardArgs, tape: tuple[int, int, int], panels: Any = None,
                     round_h: bool = False, products: str | None = None, split3: bool = False) -> None:
        k = _kernels()
        dtype = args.dtype
        kind, workers = self._plan(args.batch, args.hidden_size, dtype)
        flags, clip = _features(args)
        flags |= (k.ROUNDH if round_h else 0) | (k.SPLIT3 if split3 else 0)
        dummy = _dummy(dtype)
        gemm = products or ("mkl" if self.gemm == "mkl" and panels is None else "own")
        fn = k.worker(dtype, gemm).address
        head = (args.x, args.w_ih, args.w_hh, args.b_ih, args.b_hh,
                dummy if args.w_hr is None else args.w_hr, dummy if args.w_peep is None else args.w_peep,
                args.h0, args.c0, args.lengths, args.h_n, args.c_n, *_address_strides(args.y, dtype), args.reverse,
                flags, clip, kind.endswith("bulk"))
        packed = args.prepared is not None and self.gemm != "mkl"   # (MKL packs its own way)
        if panels is not None:
            packed = True
        elif packed:
            panels = args.prepared["panels"]
        tail = (*tape, *(panels if packed else _NO_PANELS[dtype]), packed)
        self._execute(k, k.forward_entry, head, tail, dtype, fn, workers)

    def _execute(self, k: Any, entry: Any, head: tuple, tail: tuple, dtype: np.dtype, fn: int, workers: int) -> None:
        """``entry(*head, workers, WAIT_TICKS, wsf, wsi, fn, serial, *tail)`` on this thread's workspace
        (grown when the entry asks for more), then, unless serial (the entry ran the worker itself), the
        prepared call on a team of ``workers`` (its argument block at the start of ``wsi``, the sync
        words right after it: ``NARGS`` and ``GARGS`` are equal)."""
        serial = workers == 1
        wsf, wsi = _workspace(dtype)
        for _ in range(2):
            need_f, need_i = entry(*head, workers, k.WAIT_TICKS, wsf, wsi, fn, serial, *tail)
            if not need_f:
                break
            wsf, wsi = _workspace(dtype, need_f, need_i)
        if serial:
            _tls.last_team = 1
            return
        _Threads.launch(k, fn, dtype.type(0), wsi.ctypes.data, workers)
        team = int(wsi[k.NARGS + k.W_TEAM])
        _tls.last_team = team
        if team < workers:
            # The team did not form in time (a busy machine, a nested region): the first
            # worker did everything, after waiting for the others.  Run serial for a while
            # rather than pay that wait on every call: 20 ms after one miss, doubling up to
            # 1 s while misses repeat.
            self._misses += 1
            self._solo_until = time.monotonic() + min(0.01 * 2 ** self._misses, 1.0)
        else:
            self._misses = 0

    def _backward(self, args: BackwardArgs) -> None:
        _watched(("backward", args.tape.dtype), self._backward_kernels, args)

    def _backward_kernels(self, args: BackwardArgs) -> None:
        k = _kernels()
        tape = args.tape
        dtype = tape.dtype
        workers = self._plan_backward()
        flags, _ = _features(tape)
        dummy = _dummy(dtype)
        clipped = _NO_MASK if tape.clipped is None else tape.clipped.view(np.uint8)
        head = (tape.x, tape.gates, tape.cells, clipped, tape.h0, tape.c0, tape.w_ih, tape.w_hh,
                dummy if tape.w_hr is None else tape.w_hr, dummy if tape.w_peep is None else tape.w_peep,
                tape.lengths, tape.reverse, flags, *_address_strides(args.dy, dtype),
                args.dh_n, args.dc_n, args.dx, args.dh0, args.dc0, args.dw_ih, args.dw_hh, args.db,
                dummy if args.dw_hr is None else args.dw_hr, dummy if args.dw_peep is None else args.dw_peep)
        self._execute(k, k.backward_entry, head, (), dtype, k.bwd_worker(dtype).address, workers)

    def _forward_by_cells(self, args: ForwardArgs) -> None:
        """A short sequence (``auto``: ``T <= SHORT_STEPS``, ``B <= SHORT_BATCH``, every row
        full) as cell steps: packing the weights would cost more than the steps.  The cell is
        bitwise a one-step forward, so this is bitwise the packed paths."""
        h, c = args.h0, args.c0
        order = range(args.steps - 1, -1, -1) if args.reverse else range(args.steps)
        for t in order:
            self._cell(CellArgs(args.x[t], h, c, args.w_ih, args.w_hh, args.b_ih, args.b_hh, args.h_n, args.c_n,
                                args.batch, args.input_size, args.hidden_size, args.dtype, args.context,
                                w_hr=args.w_hr, w_peep=args.w_peep, proj_size=args.proj_size, clip=args.clip,
                                input_forget=args.input_forget))
            args.y[t] = args.h_n
            h, c = args.h_n, args.c_n

    def _cell_workers(self, batch: int, input_size: int, hidden: int, dtype: Any, projection: bool) -> int:
        """Workers of a cell call: 1 (``cell_entry``) or a team (``cell_team_entry`` and the cell workers).

        ``auto``: a team when there are two panels per worker and the weights are big enough
        (``4H (I + H)`` elements from 64 Ki on: below that a launch costs more than the halved
        weight stream saves); forced kinds follow their forward path (``serial*`` / ``team*``).
        A projection always runs on one worker.
        """
        key = (batch, input_size, hidden, dtype, projection, self.budget, self.kind)
        workers = _CELL_PLANS.get(key)
        if workers is None:  # the rule, once per shape (a streaming loop asks it every step)
            budget = self.budget
            panels = -(-hidden // _lanes(dtype))
            workers = max(1, min(budget, panels // 2, 64))
            if (projection or budget < 2 or panels < 4 or self.kind.startswith("serial")
                    or (self.kind == "auto" and 4 * hidden * (input_size + hidden) < (64 << 10))):
                workers = 1
            if len(_CELL_PLANS) > 256:
                _CELL_PLANS.clear()
            _CELL_PLANS[key] = workers
        return workers

    def _cell(self, args: CellArgs) -> None:
        self._use_prepared(args)
        if args.precision is None:
            workers = self._cell_workers(args.batch, args.input_size, args.hidden_size, args.dtype,
                                         args.w_hr is not None)
            _watched(("cell" if workers == 1 else "team cell", args.dtype), self._cell_kernels, args, workers)
            return
        from ._numba.amx import bf16_kernel

        if args.precision == "bf16" and args.w_hr is None and bf16_kernel() == "fma":
            # the float32 cell on rounded operands; h_out unrounded
            from ._numba.modes import split_rows

            rounded = self._mode_data(args)["bf16_params"]
            w_ih, w_hh = rounded.w_ih, rounded.w_hh
            run = copy.copy(args)
            run.x, run.h, run.w_ih, run.w_hh = split_rows(args.x, False), split_rows(args.h, False), w_ih, w_hh
            run.precision = run.prepared = None
            self._cell(run)
            return
        # one step of the mode's sequence kernel (the pairs' forward worker, or the portable path)
        self._forward(ForwardArgs(
            x=args.x[None], w_ih=args.w_ih, w_hh=args.w_hh, b_ih=args.b_ih, b_hh=args.b_hh, h0=args.h,
            c0=args.c, lengths=np.ones(args.batch, np.int64), reverse=False,
            y=np.empty((1, args.batch, args.state_size), np.float32), h_n=args.h_out, c_n=args.c_out, steps=1,
            batch=args.batch, input_size=args.input_size, hidden_size=args.hidden_size, dtype=args.dtype,
            w_hr=args.w_hr, w_peep=args.w_peep, proj_size=args.proj_size, clip=args.clip,
            input_forget=args.input_forget, precision=args.precision, prepared=args.prepared))

    def _cell_kernels(self, args: CellArgs, workers: int) -> None:
        k = _kernels()
        dtype = args.dtype
        flags, clip = _features(args)
        dummy = _DUMMIES[dtype]
        w_peep = dummy if args.w_peep is None else args.w_peep
        scratch = _cell_scratch(dtype)
        for _ in range(2):  # a second time only when the scratch was too small
            if workers > 1:  # the entry prepares and runs the cell workers in the team region
                need = _Threads.call(workers, k.cell_team_entry, args.x, args.h, args.c, args.w_ih, args.w_hh,
                                     args.b_ih, args.b_hh, w_peep, args.h_out, args.c_out, flags, clip, scratch,
                                     _workspace(dtype)[1], workers, k.cell_worker(dtype).address)
            else:
                need = k.cell_entry(args.x, args.h, args.c, args.w_ih, args.w_hh, args.b_ih, args.b_hh,
                                    dummy if args.w_hr is None else args.w_hr, w_peep, args.h_out, args.c_out, flags,
                                    clip, scratch)
            if not need:
                return
            scratch = _cell_scratch(dtype, need)


_LAYER_COST = {
    "omp": "concurrent calls from several Python threads run side by side; a parallel launch costs ~1.5 us",
    "tbb": "concurrent calls from several Python threads run side by side (one task arena)",
    "workqueue": "parallel calls are serialised by a lock (concurrent calls would abort the process); "
                 "a parallel launch costs ~125 us: install tbb or use omp for concurrent callers",
}


#: ``describe_path``'s words for the bf16 mode's products (``amx.bf16_kernel``)
_BF16_HOW = {"amx": "AMX tiles on bfloat16 pairs", "pairs": "vdpbf16ps on bfloat16 pairs",
             "fma": "own micro-kernel on rounded operands"}


def _pair_panels(panels: tuple) -> tuple:
    """``(w_ih, w_hh, bias, w_hr)`` panels of rounded weights with the weights as bfloat16 pairs."""
    from ._numba.bf16 import pair_panels

    w_ih, w_hh, bias, w_hr = panels
    return (pair_panels(w_ih), pair_panels(w_hh), bias, w_hr)


def bf16_path() -> str:
    """What computes the precision modes here, and which bfloat16 instructions this CPU has."""
    from ._numba import amx
    from ._numba.amx import HAS_AMX, bf16_kernel, permission
    from ._numba.bf16 import HAS_DP
    from ._numba.ir import BF16_FEATURES

    has = ", ".join(BF16_FEATURES) or "neither amx-bf16 nor avx512bf16"
    kernel = bf16_kernel()
    how = {"amx": "AMX tiles (tdpbf16ps) over bfloat16 pair panels" + ("" if HAS_AMX else ", emulated (forced)"),
           "pairs": "vdpbf16ps over bfloat16 pair panels" + ("" if HAS_DP else ", emulated (forced)"),
           "fma": "float32 FMA chains of bfloat16-rounded operands"}[kernel]
    if HAS_AMX and kernel != "amx":
        how += " (AMX " + ("switched off" if permission() else f"refused by the OS: {amx.REFUSED}") + ")"
    return (f"bf16 and bf16x3 on the float32 kernels (teams, bulk input product), their products as {how}; "
            f"projections on the portable path (one thread); this CPU has: {has}")


def describe_threads() -> list[str]:
    """Lines for ``lstm-backends info``: threading layer, thread budget, GEMM path and their costs.

    Starts Numba's thread pool (that is what selects the threading layer).  Which GEMM is faster here
    is measured, not stated: ``lstm-backends info`` adds :func:`lstm_backends._probe.mkl_advice`."""
    import numba

    from . import _mkl

    layer = _Threads.start()
    be = NumbaBackend()
    isa = "AVX-512" if _kernels().has_avx512() else "AVX2/SSE (no AVX-512 on this CPU)"
    lines = [
        f"threading layer: {layer} -- {_LAYER_COST.get(layer, 'unknown layer')}",
        f"thread budget: {be.budget} per backend instance (NumbaBackend(num_threads=n) or "
        f"LSTM_BACKENDS_NUM_THREADS; Numba has {numba.config.NUMBA_NUM_THREADS} threads); no BLAS threads run "
        "inside the kernels",
        f"GEMM path: {'MKL packed GEMM (LSTM_BACKENDS_GEMM=mkl)' if be.gemm == 'mkl' else 'own micro-kernel'} "
        f"({isa}); MKL, opt-in with gemm='mkl' / LSTM_BACKENDS_GEMM=mkl: "
        f"{_mkl.info() if _mkl.available() else 'not usable: ' + _mkl.info()}",
        f"paths: B=1 H=256 -> {be.describe_path(1, 256)}; B=16 H=256 -> {be.describe_path(16, 256)}; "
        f"B=64 H=512 -> {be.describe_path(64, 512)}",
        f"precision modes bf16 / bf16x3: {bf16_path()}",
    ]
    return lines


def last_team_size() -> int:
    """Workers that ran the last forward call of this thread (1: serial, or a team that did not
    form); diagnostics for tests and benchmarks."""
    return int(getattr(_tls, "last_team", 0))


def _features(args: ForwardArgs | CellArgs | Tape) -> tuple[int, float]:
    flags = (_PEEP if args.w_peep is not None else 0) | (_CLIP if args.clip is not None else 0) \
        | (_IFORGET if args.input_forget else 0)
    return flags, float(args.clip) if args.clip is not None else 0.0


_DUMMIES = {np.dtype(np.float32): np.zeros((0, 0), np.float32), np.dtype(np.float64): np.zeros((0, 0), np.float64)}


_NO_MASK = np.zeros((0, 0, 0), np.uint8)
#: forward_entry's packed-weights arguments when the call has none (one compiled signature per dtype)
_NO_PANELS = {dt: (np.zeros((0, 0, 0), dt), np.zeros((0, 0, 0), dt), np.zeros((0, 0), dt), np.zeros((0, 0, 0), dt))
              for dt in (np.dtype(np.float32), np.dtype(np.float64))}


def _dummy(dtype: np.dtype) -> np.ndarray:
    """A (0, 0) array standing for an absent w_hr / w_peep (one compiled signature per dtype)."""
    return _DUMMIES[dtype]


def _address_strides(a: np.ndarray, dtype: np.dtype) -> tuple[int, int, int]:
    """(address, strides of the first two axes in elements of ``dtype``) of a (T, B, S) array whose
    last axis is contiguous (y / dy, possibly a view inside a wider array)."""
    isz = dtype.itemsize
    return a.ctypes.data, a.strides[0] // isz, a.strides[1] // isz


def _cell_scratch(dtype: np.dtype, n: int = 0) -> np.ndarray:
    cache = getattr(_tls, "cell", None)
    if cache is None:
        cache = _tls.cell = {}
    s = cache.get(dtype)
    if s is None or s.shape[0] < n:
        s = cache[dtype] = _aligned_empty(max(n, 4096), dtype)
    return s


def warmup_steps(dtypes: Any = (np.float32, np.float64), *, training: bool = False,
                 precision: Any = ()) -> list[tuple[str, Any]]:
    """The steps of :func:`warmup`: ``(label, run)`` pairs, each ``run()`` compiling (or loading) one
    kernel family of one dtype on a tiny problem, without the first-use notice.

    Parameters
    ----------
    dtypes : numpy dtype or sequence of them
        ``float32`` and/or ``float64``.
    training : bool
        Also the training kernels (``forward_train`` shares the forward kernels; ``backward`` has its own).
    precision : sequence of {"bf16", "bf16x3"}
        Also these precision modes' kernels: forward (serial and team, with a projection: the portable
        path) and cell on weights prepared in the mode, with this CPU's bf16 products (``bf16_path``).

    Returns
    -------
    list of (str, callable)
    """
    from ..testing import random_problem

    if isinstance(dtypes, (str, np.dtype, type)):
        dtypes = (dtypes,)
    steps: list[tuple[str, Any]] = []
    for dtype in (np.dtype(d) for d in dtypes):
        if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise ValueError(f"warmup: the numba backend computes in float32 and float64; got {dtype}")
        p = random_problem(2, 2, 3, 20, dtype=dtype, seed=0)
        q = random_problem(1, 2, 3, 64, dtype=dtype, seed=0)  # 4 panels or more: the team cell

        def forward(p: Any = p) -> None:
            for kind in ("serial", "team"):
                p.forward(NumbaBackend(kind=kind))

        def cell(p: Any = p, q: Any = q) -> None:
            NumbaBackend(kind="serial").cell(p.x[0], p.h0, p.c0, p.params)
            NumbaBackend(kind="team").cell(q.x[0], q.h0, q.c0, q.params)

        def backward(p: Any = p) -> None:
            for kind in ("serial", "team"):
                be = NumbaBackend(kind=kind)
                be.backward(p.forward_train(be)[3], *p.output_grads(seed=0))

        def jit_step(p: Any = p) -> None:   # lstm_backends.jit's step (prepare loads it)
            NumbaBackend().jit.prepare(p.params)

        families = [("forward", forward), ("cell", cell), ("lstm_backends.jit step", jit_step)]
        if training:
            families.append(("forward_train + backward", backward))
        steps += [(f"numba {dtype.name} {what}", functools.partial(_quietly, run)) for what, run in families]
    for mode in precision:
        p = random_problem(2, 2, 3, 20, dtype=np.float32, seed=0)
        q = random_problem(2, 2, 3, 20, dtype=np.float32, seed=0, proj_size=5)

        def modal(p: Any = p, q: Any = q, mode: str = mode) -> None:
            for kind in ("serial", "team"):
                be = NumbaBackend(kind=kind)
                w = be.prepare(p.params, mode)
                be.forward(p.x, w, p.h0, p.c0)
                be.cell(p.x[0], p.h0, p.c0, w)
            be.forward(q.x, be.prepare(q.params, mode), q.h0, q.c0)
            for r in (p, q):   # lstm_backends.jit's step in the mode (prepare loads it)
                be.jit.prepare(r.params, precision=mode)

        steps.append((f"numba {mode} forward + cell + lstm_backends.jit step", functools.partial(_quietly, modal)))
    return steps


def warmup(dtypes: Any = (np.float32, np.float64), *, training: bool = False,
           progress: Any = None) -> list[tuple[str, float]]:
    """Compile (or load from Numba's on-disk cache) the kernels of the given dtypes.

    Call once (``lstm-backends warmup`` from a shell, or :func:`lstm_backends.warmup`) to take
    compilation out of the first real calls: the machine code lands in :func:`cache_dir`, and
    every later process loads it in a fraction of a second.  With a warm cache this only loads
    machine code.

    Parameters
    ----------
    dtypes : numpy dtype or sequence of them
        ``float32`` and/or ``float64``.
    training : bool
        Also the training kernels (``forward_train`` shares the forward kernels; ``backward`` has its own).
    progress : callable, optional
        ``progress(index, total, label)`` before each step (``index`` from 1), e.g. to print it.

    Returns
    -------
    list of (str, float)
        Each step's label and seconds.
    """
    steps = warmup_steps(dtypes, training=training)
    done = []
    for i, (label, run) in enumerate(steps, 1):
        if progress is not None:
            progress(i, len(steps), label)
        t0 = time.perf_counter()
        run()
        done.append((label, time.perf_counter() - t0))
    return done
