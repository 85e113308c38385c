"""The CPU comparison of the speed issue, fairly: the numba backend against torch.nn.LSTM,
onnxruntime's LSTM and OpenVINO's, every contender in its own fresh process.

Built on :func:`lstm_backends._peers.compare` (the machinery of ``lstm-backends bench``): the same
seeded problem for everyone, float32, the same thread budget, rounds in alternating order, the
median of each process's median, every output checked against the float64 reference.  For each
size it prints the medians, GFLOP/s (``2 * 4H * (I + H) * B * T`` per forward), the % of NumPy's
sgemm 2048^3 rate measured in the same run, ours / best peer (from the medians, and the median
of the per-round ratios: on a shared VM whose speed drifts over minutes the paired ratio is the
robust figure), and the kernel path the numba backend took.

Usage::

    python scripts/compare_cpu.py [--threads 2] [--rounds 3] [--budget 0.5] [--json out.json]
        [--mkl] [--before PATH] [--features] [--float64] [--cold] [--plot docs/_static/cpu.png]
        [--precision bf16] [--precision bf16x3] [--prepared] [--beyond-cache]

``--mkl``: also ours with ``LSTM_BACKENDS_GEMM=mkl`` (MKL's packed GEMM); ``--before PATH``: also
another checkout of the library (e.g. the kernels before a change) as ``ours:numba@before``;
``--features``: also the full ONNX cell (peepholes + clip) and its cost over the plain kernel;
``--float64``: also our float64 forward, as a ratio to our float32 one; ``--cold``: the first
float32 forward in a fresh process with an empty Numba cache, then with the warm cache
(import included), each in fresh processes; ``--precision bf16``: also ours in the ``bf16`` mode
against torch's LSTM in ``torch.bfloat16`` and OpenVINO with ``INFERENCE_PRECISION_HINT=bf16``
(each bf16 row's ratio is against the best bf16 peer; the ``path`` column says which kernel ran,
and OpenVINO's record which precision it really ran: it falls back to f32 on CPUs without
bfloat16 instructions); ``--precision bf16x3``: also ours in ``bf16x3`` (its ratio against the
float32 peers).  Run it on a quiet machine (``--idle`` waits for one
before every process; on by default).
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

import numpy as np

# (T, B, I, H) of the table, and its targets for ours / best peer
SIZES = [(100, 1, 64, 128), (1000, 1, 128, 256), (100, 4, 128, 256), (100, 16, 128, 256), (100, 64, 256, 512),
         (50, 256, 512, 1024)]
TARGETS = {(100, 1, 64, 128): 0.7, (1000, 1, 128, 256): 0.7, (100, 4, 128, 256): 0.8, (100, 16, 128, 256): 0.9,
           (100, 64, 256, 512): 1.0, (50, 256, 512, 1024): 1.05, "cell": 0.5}
CELL = (1, 1, 128, 256)
# issue 17: ours-bf16 / best bf16 peer on a CPU with AMX (without AMX but with AVX512-BF16: 0.9 everywhere)
BF16_TARGETS_AMX = {(100, 1, 64, 128): 0.5, (1000, 1, 128, 256): 0.6, (100, 4, 128, 256): 0.7,
                    (100, 16, 128, 256): 0.8, (100, 64, 256, 512): 0.9, (50, 256, 512, 1024): 1.0}
BF16_TARGET_AVX512BF16 = 0.9
# issue 17: weights beyond the cache (repacked on every call unless prepared); ours prepared / best peer
BEYOND = [(100, 1, 1024, 1024), (100, 8, 512, 1024), (20, 1, 2048, 2048)]
BEYOND_TARGET = 0.9

COLD = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
import lstm_backends as lb
t_import = time.perf_counter() - t0
from lstm_backends.testing import random_problem
p = random_problem(100, 16, 128, 256, dtype=np.float32, seed=0)
be = lb.get_backend("numba")
t1 = time.perf_counter()
p.forward(be)
t2 = time.perf_counter()
out = {"import": t_import, "first": t2 - t1, "setup": t1 - t0 - t_import, "path": be.describe_path(16, 256)}
if FURTHER:  # the first call of each further variant, in this order, after the float32 forward
    q = random_problem(100, 16, 128, 256, dtype=np.float32, seed=1, peephole=True, clip=3.0, input_forget=True)
    steps = [("peephole+clip+input_forget forward", lambda: q.forward(be)),
             ("float64 forward", lambda: p.astype(np.float64).forward(be)),
             ("cell", lambda: be.cell(p.x[0], p.h0, p.c0, p.params)),
             ("forward_train + backward", lambda: be.backward(p.forward_train(be)[3], *p.output_grads(seed=0)))]
    for name, run in steps:
        t = time.perf_counter()
        run()
        out[name] = time.perf_counter() - t
print(json.dumps(out))
"""


def cold_start(repeat: int = 3, idle: bool = True) -> dict:
    """Median seconds in fresh processes: ``import lstm_backends``, the first float32 forward (B16 T100
    I128 H256) with an empty Numba cache and with a warm one, and (empty cache) the first call of each
    further variant after it."""
    from lstm_backends._peers import wait_idle

    runs: dict[str, list] = {"empty cache": [], "warm cache": []}
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as cache:
            env = dict(os.environ, NUMBA_CACHE_DIR=cache)
            for label in runs:
                if idle:
                    wait_idle()
                code = COLD.replace("FURTHER", "True" if label == "empty cache" else "False")
                res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                     check=True)
                runs[label].append(json.loads(res.stdout.strip().splitlines()[-1]))
    out = {}
    for label, v in runs.items():
        out[label] = {"import_s": statistics.median(r["import"] for r in v),
                      "first_forward_s": statistics.median(r["first"] for r in v),
                      "total_s": statistics.median(r["import"] + r["setup"] + r["first"] for r in v),
                      "path": v[0]["path"]}
        further = [k for k in v[0] if k not in ("import", "first", "setup", "path")]
        out[label]["further_s"] = {k: statistics.median(r[k] for r in v) for k in further}
    return out


def _bf16_target(key) -> float | None:
    """The issue's target for ours-bf16 / best bf16 peer on this host's bfloat16 instructions."""
    from lstm_backends.backends._numba.ir import BF16_FEATURES

    if "amx-bf16" in BF16_FEATURES:
        return BF16_TARGETS_AMX.get(key)
    return BF16_TARGET_AVX512BF16 if "avx512bf16" in BF16_FEATURES else None


def _ran(r) -> str:
    """What a peer ran, where it chose: OpenVINO's effective precision."""
    return f"ran {r.info['precision']}" if r.info.get("precision") and not r.name.startswith("ours") else ""


def _paired(rows: list, name: str, peers: list[str]) -> float:
    """Median over rounds of ours / the best peer of the same round."""
    ours = next(r for r in rows if r.name == name)
    others = [r for r in rows if r.name in peers]
    if not others:
        return float("nan")
    # the rounds every one of them ran (a re-run adds processes to a spread contender only)
    rounds = min(len(r.runs_s) for r in [ours, *others])
    ratios = [ours.runs_s[k] / min(o.runs_s[k] for o in others) for k in range(rounds)]
    return statistics.median(ratios)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--budget", type=float, default=0.5, help="seconds of timed calls per process")
    ap.add_argument("--size", action="append", help="T,B,I,H (default: the issue's table)")
    ap.add_argument("--no-cell", action="store_true")
    ap.add_argument("--mkl", action="store_true", help="also ours with LSTM_BACKENDS_GEMM=mkl")
    ap.add_argument("--before", metavar="PATH", help="also the lstm_backends found at PATH (another checkout)")
    ap.add_argument("--features", action="store_true", help="also the full ONNX cell (peepholes + clip)")
    ap.add_argument("--float64", action="store_true", help="also our float64 forward")
    ap.add_argument("--prepared", action="store_true",
                    help="also ours on weights prepared once (Backend.prepare: no per-call packing)")
    ap.add_argument("--beyond-cache", action="store_true",
                    help="the sizes whose weights exceed the caches (issue 17), with --prepared")
    ap.add_argument("--cold", action="store_true", help="cold / warm start in fresh processes")
    ap.add_argument("--precision", action="append", choices=["bf16", "bf16x3"],
                    help="also ours in this precision mode (bf16: and torch / OpenVINO in bf16); repeatable")
    ap.add_argument("--no-idle", action="store_true", help="do not wait for an idle machine before each process")
    ap.add_argument("--json")
    ap.add_argument("--plot", metavar="FILE.png", help="GFLOP/s of ours and the peers per size (matplotlib)")
    ap.add_argument("--replot", nargs="+", metavar="JSON",
                    help="only draw --plot from the --json files of earlier runs (e.g. one per --size)")
    args = ap.parse_args()
    if args.replot:
        return _replot(args.replot, args.plot)

    import lstm_backends as lb
    from lstm_backends._bench import Size, parse_size, print_progress
    from lstm_backends._peers import available_peers, bf16_peak_text, compare
    from lstm_backends.backends import _mkl

    sizes = [parse_size(s) for s in args.size] if args.size else [Size(*s) for s in SIZES]
    if args.beyond_cache:
        sizes, args.prepared = [Size(*s) for s in BEYOND], True
    peers = available_peers()
    ours = ["ours:numba"]
    envs: dict[str, dict[str, str]] = {}
    if args.mkl:
        if not _mkl.available():
            print(f"--mkl: MKL {_mkl.info()}", file=sys.stderr)
            return 2
        ours.append("ours:numba@mkl")
        envs["ours:numba@mkl"] = {"LSTM_BACKENDS_GEMM": "mkl"}
    if args.before:
        ours.append("ours:numba@before")
        envs["ours:numba@before"] = {"PYTHONPATH": os.path.abspath(args.before)}
    if args.features:
        ours.append("ours:numba@full")
    if args.float64:
        ours.append("ours:numba@float64")
    if args.prepared:
        ours.append("ours:numba@prepared")
    for mode in args.precision or []:
        ours.append(f"ours:numba@{mode}")
        if mode == "bf16":
            peers += [f"{p}@bf16" for p in ("torch", "openvino") if p in peers]
    idle = not args.no_idle
    peak, rows = compare(sizes, ours + peers, threads=args.threads, rounds=args.rounds, budget=args.budget,
                         cell=None if args.no_cell else Size(*CELL), progress=print_progress, envs=envs, idle=idle)
    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} CPUs; python {platform.python_version()}, "
          f"numpy {np.__version__}, numba {lb.get_backend('numba').version()}, lstm_backends {lb.__version__}")
    bf16_peak = bf16_peak_text(rows, "'% sgemm'")
    print(f"float32, {args.threads} threads; every contender in its own fresh process, {args.rounds} alternating "
          f"rounds, medians; sgemm 2048^3 float32 (NumPy) in this run: {peak:.0f} GFLOP/s{bf16_peak}\n")
    header = ["T,B,I,H", "contender", "median", "GFLOP/s", "% sgemm", "/ best peer", "paired", "target", "path"]
    table = [header]
    by_size: dict = {}
    for r in rows:
        by_size.setdefault((r.size, "cell" in r.name), []).append(r)
    summary = []
    for (_size, is_cell), group in by_size.items():
        peer_names = [n for n in ("torch-cell" if is_cell else "torch", "onnxruntime", "openvino")
                      if any(g.name == n for g in group)]
        bf16_peers = [g.name for g in group if not g.name.startswith("ours") and g.name.endswith("@bf16")]
        for r in group:
            t, b, i, h = r.size
            key = "cell" if is_cell else (t, b, i, h)
            mine = r.name.startswith("ours")
            paired = _paired(group, r.name, bf16_peers if r.name.endswith("@bf16") else peer_names) if mine \
                else float("nan")
            target = TARGETS.get(key) if r.name in ("ours:numba", "ours-cell:numba") else None
            if r.name == "ours:numba@prepared" and key in BEYOND:
                target = BEYOND_TARGET
            if r.name == "ours:numba@bf16":
                target = _bf16_target(key)
            med = f"{r.median_s * 1e6:.1f} us" if is_cell else f"{r.median_s * 1e3:.3f} ms"
            table.append([f"cell B{b} I{i} H{h}" if is_cell else f"{t},{b},{i},{h}", r.name, med, f"{r.gflops:.0f}",
                          f"{r.pct_peak:.0f}%", "-" if np.isnan(r.ratio_best_peer) else f"{r.ratio_best_peer:.2f}",
                          "-" if np.isnan(paired) else f"{paired:.2f}", "-" if target is None else f"<= {target}",
                          r.info.get("path", "") or _ran(r)])
            if not r.agrees:
                table[-1][1] += " (DISAGREES)"
            summary.append({**r.as_dict(), "paired_ratio": paired, "target": target})
    widths = [max(len(row[c]) for row in table) for c in range(len(header))]
    for n, row in enumerate(table):
        print("  ".join(cell.ljust(w) if c in (1, 8) else cell.rjust(w)
                        for c, (cell, w) in enumerate(zip(row, widths))))
        if n == 0:
            print("  ".join("-" * w for w in widths))
    extra = {}
    for (size, _is_cell), group in by_size.items():
        names = {g.name: g for g in group}
        base = names.get("ours:numba")
        if base is None:
            continue
        if "ours:numba@full" in names:
            extra.setdefault("full_cell_cost", {})[str(size)] = names["ours:numba@full"].median_s / base.median_s - 1
        if "ours:numba@float64" in names:
            f64 = names["ours:numba@float64"].median_s
            extra.setdefault("float64_over_float32", {})[str(size)] = f64 / base.median_s
        for mode in ("bf16", "bf16x3"):
            if f"ours:numba@{mode}" in names:
                extra.setdefault(f"{mode}_over_float32", {})[str(size)] = \
                    names[f"ours:numba@{mode}"].median_s / base.median_s
    if "full_cell_cost" in extra:
        print("\npeepholes + clip over the plain kernel: " + ", ".join(
            f"{k} {100 * v:+.1f}%" for k, v in extra["full_cell_cost"].items()))
    if "float64_over_float32" in extra:
        print("float64 / float32: " + ", ".join(f"{k} {v:.2f}x" for k, v in extra["float64_over_float32"].items()))
    for mode in ("bf16", "bf16x3"):
        if f"{mode}_over_float32" in extra:
            print(f"ours {mode} / ours float32: " + ", ".join(
                f"{k} {v:.2f}x" for k, v in extra[f"{mode}_over_float32"].items()))
    cold = None
    if args.cold:
        cold = cold_start(idle=idle)
        for label, v in cold.items():
            print(f"cold start, {label}: import {v['import_s']:.3f} s, first float32 forward "
                  f"{v['first_forward_s']:.2f} s, {v['total_s']:.2f} s in all ({v['path']})")
            for name, s in v["further_s"].items():
                print(f"  then the first {name}: {s:.2f} s")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"threads": args.threads, "rounds": args.rounds, "sgemm_gflops": peak, "rows": summary,
                       "extra": extra, "cold": cold}, fh, indent=2, default=str)
        print(f"wrote {args.json}")
    if args.plot:
        _plot([r for r in rows if "cell" not in r.name and "@" not in r.name], peak, args.plot, args.threads)
        print(f"wrote {args.plot}")
    return 0


def _replot(paths: list, plot: str | None) -> int:
    """Draw the plot of several ``--json`` files (sizes in file order; the lowest sgemm rate)."""
    from types import SimpleNamespace

    from lstm_backends._bench import parse_size

    if not plot:
        print("--replot needs --plot FILE.png", file=sys.stderr)
        return 2
    rows, peaks, threads = [], [], 0
    for path in paths:
        with open(path) as fh:
            data = json.load(fh)
        peaks.append(data["sgemm_gflops"])
        threads = data["threads"]
        rows += [SimpleNamespace(size=tuple(parse_size(r["size"])), name=r["name"], gflops=r["gflops"])
                 for r in data["rows"] if "cell" not in r["name"] and "@" not in r["name"]]
    _plot(rows, min(peaks), plot, threads)
    print(f"wrote {plot}")
    return 0


def _plot(rows: list, peak: float, path: str, threads: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = list(dict.fromkeys(r.size for r in rows))
    names = list(dict.fromkeys(r.name for r in rows))
    labels = {"ours:numba": "lstm_backends numba", "torch": "torch.nn.LSTM", "onnxruntime": "onnxruntime LSTM"}
    fig, ax = plt.subplots(figsize=(9, 4.5))
    width = 0.8 / len(names)
    for j, name in enumerate(names):
        xs = [k + j * width for k, s in enumerate(sizes)]
        ys = [next(r.gflops for r in rows if r.size == s and r.name == name) for s in sizes]
        ax.bar(xs, ys, width, label=labels.get(name, name))
    ax.axhline(peak, color="gray", linestyle="--", linewidth=1, label=f"NumPy sgemm 2048³ ({peak:.0f})")
    ax.set_xticks([k + width * (len(names) - 1) / 2 for k in range(len(sizes))])
    ax.set_xticklabels([f"B={b}\nT={t}\nI={i} H={h}" for t, b, i, h in sizes], fontsize=8)
    ax.set_ylabel("GFLOP/s (higher is better)")
    ax.set_title(f"LSTM forward, float32, {threads} threads, each contender in its own process")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
