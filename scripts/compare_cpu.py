"""Side-by-side CPU comparison: the numba backend vs torch.nn.LSTM, in one process.

Same weights, same inputs, same thread count, inference mode; calls interleaved
(ours, torch, ours, torch, ...) so machine noise hits both alike; medians and the
ratio ours/torch.  Also: GFLOP/s next to the machine's sgemm rate, and cold
start in fresh processes (empty Numba cache, then warm cache).

Usage::

    python scripts/compare_cpu.py [--threads 2] [--repeat 21] [--json out.json] [--no-cold]
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

import numpy as np

SIZES = [(1, 100, 64, 128), (1, 1000, 128, 256), (16, 100, 128, 256), (64, 100, 256, 512), (256, 50, 512, 1024)]
TARGETS = {(1, 100, 64, 128): 0.6, (1, 1000, 128, 256): 0.75, (16, 100, 128, 256): 1.0,
           (64, 100, 256, 512): 1.0, (256, 50, 512, 1024): 1.0, "cell": 0.3}


def sgemm_rate(n: int = 2048, repeat: int = 5) -> float:
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    a @ a
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        a @ a
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times) / 1e9


def interleaved(fns: dict, repeat: int, mode: str) -> dict:
    """Median seconds per function.  ``interleaved``: a, b, a, b, ...; ``blocks``: a x n, b x n,
    a x n, b x n, each block after a 0.3 s pause and one untimed call (so the other library's
    worker threads, which spin for a while after each call, are idle)."""
    times = {k: [] for k in fns}
    rounds, per_round = (repeat, 1) if mode == "interleaved" else (2, max(1, repeat // 2))
    for _ in range(rounds):
        for k, fn in fns.items():
            if mode == "blocks":
                time.sleep(0.3)  # let the other library's spinning worker threads go idle
                fn()  # untimed
            for _ in range(per_round):
                t0 = time.perf_counter()
                fn()
                times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


COLD = r"""
import time, numpy as np
t0 = time.perf_counter()
import lstm_backends as lb
from lstm_backends.testing import random_problem
p = random_problem(10, 4, 64, 128, seed=0)
be = lb.get_backend("numba")
t1 = time.perf_counter()
p.forward(be)
t2 = time.perf_counter()
print(t1 - t0, t2 - t1)
"""


def cold_start() -> dict:
    out = {}
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        for label in ("empty cache", "warm cache"):
            res = subprocess.run([sys.executable, "-c", COLD], env=env, capture_output=True, text=True, check=True)
            imp, first = (float(v) for v in res.stdout.split())
            out[label] = {"import_s": imp, "first_call_s": first}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=21)
    ap.add_argument("--json")
    ap.add_argument("--no-cold", action="store_true")
    ap.add_argument("--size", action="append", help="T,B,I,H or keyed, e.g. B=16,T=100,I=128,H=256 "
                    "(lstm_backends._bench.parse_size; default: the issue's table)")
    ap.add_argument("--mode", choices=["interleaved", "blocks"], default="interleaved",
                    help="call order: strictly alternating (default) or in alternating blocks")
    args = ap.parse_args()

    import torch
    from threadpoolctl import threadpool_info, threadpool_limits

    import lstm_backends as lb
    from lstm_backends._bench import flops, parse_size
    from lstm_backends.backends.numba_backend import NumbaBackend, warmup
    from lstm_backends.testing import random_problem, reference_forward, worst_error

    torch.set_num_threads(args.threads)
    be = NumbaBackend(num_threads=args.threads)
    warmup((np.float32,))
    sizes = [(z.batch, z.steps, z.input_size, z.hidden_size) for z in map(parse_size, args.size)] \
        if args.size else SIZES
    with threadpool_limits(args.threads):
        peak = sgemm_rate()
    blas = [f"{p['internal_api']} {p['version']} ({p.get('architecture')})" for p in threadpool_info()
            if p["user_api"] == "blas"]
    print(f"machine: {platform.machine()} {os.cpu_count()} cpus; {platform.processor() or ''}")
    print(f"python {platform.python_version()}, numpy {np.__version__}, numba {NumbaBackend.version()}, "
          f"torch {torch.__version__}, lstm_backends {lb.__version__}; BLAS: {'; '.join(sorted(set(blas)))}")
    print(f"threads: {args.threads}; sgemm 2048^3 float32: {peak:.1f} GFLOP/s; medians of {args.repeat}, {args.mode}\n")
    rows = []
    header = f"{'B,T,I,H':>18} {'ours ms':>10} {'torch ms':>10} {'ours/torch':>10} {'target':>7} " \
             f"{'ours GF/s':>9} {'%peak':>6} {'torch GF/s':>10} {'err/tol':>8}"
    print(header)
    for b, t, i, h in sizes:
        p = random_problem(t, b, i, h, dtype=np.float32, seed=1)
        err = worst_error(p.forward(be)[0], reference_forward(p)[0], np.float32) if b * t * h <= 2_000_000 else None
        lstm = torch.nn.LSTM(i, h)
        with torch.no_grad():
            for name, v in zip(("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"), p.params):
                getattr(lstm, name).copy_(torch.from_numpy(v))
        x, h0, c0 = torch.from_numpy(p.x), torch.from_numpy(p.h0)[None], torch.from_numpy(p.c0)[None]

        def run_torch(lstm=lstm, x=x, h0=h0, c0=c0):
            with torch.inference_mode():
                return lstm(x, (h0, c0))

        ty = run_torch()[0].numpy()
        oy = p.forward(be)[0]
        assert np.allclose(oy, ty, atol=1e-4), "ours and torch disagree"
        reps = args.repeat if b * t * h < 5_000_000 else max(5, args.repeat // 3)
        med = interleaved({"ours": lambda p=p: p.forward(be), "torch": run_torch}, reps, args.mode)
        f = flops(b, t, i, h)
        ratio = med["ours"] / med["torch"]
        row = {"size": [b, t, i, h], "ours_ms": med["ours"] * 1e3, "torch_ms": med["torch"] * 1e3, "ratio": ratio,
               "target": TARGETS.get((b, t, i, h)), "ours_gflops": f / med["ours"] / 1e9,
               "torch_gflops": f / med["torch"] / 1e9, "err_over_tol": err}
        rows.append(row)
        print(f"{f'{b},{t},{i},{h}':>18} {row['ours_ms']:10.3f} {row['torch_ms']:10.3f} {ratio:10.2f} "
              f"{row['target'] or '-':>7} {row['ours_gflops']:9.1f} {100 * row['ours_gflops'] / peak:5.0f}% "
              f"{row['torch_gflops']:10.1f} {'-' if err is None else f'{err:.2g}':>8}", flush=True)

    # one cell step, B=1, I=128, H=256, allocation-free with out=
    rng = np.random.default_rng(2)
    params = lb.testing.random_params(128, 256, rng=rng)
    xs = rng.standard_normal((1, 128), dtype=np.float32)
    hs, cs = np.zeros((1, 256), np.float32), np.zeros((1, 256), np.float32)
    ho, co = np.empty_like(hs), np.empty_like(cs)
    cell = torch.nn.LSTMCell(128, 256)
    with torch.no_grad():
        for name, v in zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"), params):
            getattr(cell, name).copy_(torch.from_numpy(v))
    tx, th, tc = torch.from_numpy(xs), torch.from_numpy(hs), torch.from_numpy(cs)

    def torch_cell():
        with torch.inference_mode():
            return cell(tx, (th, tc))

    def ours_cell():
        return be.cell(xs, hs, cs, params, out=(ho, co))

    n = 200
    med = interleaved({"ours": lambda: [ours_cell() for _ in range(n)],
                       "torch": lambda: [torch_cell() for _ in range(n)]}, max(5, args.repeat // 2), args.mode)
    cell_row = {"ours_us": med["ours"] / n * 1e6, "torch_us": med["torch"] / n * 1e6,
                "ratio": med["ours"] / med["torch"], "target": TARGETS["cell"]}
    print(f"{'cell B=1,I=128,H=256':>18} {cell_row['ours_us']:9.1f}us {cell_row['torch_us']:9.1f}us "
          f"{cell_row['ratio']:10.2f} {cell_row['target']:>7}")
    cold = None if args.no_cold else cold_start()
    if cold:
        for label, v in cold.items():
            print(f"cold start, {label}: import {v['import_s']:.2f} s, first forward {v['first_call_s']:.2f} s")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"threads": args.threads, "mode": args.mode, "sgemm_gflops": peak, "rows": rows,
                       "cell": cell_row, "cold": cold}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
