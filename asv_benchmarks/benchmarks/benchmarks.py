"""asv benchmarks: forward over backend x size x dtype.

Backends that cannot run here are skipped (``NotImplementedError`` in setup);
JIT compilation happens in setup, never inside the timed body.
"""

import numpy as np

import lstm_backends as lb
from lstm_backends.testing import random_problem

BACKENDS = ["numpy", "numba", "cuda"]
# (B, T, I, H)
SIZES = ["1,100,64,128", "16,100,128,256", "64,100,256,512"]


def _backend(name):
    try:
        return lb.get_backend(name)
    except (lb.UnknownBackendError, lb.BackendUnavailableError) as exc:
        raise NotImplementedError(str(exc)) from None


class Forward:
    params = (BACKENDS, SIZES, ["float32", "float64"])
    param_names = ["backend", "size", "dtype"]
    timeout = 300

    def setup(self, backend, size, dtype):
        self.be = _backend(backend)
        b, t, i, h = (int(v) for v in size.split(","))
        self.problem = random_problem(t, b, i, h, dtype=np.dtype(dtype), seed=0)
        self.problem.forward(self.be)  # compile / warm up outside the timing

    def time_forward(self, backend, size, dtype):
        self.problem.forward(self.be)
