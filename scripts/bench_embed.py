"""The LSTM step called from the user's own ``@njit`` code (``lstm_backends.jit``) against the
Python-level calls it replaces, every contender in its own fresh process.

Contenders, float32, per size ``B, I, H`` (per-step figures; ``T = 100`` for the sequences):

``jit-cell``
    a loop of ``lj.cell(x, h, c, w, h, c)`` (in place) inside one ``@njit`` function
``be-cell``
    the numba backend's ``be.cell(x, h, c, params, out=(h_out, c_out))`` from Python
``torch-cell``
    ``torch.nn.LSTMCell`` under ``torch.inference_mode()`` (skipped, with the reason, without torch)
``jit-loop``
    a ``T``-step loop of ``lj.cell`` inside one ``@njit`` function, writing ``y[t]``
``jit-forward``
    ``lj.forward`` over the ``T`` steps, called inside an ``@njit`` function
``jit-forward-py``
    ``lj.forward`` called from Python (its argument checks included)
``be-forward``
    the numba backend's ``be.forward(x, params, h0, c0, out=...)`` over the ``T`` steps

The conventions of ``scripts/compare_cpu.py`` (:mod:`lstm_backends._peers`): each measurement
runs in a fresh interpreter (this script with ``--child``) after waiting for an idle machine,
rounds alternate the order of the contenders, a process compiles and warms up before it times
samples for a fixed wall-clock budget and reports its median, the table gives the median over
the rounds and the spread (slowest / fastest process), a contender whose processes spread by
more than ``MAX_SPREAD`` runs again in fresh processes, and every output is checked: against
the float64 reference, and the ``lstm_backends.jit`` rows bitwise against the numba backend.
The ratios are given from the medians and *paired* (median over the rounds of the ratio within
a round).  Threads: ``NUMBA_NUM_THREADS``, ``OMP``/``MKL``/``OPENBLAS_NUM_THREADS`` and
``LSTM_BACKENDS_NUM_THREADS`` are set to the budget, and torch gets ``torch.set_num_threads``.
The ``@njit`` functions here are ``cache=True`` (``scripts/__pycache__``), so only the first
process compiles them.

Other jobs on the machine: each process measures the CPU time the rest of the machine used
while it timed (``/proc/stat`` less its own); a process that timed beside more than
``FOREIGN_MAX`` CPUs of it runs again (``RETRIES`` times at most; the table's *loaded* column
counts those kept).  On a 2-vCPU VM a busy neighbour deschedules the 2-thread contenders
(``be.cell``, ``be.forward``, torch) and their steps then take milliseconds.  After
``--max-minutes`` nothing is re-run or waited for, so a busy machine does not stretch the run.

Usage::

    python scripts/bench_embed.py [--rounds 5] [--budget 0.4] [--threads 2] [--quick]
        [--json out.json] [--no-idle] [--max-minutes 6]

``--quick``: 2 rounds, 0.15 s per process, without the bonus B = 8 row.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numba
import numpy as np

import lstm_backends as lb
from lstm_backends import jit as lj

#: (B, I, H): the issue's two sizes and a bonus batch of 8
SIZES = [(1, 64, 128), (1, 128, 256), (8, 64, 128)]
STEPS = 100
CELLS = ["jit-cell", "be-cell", "torch-cell"]
SEQUENCES = ["jit-loop", "jit-forward", "jit-forward-py", "be-forward"]
LABELS = {"jit-cell": "lj.cell loop in @njit (in place)", "be-cell": "be.cell(out=) from Python",
          "torch-cell": "torch.nn.LSTMCell (inference_mode)", "jit-loop": "T-step lj.cell loop in @njit",
          "jit-forward": "lj.forward in @njit", "jit-forward-py": "lj.forward from Python",
          "be-forward": "be.forward(out=) from Python"}
#: (name, numerator, denominator, target): the issue's ratios of per-step times, and one more
RATIOS = [("lj.cell / be.cell", "jit-cell", "be-cell", 1 / 3),
          ("lj.cell / torch LSTMCell", "jit-cell", "torch-cell", 0.3),
          ("T-step lj.cell loop / be.forward", "jit-loop", "be-forward", 1.5),
          ("lj.forward (@njit) / be.forward", "jit-forward", "be-forward", None)]
SEED = 0
#: seconds one timed sample lasts (the inner repeat count is chosen for it)
SAMPLE_S = 2e-3
#: CPUs of other load while a process timed above which it runs again (a busy neighbour on a
#: 2-vCPU machine deschedules the 2-thread contenders: their steps then take milliseconds)
FOREIGN_MAX = 0.15
#: such re-launches per measurement at most
RETRIES = 3
#: seconds to wait for an idle machine before each process, at most
IDLE_WAIT_S = 5.0


# ---------------------------------------------------------------------------- the user's @njit code

@numba.njit(cache=True)
def _cell_loop(x, h, c, w, n):
    """``n`` steps of ``lj.cell``, in place, on the same input."""
    for _ in range(n):
        lj.cell(x, h, c, w, h, c)


@numba.njit(cache=True)
def _seq_loop(xs, w, h0, c0, y, c):
    """The ``T`` steps of a sequence, ``y[t]`` the new h (``y[t - 1]`` the old), ``c`` in place."""
    c[:] = c0
    lj.cell(xs[0], h0, c, w, y[0], c)
    for t in range(1, xs.shape[0]):
        lj.cell(xs[t], y[t - 1], c, w, y[t], c)


@numba.njit(cache=True)
def _forward(xs, w, h0, c0, y, h_n, c_n):
    lj.forward(xs, w, h0, c0, y, h_n, c_n)


# ---------------------------------------------------------------------------- one process

def _problem(b: int, i: int, h: int, cell: bool) -> Any:
    from lstm_backends.testing import random_problem

    return random_problem(1 if cell else STEPS, b, i, h, dtype=np.float32, seed=SEED)


def _calibrate(run: Callable[[int], Any]) -> int:
    """How many repeats make one sample last about :data:`SAMPLE_S` (after a warm-up call: the
    first call compiles or loads the kernels)."""
    run(1)
    n = 1
    while True:
        start = time.perf_counter()
        run(n)
        took = time.perf_counter() - start
        if took >= SAMPLE_S / 4 or n >= 100_000:
            return max(1, min(100_000, round(n * SAMPLE_S / max(took, 1e-9))))
        n *= 4


def _cpu_ticks() -> tuple[int, int]:
    """(busy, all) jiffies of the whole machine so far (``/proc/stat``; (0, 0) elsewhere)."""
    try:
        with open("/proc/stat") as fh:
            v = [int(t) for t in fh.readline().split()[1:9]]
    except (OSError, ValueError):
        return 0, 0
    return sum(v) - v[3] - v[4], sum(v)


def _time(run: Callable[[int], Any], steps_per_repeat: int, budget: float) -> tuple[float, int, int, float]:
    """(median seconds per step, samples, repeats per sample, foreign CPUs): ``run(n)`` does ``n``
    repeats of ``steps_per_repeat`` steps; 3 untimed samples, then samples until ``budget`` seconds
    (5 at least).  *Foreign CPUs*: the machine's busy CPU time during the samples less this
    process's own (all its threads), per second of wall time: other jobs (or the hypervisor's steal)
    that shared the cores with the timing."""
    n = _calibrate(run)
    for _ in range(3):
        run(n)
    samples: list[float] = []
    busy0, _ = _cpu_ticks()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    end = wall0 + budget
    while len(samples) < 5 or (time.perf_counter() < end and len(samples) < 5000):
        start = time.perf_counter()
        run(n)
        samples.append((time.perf_counter() - start) / (n * steps_per_repeat))
    busy1, _ = _cpu_ticks()
    cpu1, wall1 = time.process_time(), time.perf_counter()
    hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    foreign = max(0.0, (busy1 - busy0) / hz - (cpu1 - cpu0)) / (wall1 - wall0) if busy1 else 0.0
    return statistics.median(samples), len(samples), n, foreign


def run_child(name: str, b: int, i: int, h: int, threads: int, budget: float, save: str | None) -> dict:
    """Time one contender in this process; returns the JSON-able record (``median_s`` per step)."""
    cell = name in CELLS
    p = _problem(b, i, h, cell)
    params = p.params
    x0 = np.ascontiguousarray(p.x[0])
    info: dict[str, Any] = {}
    outputs: Callable[[], tuple] | None = None
    if name.startswith("jit"):
        w = lj.prepare(params)
        if name == "jit-cell":
            hs, cs = p.h0.copy(), p.c0.copy()

            def run(n: int) -> None:
                _cell_loop(x0, hs, cs, w, n)

            def outputs() -> tuple:  # one step from (h0, c0)
                h1, c1 = p.h0.copy(), p.c0.copy()
                _cell_loop(x0, h1, c1, w, 1)
                return h1[None], h1, c1
        else:
            y = np.empty((STEPS, b, h), np.float32)
            h_n, c_n = np.empty((b, h), np.float32), np.empty((b, h), np.float32)
            if name == "jit-loop":
                def once() -> None:
                    _seq_loop(p.x, w, p.h0, p.c0, y, c_n)
                    h_n[:] = y[-1]
            elif name == "jit-forward":
                def once() -> None:
                    _forward(p.x, w, p.h0, p.c0, y, h_n, c_n)
            else:
                def once() -> None:
                    lj.forward(p.x, w, p.h0, p.c0, y, h_n, c_n)

            def run(n: int) -> None:
                for _ in range(n):
                    once()

            def outputs() -> tuple:
                once()
                return y, h_n, c_n
    elif name.startswith("be"):
        be = lb.get_backend("numba")
        info["path"] = be.describe_path(b, h, np.float32, steps=1 if cell else STEPS, input_size=i, cell=cell)
        info["budget"] = getattr(be, "budget", None)
        if cell:
            out = (np.empty_like(p.h0), np.empty_like(p.c0))

            def run(n: int) -> None:
                for _ in range(n):
                    be.cell(x0, p.h0, p.c0, params, out=out)

            def outputs() -> tuple:
                be.cell(x0, p.h0, p.c0, params, out=out)
                return out[0][None], out[0], out[1]
        else:
            outs = (np.empty((STEPS, b, h), np.float32), np.empty((b, h), np.float32), np.empty((b, h), np.float32))

            def run(n: int) -> None:
                for _ in range(n):
                    be.forward(p.x, params, p.h0, p.c0, out=outs)

            def outputs() -> tuple:
                be.forward(p.x, params, p.h0, p.c0, out=outs)
                return outs
    elif name == "torch-cell":
        import torch

        torch.set_num_threads(threads)
        info["version"] = torch.__version__
        module = torch.nn.LSTMCell(i, h, dtype=torch.float32)
        with torch.no_grad():
            for n_, v in zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"), params):
                getattr(module, n_).copy_(torch.from_numpy(np.asarray(v)))
        tx, th, tc = torch.from_numpy(x0), torch.from_numpy(p.h0), torch.from_numpy(p.c0)

        def run(n: int) -> None:
            with torch.inference_mode():
                for _ in range(n):
                    module(tx, (th, tc))

        def outputs() -> tuple:
            with torch.inference_mode():
                hh, cc = module(tx, (th, tc))
            return hh.numpy()[None], hh.numpy(), cc.numpy()
    else:
        raise ValueError(f"unknown contender {name!r}: {', '.join(CELLS + SEQUENCES)}")
    med, samples, repeat, foreign = _time(run, 1 if cell else STEPS, budget)
    if save:
        np.savez(save, **dict(zip(("y", "h_n", "c_n"), (np.array(a) for a in outputs()))))
    return {"name": name, "median_s": med, "samples": samples, "repeat": repeat, "foreign_cpu": foreign, **info}


# ---------------------------------------------------------------------------- the parent

def _cpu() -> tuple[str, str, str]:
    """(model name with family/model, ISA, caches) of this machine, from /proc/cpuinfo and sysfs."""
    from lstm_backends._probe import cpu_name

    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if not line.strip():
                    break
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    flags = set(fields.get("flags", "").split())
    name = cpu_name()
    if "cpu family" in fields and "model" in fields:
        name += f" (family {fields['cpu family']}, model {fields['model']})"
    isa = "avx512f" if "avx512f" in flags else "avx2 (no avx512f)" if "avx2" in flags else \
        platform.machine() or "unknown"
    caches = []
    base = "/sys/devices/system/cpu/cpu0/cache"
    for k in range(8):
        try:
            level, kind, size, shared = (Path(f"{base}/index{k}/{f}").read_text().strip()
                                         for f in ("level", "type", "size", "shared_cpu_list"))
        except OSError:
            break
        if kind != "Instruction":
            who = "per core" if shared.isdigit() else f"shared by cpus {shared}"
            caches.append(f"L{level}{'d' if kind == 'Data' else ''} {size} {who}")
    return name, isa, ", ".join(caches) or "unknown"


def _launch(name: str, size: tuple, threads: int, budget: float, save: str | None, idle: bool,
            timeout: float) -> dict:
    from lstm_backends._peers import wait_idle

    if idle:
        wait_idle(max_wait=IDLE_WAIT_S)
    t = str(threads)
    env = dict(os.environ, NUMBA_NUM_THREADS=t, OMP_NUM_THREADS=t, MKL_NUM_THREADS=t, OPENBLAS_NUM_THREADS=t,
               LSTM_BACKENDS_NUM_THREADS=t)
    cmd = [sys.executable, os.path.abspath(__file__), "--child", name, "--size", ",".join(map(str, size)),
           "--threads", t, "--budget", str(budget)]
    if save:
        cmd += ["--save", save]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    for line in reversed(res.stdout.strip().splitlines()):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("name") == name:
            return record
    raise RuntimeError(f"{name} at B,I,H={size} failed (exit {res.returncode}):\n{res.stdout[-1500:]}\n"
                       f"{res.stderr[-3000:]}")


def _check(save: str, b: int, i: int, h: int, cell: bool) -> float:
    """Worst error of the saved outputs against the float64 reference (fraction of the tolerance)."""
    from lstm_backends.testing import worst_error
    from lstm_backends.testing._problems import reference_cell, reference_forward

    p = _problem(b, i, h, cell)
    if cell:
        ref_h, ref_c = reference_cell(p.x[0], p.h0, p.c0, p.params)
        ref = (ref_h[None], ref_h, ref_c)
    else:
        ref = reference_forward(p)
    with np.load(save) as got:
        return max(worst_error(got[n], e, np.float32) for n, e in zip(("y", "h_n", "c_n"), ref))


def _bitwise(a: str, b: str) -> bool:
    with np.load(a) as x, np.load(b) as y:
        return all(np.array_equal(x[n], y[n]) for n in ("y", "h_n", "c_n"))


def measure(sizes: list, names: list[str], *, threads: int, rounds: int, budget: float, idle: bool,
            deadline: float, progress: Callable[[str], None] = print, timeout: float = 600.0) -> list[dict]:
    """Every contender at every size, each run in a fresh process, ``rounds`` alternating rounds;
    returns one row per (size, contender).

    A process that shared the cores with other jobs while it timed (more than
    :data:`FOREIGN_MAX` CPUs of foreign load) runs again, up to :data:`RETRIES` times, and a
    contender whose processes still spread by more than ``MAX_SPREAD`` gets up to ``RERUNS`` more
    processes, as in ``compare_cpu.py``.  Once ``time.monotonic()`` passes ``deadline`` none of
    these happen and no process waits for an idle machine any more (the rounds always complete)."""
    from lstm_backends._peers import MAX_SPREAD, RERUNS, _spread_out

    def launch(name: str, size: tuple, save: str | None, where: str) -> dict:
        record = _launch(name, size, threads, budget, save, idle and time.monotonic() < deadline, timeout)
        tries = 0
        while record["foreign_cpu"] > FOREIGN_MAX and tries < RETRIES and time.monotonic() < deadline:
            tries += 1
            progress(f"{where}: {record['foreign_cpu']:.2f} CPUs of other load while it timed: again "
                     f"({tries}/{RETRIES})")
            record = _launch(name, size, threads, budget, save, idle, timeout)
        record["retries"] = tries
        return record

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for k, size in enumerate(sizes):
            runs: dict[str, list[dict]] = {n: [] for n in names}
            saves = {n: os.path.join(tmp, f"{k}_{n}.npz") for n in names}
            for r in range(rounds):
                for name in names if r % 2 == 0 else names[::-1]:
                    where = f"[{k + 1}/{len(sizes)}] B,I,H={size} round {r + 1}/{rounds}: {name}"
                    progress(where)
                    runs[name].append(launch(name, size, saves[name] if r == 0 else None, where))
            for name in names:
                extra = 0
                while (_spread_out([d["median_s"] for d in runs[name]], MAX_SPREAD) and extra < RERUNS
                       and time.monotonic() < deadline):
                    extra += 1
                    meds = [d["median_s"] for d in runs[name]]
                    where = f"[{k + 1}/{len(sizes)}] B,I,H={size}: {name}"
                    progress(f"{where} spread {max(meds) / min(meds):.2f}x > {MAX_SPREAD}x: re-run {extra}/{RERUNS}")
                    runs[name].append(launch(name, size, None, where))
                meds = [d["median_s"] for d in runs[name]]
                cell = name in CELLS
                ref_name = "be-cell" if cell else "be-forward"
                bitwise = _bitwise(saves[name], saves[ref_name]) if name.startswith("jit") and ref_name in runs \
                    else None
                first = runs[name][0]
                rows.append({"size": list(size), "name": name, "median_s": statistics.median(meds), "runs_s": meds,
                             "spread": max(meds) / min(meds) if len(meds) > 1 else float("nan"), "reruns": extra,
                             "noisy": _spread_out(meds, MAX_SPREAD), "samples": first["samples"],
                             "repeat": first["repeat"], "foreign_cpu": [d["foreign_cpu"] for d in runs[name]],
                             "retries": sum(d["retries"] for d in runs[name]),
                             "loaded": sum(d["foreign_cpu"] > FOREIGN_MAX for d in runs[name]),
                             "err_tol": _check(saves[name], *size, cell), "bitwise_numba": bitwise,
                             **{k_: v for k_, v in first.items() if k_ in ("path", "version", "budget")}})
    return rows


def ratios(rows: list[dict], rounds: int) -> list[dict]:
    """The issue's ratios per size: from the medians, and paired (median of the per-round ratios)."""
    out = []
    by = {(tuple(r["size"]), r["name"]): r for r in rows}
    for size in dict.fromkeys(tuple(r["size"]) for r in rows):
        for label, num, den, target in RATIOS:
            a, b = by.get((size, num)), by.get((size, den))
            if a is None or b is None:
                continue
            n = min(rounds, len(a["runs_s"]), len(b["runs_s"]))
            paired = statistics.median(a["runs_s"][j] / b["runs_s"][j] for j in range(n))
            value = a["median_s"] / b["median_s"]
            out.append({"size": list(size), "ratio": label, "value": value, "paired": paired, "target": target,
                        "met": None if target is None else bool(value <= target and paired <= target)})
    return out


def _table(header: list[str], body: list[list[str]], left: tuple = ()) -> str:
    widths = [max(len(row[c]) for row in [header, *body]) for c in range(len(header))]
    lines = []
    for n, row in enumerate([header, *body]):
        lines.append("  ".join(cell.ljust(w) if c in left else cell.rjust(w)
                               for c, (cell, w) in enumerate(zip(row, widths))).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt_target(t: float | None) -> str:
    return "-" if t is None else "<= 1/3" if abs(t - 1 / 3) < 1e-9 else f"<= {t:g}"


def report(rows: list[dict], rats: list[dict], head: str) -> str:
    body = []
    for r in rows:
        b, i, h = r["size"]
        spread = "-" if r["spread"] != r["spread"] else f"{r['spread']:.2f}"
        spread += f" re-run x{r['reruns']}" if r["reruns"] else ""
        spread += " NOISY" if r["noisy"] else ""
        loaded = f"{r['loaded']}/{len(r['runs_s'])}" + (f" ({r['retries']} again)" if r["retries"] else "")
        check = f"{r['err_tol']:.2g}" + ("" if r["err_tol"] <= 1 else " FAILS")
        if r["bitwise_numba"] is not None:
            check += ", bitwise" if r["bitwise_numba"] else ", NOT bitwise"
        gflops = 2 * 4 * h * (i + h) * b / r["median_s"] / 1e9
        body.append([f"B{b} I{i} H{h}", LABELS[r["name"]], f"{r['median_s'] * 1e6:.2f}", f"{gflops:.1f}",
                     "/".join(f"{v * 1e6:.2f}" for v in r["runs_s"]), spread, loaded, check, r.get("path", "")])
    out = [head, "", _table(["size", "contender", "us/step", "GFLOP/s", "per process (us/step)", "spread", "loaded",
                             "err/tol", "path"], body, left=(1, 4, 8))]
    rbody = [[f"B{s[0]} I{s[1]} H{s[2]}", r["ratio"], f"{r['value']:.3f}", f"{r['paired']:.3f}",
              _fmt_target(r["target"]), "-" if r["met"] is None else "yes" if r["met"] else "NO"]
             for r in rats for s in [r["size"]]]
    out += ["", _table(["size", "ratio (per-step times)", "medians", "paired", "target", "met"], rbody, left=(1,))]
    out += ["",
            "us/step: the median over the processes of each process's median (sequences: per call / T)",
            "GFLOP/s: 2 * 4H * (I + H) * B per step over the median",
            "spread: slowest / fastest process",
            f"loaded: processes that timed beside more than {FOREIGN_MAX} CPUs of other jobs' load, kept after "
            f"{RETRIES} re-launches at most ('again': re-launches)",
            "err/tol: worst error against the float64 reference, as a fraction of the float32 tolerance; bitwise: "
            "the same bits as the numba backend's cell / forward",
            "paired: the median over the rounds of the ratio within a round; met: medians and paired <= target"]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--budget", type=float, default=0.4, help="seconds of timed samples per process")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="2 rounds, 0.15 s per process, no B = 8 row")
    ap.add_argument("--json", metavar="PATH", help="save the rows and ratios")
    ap.add_argument("--no-idle", action="store_true", help="do not wait for an idle machine before each process")
    ap.add_argument("--max-minutes", type=float, default=6.0,
                    help="after this many minutes no more re-launches, re-runs or waits for an idle machine (the "
                         "rounds always complete: a quiet machine runs the defaults in about 4 minutes)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--size", help=argparse.SUPPRESS)
    ap.add_argument("--save", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        b, i, h = (int(v) for v in args.size.split(","))
        record = run_child(args.child, b, i, h, args.threads, args.budget, args.save)
        print(json.dumps(record, default=str), flush=True)
        return 0

    import importlib.util

    rounds, budget, sizes = args.rounds, args.budget, list(SIZES)
    if args.quick:
        rounds, budget, sizes = 2, 0.15, sizes[:2]
    names = list(CELLS + SEQUENCES)
    torch_note = ""
    if importlib.util.find_spec("torch") is None:
        names.remove("torch-cell")
        torch_note = "torch.nn.LSTMCell skipped: torch is not installed (pip install torch)"
        print(torch_note)
    cpu, isa, caches = _cpu()
    start = time.perf_counter()
    rows = measure(sizes, names, threads=args.threads, rounds=rounds, budget=budget, idle=not args.no_idle,
                   deadline=time.monotonic() + 60 * args.max_minutes)
    rats = ratios(rows, rounds)
    be = lb.get_backend("numba")
    torch_v = ""
    if "torch-cell" in names:
        torch_v = ", torch " + next((r["version"] for r in rows if r["name"] == "torch-cell"), "?")
    head = (f"CPU: {cpu}, ISA {isa}; {os.cpu_count()} CPUs; caches: {caches}\n"
            f"python {platform.python_version()}, numpy {np.__version__}, numba {be.version()}{torch_v}, "
            f"lstm_backends {lb.__version__}\n"
            f"float32, {args.threads} threads (NUMBA_NUM_THREADS, OMP/MKL/OPENBLAS_NUM_THREADS, "
            f"LSTM_BACKENDS_NUM_THREADS, torch.set_num_threads); every contender in its own fresh process, "
            f"{rounds} alternating rounds, {budget:g} s of samples per process, medians; sequences T={STEPS}")
    if torch_note:
        head += "\n" + torch_note
    print()
    print(report(rows, rats, head))
    print(f"\n{time.perf_counter() - start:.0f} s")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"cpu": cpu, "isa": isa, "caches": caches, "threads": args.threads, "rounds": rounds,
                       "budget_s": budget, "steps": STEPS, "rows": rows, "ratios": rats}, fh, indent=2, default=str)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
