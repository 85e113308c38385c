"""numba backend specifics: caching, cold import, threads, determinism, allocation-free cell."""

import subprocess
import sys
import textwrap
import tracemalloc

import numpy as np
import pytest

import lstm_backends as lb
from lstm_backends.testing import random_params, random_problem

pytest.importorskip("numba")
from lstm_backends.backends.numba_backend import NumbaBackend, warmup  # noqa: E402


def _run(code, **env):
    import os

    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=600)


def test_get_backend_compiles_and_imports_nothing():
    out = _run(
        """
        import sys, lstm_backends as lb
        be = lb.get_backend("numba")
        print(sorted(m for m in sys.modules if m.startswith("numba") or m.endswith("_numba_kernels")))
        """
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_every_kernel_is_cached():
    from numba.core.registry import CPUDispatcher

    from lstm_backends.backends import _numba_kernels as k

    dispatchers = {n: v for n, v in vars(k).items() if isinstance(v, CPUDispatcher)}
    assert {"forward_layer", "forward_layer_rowwise", "cell_step"} <= set(dispatchers)
    for name, d in dispatchers.items():
        assert d.targetoptions.get("cache") or type(d._cache).__name__ != "NullCache", f"{name} is not cache=True"
        assert type(d._cache).__name__ != "NullCache", name


def test_warmup_compiles_common_signatures():
    from lstm_backends.backends import _numba_kernels as k

    warmup()
    dtypes = {str(sig[0].dtype) for sig in k.cell_step.signatures}
    assert {"float32", "float64"} <= dtypes
    assert k.forward_layer_rowwise.signatures and k.forward_layer.signatures


def test_auto_picks_numba_without_gpu():
    rows = {b.name: b for b in lb.list_backends()}
    if rows.get("cuda") and rows["cuda"].available and "simulat" not in rows["cuda"].reason:
        pytest.skip("a real GPU is present: auto picks cuda")
    assert lb.get_backend("auto").name == "numba"


@pytest.mark.parametrize("batch", [1, 3, 24])  # rowwise and GEMM kernels
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bitwise_deterministic_across_calls_and_thread_counts(batch, dtype):
    p = random_problem(20, batch, 16, 64, dtype=dtype, seed=3, lengths="random", reverse=True)
    results = []
    for threads in (None, 1, 2, 1):
        results.append([a.copy() for a in p.forward(NumbaBackend(num_threads=threads))])
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)


def test_num_threads_validation():
    with pytest.raises(ValueError, match="positive"):
        NumbaBackend(num_threads=0)
    be = NumbaBackend(num_threads=2)
    be.set_num_threads(None)
    assert be.num_threads is None


def test_cell_with_out_allocates_no_arrays():
    be = NumbaBackend()
    hidden = 1024
    params = random_params(64, hidden, rng=0)
    x = np.ones((2, 64), np.float32)
    h, c = np.zeros((2, hidden), np.float32), np.zeros((2, hidden), np.float32)
    be.cell(x, h, c, params, out=(h, c))  # compile and create the per-thread scratch
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    for _ in range(50):
        be.cell(x, h, c, params, out=(h, c))
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    # one (B, H) float32 array is 8 KiB, (B, 4H) 32 KiB; NumPy reports its buffers to
    # tracemalloc, so any array allocated per call would show (small Python objects do not)
    assert peak < 4096, f"cell(out=...) allocated {peak} bytes"


THREADS_CODE = """
import os, sys, threading
import numpy as np
import lstm_backends as lb
from lstm_backends.testing import random_problem
be = lb.get_backend("numba")
problems = [random_problem(12, b, 8, 32, seed=s, lengths="random") for s, b in enumerate([1, 3, 20, 40] * 2)]
expected = [[a.copy() for a in p.forward(be)] for p in problems]
cell_p = problems[2]
cell_expected = be.cell(cell_p.x[0], cell_p.h0, cell_p.c0, cell_p.params)
errors = []
def work(k):
    try:
        for r in range(15):
            p = problems[(k + r) % len(problems)]
            got = p.forward(be)
            for a, b in zip(got, expected[(k + r) % len(problems)]):
                if not np.array_equal(a, b):
                    errors.append(f"thread {k}: forward differs")
            h, c = be.cell(cell_p.x[0], cell_p.h0, cell_p.c0, cell_p.params)
            if not (np.array_equal(h, cell_expected[0]) and np.array_equal(c, cell_expected[1])):
                errors.append(f"thread {k}: cell differs")
    except Exception as exc:
        errors.append(repr(exc))
threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
[t.start() for t in threads]
[t.join() for t in threads]
import numba
print("layer", os.environ.get("NUMBA_THREADING_LAYER"), "errors", len(errors), errors[:3])
sys.exit(1 if errors else 0)
"""


@pytest.mark.parametrize("layer", ["workqueue", "default"])
def test_concurrent_calls_never_abort_and_agree(layer):
    env = {"NUMBA_THREADING_LAYER": layer} if layer != "default" else {}
    out = _run(THREADS_CODE, **env)
    assert out.returncode == 0, f"rc={out.returncode}\nstdout={out.stdout}\nstderr={out.stderr[-2000:]}"
    assert "errors 0" in out.stdout
