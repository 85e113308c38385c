"""asv benchmarks for lstm_backends.

* ``Forward`` / ``Cell``: time per call over backend x size x dtype;
  ``peakmem_forward`` the peak memory of a forward call.
* ``Features``: the full cell (peepholes + clip, projection) next to the plain kernel, on
  every backend that has the capabilities: the cost of each feature over the plain call.
* ``Training``: ``forward_train`` + ``backward`` on every backend with the ``backward``
  capability, time and peak memory.
* ``Precision``: forward and cell on params prepared by ``Backend.prepare`` in each precision
  mode (``none`` = prepared float32: no per-call packing; ``bf16``; ``bf16x3``) on every backend
  with the mode, and ``BeyondCache``: prepared float32 against plain params where the weights
  exceed the caches (repacked on every plain call).
* ``JitCell`` / ``JitForward``: ``lstm_backends.jit`` called from the user's own ``@njit`` code,
  float32: the seconds per step of a loop of ``lj.cell`` inside one ``@njit`` function
  (``track_``), and ``lj.forward`` over a sequence inside one (``time_``).
* ``ColdStart``: import time, import + the first forward (B16 T100 I128 H256), and the first
  call of each further variant (float64, cell, training, peephole/clip), each in a fresh
  subprocess (``track_``; the first call includes JIT compilation or cache loading).

Backends come from the registry (built-ins and installed plugins); those that cannot
run here, or lack the capability a benchmark needs, are skipped: ``setup`` raises
``NotImplementedError``.  JIT compilation happens in ``setup`` (one untimed call), never
inside a timed body.  Sizes are written in the library's order ``T,B,I,H`` and read by
the one size parser, :func:`lstm_backends._bench.parse_size`.
"""

import functools
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

import lstm_backends as lb
from lstm_backends._bench import parse_size
from lstm_backends.testing import random_params, random_problem

BACKENDS = [b.name for b in lb.list_backends()]
# T,B,I,H: batch 1, 4, 16, 64 and 256 (the CPU-speed issue's table)
SIZES = ["100,1,64,128", "1000,1,128,256", "100,4,128,256", "100,16,128,256", "100,64,256,512",
         "50,256,512,1024"]
CELL_SIZES = ["1,1,128,256", "1,16,256,512"]  # T (unused: 1),B,I,H
#: calls above this many FLOPs run only on fast backends (auto_priority >= 10): the
#: reference would take seconds per call and add nothing to track
REFERENCE_FLOP_LIMIT = 2e9


def _backend(name, capability="forward", flop_count=0.0):
    try:
        be = lb.get_backend(name)
    except (lb.UnknownBackendError, lb.BackendUnavailableError) as exc:
        raise NotImplementedError(str(exc)) from None
    if capability not in be.capabilities:
        raise NotImplementedError(f"{name} lacks {capability!r}")
    if flop_count > REFERENCE_FLOP_LIMIT and (be.auto_priority or 0) < 10:
        raise NotImplementedError(f"{name} is a reference-speed backend: skipped above {REFERENCE_FLOP_LIMIT:g} FLOPs")
    return be


class Forward:
    """One layer, one direction, whole sequence."""

    params = (BACKENDS, SIZES, ["float32", "float64"])
    param_names = ["backend", "size", "dtype"]
    timeout = 300

    def setup(self, backend, size, dtype):
        size = parse_size(size)
        self.be = _backend(backend, "forward", size.flops)
        t, b, i, h = size
        self.problem = random_problem(t, b, i, h, dtype=np.dtype(dtype), seed=0)
        self.problem.forward(self.be)  # compile / warm up outside the timing

    def time_forward(self, backend, size, dtype):
        self.problem.forward(self.be)

    def peakmem_forward(self, backend, size, dtype):
        self.problem.forward(self.be)


class Cell:
    """One streaming step with preallocated outputs (``out=``)."""

    params = (BACKENDS, CELL_SIZES, ["float32", "float64"])
    param_names = ["backend", "size", "dtype"]

    def setup(self, backend, size, dtype):
        self.be = _backend(backend, "cell")
        _, b, i, h = parse_size(size)
        rng = np.random.default_rng(0)
        self.params = random_params(i, h, dtype=np.dtype(dtype), rng=rng)
        self.x = rng.standard_normal((b, i)).astype(dtype)
        self.h = np.zeros((b, h), dtype)
        self.c = np.zeros((b, h), dtype)
        self.out = (np.empty_like(self.h), np.empty_like(self.c))
        self.be.cell(self.x, self.h, self.c, self.params, out=self.out)

    def time_cell(self, backend, size, dtype):
        self.be.cell(self.x, self.h, self.c, self.params, out=self.out)


# feature -> (capabilities, random_problem keywords)
FEATURES = {
    "plain": ((), {}),
    "peephole+clip": (("peephole", "clip"), {"peephole": True, "clip": 0.5}),
    "projection": (("projection",), {"proj_size": 128}),
}


class Features:
    """One layer, one direction, float32, with a feature of the full cell switched on."""

    params = (BACKENDS, ["100,16,128,256"], list(FEATURES))
    param_names = ["backend", "size", "feature"]
    timeout = 300

    def setup(self, backend, size, feature):
        needs, kw = FEATURES[feature]
        self.be = _backend(backend)
        for capability in needs:
            _backend(backend, capability)
        t, b, i, h = parse_size(size)
        self.problem = random_problem(t, b, i, h, dtype=np.float32, seed=0, **kw)
        self.problem.forward(self.be)

    def time_forward_feature(self, backend, size, feature):
        self.problem.forward(self.be)


#: T,B,I,H of the training benchmark: the CPU-speed issue's two training sizes and a small one
TRAIN_SIZES = ["20,4,32,64", "100,16,128,256", "100,64,256,512"]


class Training:
    """``forward_train`` + ``backward`` (one layer, one direction, random output gradients), on every
    backend with the ``backward`` capability (read from the registry: a backend that gains it is
    benchmarked without a change here).  ``peakmem_`` includes the tape."""

    params = (BACKENDS, TRAIN_SIZES, ["float32", "float64"])
    param_names = ["backend", "size", "dtype"]
    timeout = 600

    def setup(self, backend, size, dtype):
        size = parse_size(size)
        self.be = _backend(backend, "backward", 3 * size.flops)  # backward costs about twice the forward
        t, b, i, h = size
        self.problem = random_problem(t, b, i, h, dtype=np.dtype(dtype), seed=0, lengths="random")
        self.grads = self.problem.output_grads()
        self._step()  # compile / warm up outside the timing

    def _step(self):
        self.be.backward(self.problem.forward_train(self.be)[3], *self.grads)

    def time_forward_train_backward(self, backend, size, dtype):
        self._step()

    def peakmem_forward_train_backward(self, backend, size, dtype):
        self._step()


@functools.cache
def _jit_functions():
    """(lstm_backends.jit, the step loop, the forward wrapper): ``@njit`` functions of "user code"
    (compiled on their first call, in ``setup``); NotImplementedError before ``lstm_backends.jit``."""
    try:
        import numba

        from lstm_backends import jit as lj
    except ImportError as exc:
        raise NotImplementedError(f"lstm_backends.jit: {exc}") from None

    @numba.njit
    def cell_loop(x, h, c, w, n):
        for _ in range(n):
            lj.cell(x, h, c, w, h, c)

    @numba.njit
    def forward(x, w, h0, c0, y, h_n, c_n):
        lj.forward(x, w, h0, c0, y, h_n, c_n)

    return lj, cell_loop, forward


class Precision:
    """Prepared params in each precision mode (``none``: float32, prepared: packed once)."""

    params = (BACKENDS, ["100,16,128,256"], ["none", "bf16", "bf16x3"])
    param_names = ["backend", "size", "mode"]
    timeout = 300

    def setup(self, backend, size, mode):
        size = parse_size(size)
        precision = None if mode == "none" else mode
        self.be = _backend(backend, precision or "forward", size.flops * (3 if mode == "bf16x3" else 1))
        if "prepare" not in dir(self.be):   # a plugin written before Backend.prepare
            raise NotImplementedError(f"{backend} has no prepare()")
        t, b, i, h = size
        self.problem = random_problem(t, b, i, h, seed=0)
        self.w = self.be.prepare(self.problem.params, precision)
        self.time_forward(backend, size, mode)
        if "cell" in self.be.capabilities:
            self.time_cell(backend, size, mode)

    def time_forward(self, backend, size, mode):
        p = self.problem
        self.be.forward(p.x, self.w, p.h0, p.c0)

    def time_cell(self, backend, size, mode):
        if "cell" not in self.be.capabilities:
            raise NotImplementedError(f"{backend} lacks 'cell'")
        p = self.problem
        self.be.cell(p.x[0], p.h0, p.c0, self.w)


class BeyondCache:
    """Weights beyond the caches (issue 17's sizes): plain params (packed on every call) against
    params prepared once, float32, fast backends only."""

    params = (BACKENDS, ["100,1,1024,1024", "100,8,512,1024", "20,1,2048,2048"], ["plain", "prepared"])
    param_names = ["backend", "size", "params"]
    timeout = 600

    def setup(self, backend, size, params):
        size = parse_size(size)
        self.be = _backend(backend, "forward", size.flops)
        if (self.be.auto_priority or 0) < 10:
            raise NotImplementedError(f"{backend} is a reference-speed backend")
        t, b, i, h = size
        self.problem = random_problem(t, b, i, h, seed=0)
        self.params = self.be.prepare(self.problem.params) if params == "prepared" else self.problem.params
        self.time_forward(backend, size, params)

    def time_forward(self, backend, size, params):
        p = self.problem
        self.be.forward(p.x, self.params, p.h0, p.c0)


class JitCell:
    """``lj.cell`` in a loop inside one ``@njit`` function (in place, the same input every step):
    seconds per step, float32, one thread (the step runs on the calling thread)."""

    params = (["1,1,64,128", "1,1,128,256"],)  # T (unused: 1),B,I,H
    param_names = ["size"]
    unit = "seconds"
    timeout = 300

    def setup(self, size):
        lj, self.loop, _ = _jit_functions()
        _, b, i, h = parse_size(size)
        rng = np.random.default_rng(0)
        self.w = lj.prepare(random_params(i, h, dtype=np.float32, rng=rng))
        self.x = rng.standard_normal((b, i)).astype(np.float32)
        self.h = np.zeros((b, h), np.float32)
        self.c = np.zeros((b, h), np.float32)
        self.loop(self.x, self.h, self.c, self.w, 1)  # compile outside the timing
        start = time.perf_counter()
        self.loop(self.x, self.h, self.c, self.w, 100)
        self.steps = max(1, int(2e-3 / max((time.perf_counter() - start) / 100, 1e-9)))  # ~2 ms per sample

    def track_cell_step(self, size):
        """Median over samples of ~2 ms (0.2 s of them) of the seconds per step."""
        samples = []
        end = time.perf_counter() + 0.2
        while len(samples) < 10 or time.perf_counter() < end:
            start = time.perf_counter()
            self.loop(self.x, self.h, self.c, self.w, self.steps)
            samples.append((time.perf_counter() - start) / self.steps)
        return statistics.median(samples)


class JitForward:
    """``lj.forward`` over T = 100 steps inside one ``@njit`` function, float32, preallocated outputs."""

    params = (["100,1,128,256"],)
    param_names = ["size"]
    timeout = 300

    def setup(self, size):
        lj, _, self.forward = _jit_functions()
        t, b, i, h = parse_size(size)
        p = random_problem(t, b, i, h, dtype=np.float32, seed=0)
        self.args = (p.x, lj.prepare(p.params), p.h0, p.c0, np.empty((t, b, h), np.float32),
                     np.empty((b, h), np.float32), np.empty((b, h), np.float32))
        self.forward(*self.args)  # compile outside the timing

    def time_forward(self, size):
        self.forward(*self.args)


# Seconds of ``import lstm_backends`` (what=import); of the import and the first float32 forward
# (B16 T100 I128 H256, what=BACKEND); of the first call of a further variant after that forward
# (what=BACKEND-VARIANT: float64 forward, cell, forward_train + backward, peephole/clip forward).
_COLD = """
import time
start = time.perf_counter()
import numpy as np
import lstm_backends as lb
what = {what!r}
if what != "import":
    from lstm_backends.testing import random_problem
    name, _, variant = what.partition("-")
    p = random_problem(100, 16, 128, 256, dtype=np.float32, seed=0)
    be = lb.get_backend(name)
    p.forward(be)
    if variant:
        start = time.perf_counter()
        if variant == "float64":
            p.astype(np.float64).forward(be)
        elif variant == "cell":
            be.cell(p.x[0], p.h0, p.c0, p.params)
        elif variant == "train":
            be.backward(p.forward_train(be)[3], *p.output_grads(seed=0))
        elif variant == "features":
            q = random_problem(100, 16, 128, 256, dtype=np.float32, seed=1, peephole=True, clip=3.0)
            q.forward(be)
        elif variant == "jit":   # lstm_backends.jit: prepare, then the first call of a user's @njit loop
            import numba
            from lstm_backends import jit as lj
            w = lj.prepare(p.params)
            @numba.njit
            def steps(w, xs, h, c):
                for t in range(xs.shape[0]):
                    lj.cell(xs[t], h, c, w, h, c)
            steps(w, p.x, p.h0.copy(), p.c0.copy())
print(time.perf_counter() - start)
"""


class ColdStart:
    """Seconds, measured in a fresh interpreter each time."""

    params = (["import", "numpy", "numba", "numba-float64", "numba-cell", "numba-train", "numba-features",
               "numba-jit"],)
    param_names = ["what"]
    timeout = 600
    unit = "seconds"

    def setup(self, what):
        if what != "import":
            _backend(what.partition("-")[0])

    def _run(self, what, env):
        out = subprocess.run([sys.executable, "-c", _COLD.format(what=what)], capture_output=True, text=True,
                             check=True, env=env)
        return float(out.stdout.strip())

    def track_first_call_warm_cache(self, what):
        """``import lstm_backends`` (what=import), import + the first forward, or the first call of a
        further variant, with a warm JIT cache."""
        self._run(what, dict(os.environ))  # make sure the cache is warm
        return self._run(what, dict(os.environ))

    def track_first_call_empty_cache(self, what):
        """The same with Numba's on-disk cache empty (compilation included)."""
        with tempfile.TemporaryDirectory() as cache:
            return self._run(what, dict(os.environ, NUMBA_CACHE_DIR=cache))
