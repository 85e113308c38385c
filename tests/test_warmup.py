"""Compilation speaks, once: ``lstm-backends warmup`` / ``lb.warmup`` and the first-use notice.

Each test runs fresh processes on a private, empty ``NUMBA_CACHE_DIR`` (compilation is per process
and the cache is per directory).  No test asserts a time: whether a call compiled is read from
Numba's own counters (cache hits and misses).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

import lstm_backends as lb

pytest.importorskip("numba")

NOTICE = "compiling the numba backend's"

FIRST_CALLS = """
import json, numpy as np
import lstm_backends as lb
from lstm_backends.backends import _numba as k
p = lb.testing.random_problem(5, 3, 4, 20, dtype=np.float32, seed=0)
be = lb.get_backend("numba")
p.forward(be)
be.cell(p.x[0], p.h0, p.c0, p.params)
from lstm_backends import jit as lj
from lstm_backends.backends._numba import jitstep
h, c = np.empty_like(p.h0), np.empty_like(p.c0)
lj.cell(p.x[0], p.h0, p.c0, lj.prepare(p.params), h, c)
hits = {"jit_step_hits": jitstep.step_kernel("plain", 32).cache_hits,
        "entry_hits": sum(k.forward_entry.stats.cache_hits.values()),
        "entry_misses": sum(k.forward_entry.stats.cache_misses.values()),
        "worker_hits": k.worker(np.float32).cache_hits,
        "cell_misses": sum(k.cell_entry.stats.cache_misses.values())
        + sum(k.cell_team_entry.stats.cache_misses.values())}
if TRAIN:
    y, h, c, tape = p.forward_train(be)
    be.backward(tape, *p.output_grads(seed=0))
    hits["bwd_misses"] = sum(k.backward_entry.stats.cache_misses.values())
    hits["bwd_worker_hits"] = k.bwd_worker(np.float32).cache_hits
print(json.dumps(hits))
"""


def _python(code: str, cache: str, *args: str, train: bool = False) -> subprocess.CompletedProcess:
    env = {**os.environ, "NUMBA_CACHE_DIR": cache}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (os.path.dirname(os.path.dirname(lb.__file__)),
                                                    env.get("PYTHONPATH")) if p)
    cmd = [sys.executable, "-c", textwrap.dedent(code).replace("TRAIN", str(train))] if code else \
        [sys.executable, "-m", "lstm_backends", *args]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    return out


def test_warmup_cli_compiles_with_progress_then_every_first_call_loads(tmp_path):
    cache = str(tmp_path / "cache")
    out = _python("", cache, "warmup", "--training", "--dtypes", "float32")
    lines = out.stdout.splitlines()
    assert any(line.startswith("[1/4] numba float32 forward ...") for line in lines), out.stdout
    assert any(line.startswith("[2/4] numba float32 cell ...") for line in lines), out.stdout
    assert any(line.startswith("[3/4] numba float32 lstm_backends.jit step ...") for line in lines), out.stdout
    assert any(line.startswith("[4/4] numba float32 forward_train + backward ...") for line in lines), out.stdout
    assert f"numba kernels cached in {cache}" in out.stdout
    assert NOTICE not in out.stderr   # warmup says what it does; no first-use notice on top

    first = _python(FIRST_CALLS, cache, train=True)
    got = json.loads(first.stdout.strip().splitlines()[-1])
    assert got == {"jit_step_hits": 1, "entry_hits": 1, "entry_misses": 0, "worker_hits": 1, "cell_misses": 0,
                   "bwd_misses": 0, "bwd_worker_hits": 1}, got
    assert NOTICE not in first.stderr   # a warm cache prints nothing


def test_each_compiling_family_says_so_once_and_a_warm_cache_stays_silent(tmp_path):
    cache = str(tmp_path / "cache")
    cold = _python(FIRST_CALLS, cache)
    told = [line for line in cold.stderr.splitlines() if NOTICE in line]
    assert len(told) == 3, cold.stderr   # forward, cell and lstm_backends.jit's step compiled: one line each
    assert "forward kernels for float32" in told[0]
    assert f"cached in {cache}" in told[0] and "lstm-backends warmup" in told[0]
    assert "setLevel(logging.ERROR)" in told[0]
    assert "cell kernels for float32 (first use only)" in told[1] and "warmup" not in told[1]
    assert "lstm_backends.jit step kernels for float32 (first use only)" in told[2]
    warm = _python(FIRST_CALLS, cache)
    assert json.loads(warm.stdout.strip().splitlines()[-1])["entry_misses"] == 0
    assert NOTICE not in warm.stderr


def test_kernels_warmup_skipped_still_say_so(tmp_path):
    """lb.warmup() without training compiles no backward: in the same process, the first backward
    says that it compiles (and nothing else does: the forward was warmed up, silently)."""
    code = """
    import numpy as np
    import lstm_backends as lb
    lb.warmup(["numba"], "float32")
    p = lb.testing.random_problem(5, 3, 4, 20, dtype=np.float32, seed=0)
    be = lb.get_backend("numba")
    p.forward(be)
    y, h, c, tape = p.forward_train(be)
    be.backward(tape, *p.output_grads(seed=0))
    print("{}")
    """
    out = _python(code, str(tmp_path / "cache"))
    told = [line for line in out.stderr.splitlines() if NOTICE in line]
    assert len(told) == 1 and "backward kernels for float32" in told[0], out.stderr


def test_the_notice_is_silenced_through_the_logger(tmp_path):
    code = "import logging; logging.getLogger('lstm_backends').setLevel(logging.ERROR)\n" + FIRST_CALLS
    assert NOTICE not in _python(code, str(tmp_path / "cache")).stderr


def test_lb_warmup_reports_its_steps_and_refuses_what_it_cannot_compile():
    seen = []
    steps = lb.warmup(["numpy"], dtypes=("float32", "float64"), training=True,
                      progress=lambda i, n, label: seen.append((i, n, label)))
    assert [label for label, _ in steps] == [
        "numpy float32 forward", "numpy float32 cell", "numpy float32 forward_train + backward",
        "numpy float64 forward", "numpy float64 cell", "numpy float64 forward_train + backward"]
    assert seen == [(i + 1, 6, label) for i, (label, _) in enumerate(steps)]
    with pytest.raises(lb.UnknownBackendError):
        lb.warmup(["no-such-backend"])
    from lstm_backends.backends.numba_backend import warmup

    with pytest.raises(ValueError, match="float32 and float64"):
        warmup("float16")


def test_warmup_of_a_precision_mode_leaves_its_first_calls_nothing_to_compile(tmp_path):
    """``lstm-backends warmup --precision bf16`` compiles the mode's forward and cell (with this CPU's
    bf16 products): a fresh process's first bf16 forward, cell and projected forward then load
    everything from the cache and say nothing."""
    cache = str(tmp_path / "cache")
    out = _python("", cache, "warmup", "--dtypes", "float32", "--precision", "bf16")
    assert any(line.startswith("[4/4] numba bf16 forward + cell + lstm_backends.jit step ...")
               for line in out.stdout.splitlines()), out.stdout
    code = """
    import json, numpy as np
    import numba
    import lstm_backends as lb
    from lstm_backends.backends import _numba as k
    p = lb.testing.random_problem(5, 3, 4, 20, dtype=np.float32, seed=1)
    q = lb.testing.random_problem(5, 3, 4, 20, dtype=np.float32, seed=1, proj_size=6)
    be = lb.get_backend("numba")
    w = be.prepare(p.params, "bf16")
    be.forward(p.x, w, p.h0, p.c0)
    be.cell(p.x[0], p.h0, p.c0, w)
    be.forward(q.x, be.prepare(q.params, "bf16"), q.h0, q.c0)
    from lstm_backends import jit as lj
    from lstm_backends.backends._numba import jitstep
    steps = [jitstep.step_kernel(*jitstep.kind_of(lj.prepare(r.params, precision="bf16"))) for r in (p, q)]
    import lstm_backends.backends._numba.modes as modes
    jitted = [f for m in (k, modes) for f in vars(m).values() if isinstance(f, numba.core.registry.CPUDispatcher)]
    print(json.dumps({"misses": sum(sum(f.stats.cache_misses.values()) for f in jitted),
                      "hits": sum(sum(f.stats.cache_hits.values()) for f in jitted),
                      "jit_step_hits": [s.cache_hits for s in steps]}))
    """
    first = _python(code, cache)
    got = json.loads(first.stdout.strip().splitlines()[-1])
    assert got["misses"] == 0 and got["hits"] > 0 and got["jit_step_hits"] == [1, 1], got
    assert NOTICE not in first.stderr
    with pytest.raises(ValueError, match="one of 'bf16', 'bf16x3'; got 'fp8'"):
        lb.warmup(["numpy"], precision="fp8")
