"""What this machine measures, for ``lstm-backends info``: is the ``numba`` backend's opt-in MKL
GEMM faster than its own micro-kernel *here*?

The answer comes from a measurement on this machine, never from a sentence written elsewhere:

1. the last ``lstm-backends bench`` that timed both ``ours:numba`` and ``ours:numba@mkl`` on
   this CPU (``bench`` keeps a small summary, :func:`save_last_bench`, in :func:`cache_dir`);
2. otherwise a short probe (:func:`probe_mkl_vs_own`): one float32 forward of
   :data:`PROBE_SIZE` with each GEMM, alternated, :data:`PROBE_REPEATS` times, the minimum of
   each (about a second, most of it loading the compiled kernels; seconds more the first time,
   when they compile).

The summary lives in ``$LSTM_BACKENDS_CACHE_DIR`` if set (set it empty to keep and read
nothing), else ``$XDG_CACHE_HOME/lstm_backends``, else ``~/.cache/lstm_backends``.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._bench import Size

__all__ = ["CACHE_ENV", "PROBE_REPEATS", "PROBE_SIZE", "cache_dir", "cpu_name", "load_last_bench", "mkl_advice",
           "probe_mkl_vs_own", "save_last_bench"]

#: environment variable naming the cache directory ("" disables the cache)
CACHE_ENV = "LSTM_BACKENDS_CACHE_DIR"
LAST_BENCH = "last_bench.json"
#: the probe's problem: mid-sized, a few milliseconds per forward
PROBE_SIZE = Size(20, 16, 128, 256)
PROBE_REPEATS = 5
#: timings closer than this factor are reported as on par
PAR = 1.05
OWN, MKL = "ours:numba", "ours:numba@mkl"


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else :func:`platform.processor`), or the
    machine type when neither names it."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "Hardware", "cpu model") and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def cache_dir() -> Path | None:
    """Where ``bench`` keeps its last summary: ``$LSTM_BACKENDS_CACHE_DIR`` (empty: nowhere, None),
    else ``$XDG_CACHE_HOME/lstm_backends``, else ``~/.cache/lstm_backends``."""
    env = os.environ.get(CACHE_ENV)
    if env is not None:
        return Path(env) if env.strip() else None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "lstm_backends"


def save_last_bench(rows: Sequence[Any], *, threads: int, dtype: str) -> Path | None:
    """Keep a summary of a bench run for :func:`mkl_advice`; returns its path (None: not kept).

    Parameters
    ----------
    rows : sequence of lstm_backends._peers.Result
    threads : int
        The thread budget of the run.
    dtype : str

    Returns
    -------
    Path or None
        None when the cache is disabled or cannot be written (a bench never fails for it).
    """
    where = cache_dir()
    if where is None:
        return None
    record = {
        "cpu": cpu_name(), "kernels": kernels_stamp(), "time": time.strftime("%Y-%m-%d %H:%M"), "threads": threads,
        "dtype": dtype,
        "rows": [{"size": str(r.size), "name": r.name, "median_s": r.median_s, "agrees": bool(r.agrees),
                  "noisy": bool(getattr(r, "noisy", False))} for r in rows],
    }
    path = where / LAST_BENCH
    try:
        where.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=1), encoding="utf-8")
        tmp.replace(path)
    except OSError:
        return None
    return path


def kernels_stamp() -> str:
    """Which numba kernels a bench timed: the start of their package stamp (every kernel file's hash;
    another version or checkout of the library has another), or ``"?"`` when it cannot be read."""
    try:
        from .backends._numba._jit import package_stamp

        return package_stamp()[:16]
    except (ImportError, OSError):
        return "?"


def load_last_bench() -> dict | None:
    """The summary :func:`save_last_bench` kept, or None (none, disabled, unreadable)."""
    where = cache_dir()
    if where is None:
        return None
    try:
        record = json.loads((where / LAST_BENCH).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("rows"), list) else None


def _mkl_pairs(record: dict) -> list[tuple[str, float, float]]:
    """(size, own seconds, mkl seconds) of every size where the record timed both, trustworthy rows only,
    and only sizes of at least a quarter of the probe's work (a toy bench says nothing about the GEMMs)."""
    from ._bench import parse_size

    times: dict[tuple[str, str], float] = {}
    for row in record.get("rows", []):
        try:
            if (row["name"] in (OWN, MKL) and row["agrees"] and not row.get("noisy")
                    and parse_size(row["size"]).flops >= PROBE_SIZE.flops / 4):
                times[row["name"], row["size"]] = float(row["median_s"])
        except (KeyError, TypeError, ValueError):
            continue
    sizes = dict.fromkeys(size for _, size in times)
    return [(s, times[OWN, s], times[MKL, s]) for s in sizes if (OWN, s) in times and (MKL, s) in times]


def probe_mkl_vs_own(size: Size = PROBE_SIZE, repeats: int = PROBE_REPEATS) -> tuple[float, float, int]:
    """Time one float32 forward with the own GEMM and with MKL's, alternated, in this process.

    Parameters
    ----------
    size : Size
    repeats : int
        Timed calls of each (after one untimed call that loads or compiles the kernels).

    Returns
    -------
    own_s, mkl_s : float
        The fastest call of each, in seconds.
    threads : int
        The thread budget both ran with (the backend's default).
    """
    import numpy as np

    from .backends.numba_backend import NumbaBackend
    from .testing import random_problem

    p = random_problem(*size, dtype=np.float32, seed=0)
    backends = {"own": NumbaBackend(gemm="own"), "mkl": NumbaBackend(gemm="mkl")}
    best = {name: float("inf") for name in backends}
    for be in backends.values():
        be.forward(p.x, p.params, p.h0, p.c0)
    for _ in range(repeats):
        for name, be in backends.items():
            start = time.perf_counter()
            be.forward(p.x, p.params, p.h0, p.c0)
            best[name] = min(best[name], time.perf_counter() - start)
    return best["own"], best["mkl"], backends["own"].budget


def _outcome(own_s: float, mkl_s: float) -> str:
    """MKL against the own kernel in one word: ``"faster"``, ``"on par"`` (within ``PAR``) or ``"slower"``."""
    if max(own_s, mkl_s) <= PAR * min(own_s, mkl_s):
        return "on par"
    return "faster" if mkl_s < own_s else "slower"


def _verdict(own_s: float, mkl_s: float) -> str:
    outcome = _outcome(own_s, mkl_s)
    if outcome == "on par":
        return "MKL on par"
    return f"MKL {max(own_s, mkl_s) / min(own_s, mkl_s):.2g}x {outcome}"


def mkl_advice(probe: bool = True) -> str:
    """One line: MKL against the own kernel on this CPU, measured, with the numbers and their source.

    Parameters
    ----------
    probe : bool
        Run the probe when no stored bench result applies (else say that nothing was measured).

    Returns
    -------
    str
    """
    cpu = cpu_name()
    record = load_last_bench()
    mine = record and record.get("cpu") == cpu and record.get("kernels") == kernels_stamp()  # this CPU, these kernels
    pairs = _mkl_pairs(record) if mine else []
    if pairs:
        each = "; ".join(f"{s}: own {own * 1e3:.3g} ms, mkl {mkl * 1e3:.3g} ms ({_verdict(own, mkl)})"
                         for s, own, mkl in pairs)
        outcomes = [_outcome(own, mkl) for _, own, mkl in pairs]
        tally = ", ".join(f"{word} at {outcomes.count(word)}" for word in ("faster", "on par", "slower")
                          if word in outcomes)
        return (f"MKL vs own kernel on {cpu}, from the last `lstm-backends bench` ({record.get('time')}, "
                f"{record.get('threads')} threads, {record.get('dtype')}, medians): {each} -- MKL {tally} "
                f"of {len(pairs)} sizes")
    if not probe:
        return f"MKL vs own kernel on {cpu}: not measured (run `lstm-backends bench`)"
    try:
        own, mkl, threads = probe_mkl_vs_own()
    except Exception as exc:  # noqa: BLE001 - info reports, it does not fail
        return f"MKL vs own kernel on {cpu}: the probe failed ({type(exc).__name__}: {exc})"
    return (f"MKL vs own kernel on {cpu}, probed now (float32 forward {PROBE_SIZE}, {threads} threads, fastest "
            f"of {PROBE_REPEATS}): own {own * 1e3:.3g} ms, mkl {mkl * 1e3:.3g} ms -> {_verdict(own, mkl)} here; "
            "`lstm-backends bench` times every size")
