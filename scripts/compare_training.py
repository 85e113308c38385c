"""Training speed (issue 11, item 7): ``forward_train + backward`` of our backends against
``torch.nn.LSTM``'s forward + autograd backward, every contender in its own fresh process.

Built on :func:`lstm_backends._peers.compare`: the same seeded problem and the same output
gradient ``dy`` for everyone, float32, the same thread budget (torch: ``torch.set_num_threads``,
``x.requires_grad``, ``y, _ = lstm(x); y.backward(dy)``), rounds in alternating order, the median
of each process's median, every forward output checked against the float64 reference (the
gradients are checked by the test suite: tests/test_training.py, the conformance kit).  Prints
the medians, ours / torch from the medians, and the median of the per-round ratios (the robust
figure on a shared machine whose speed drifts).

Usage::

    python scripts/compare_training.py [--threads 2] [--rounds 5] [--budget 1.0] [--backend numba]
        [--size T,B,I,H ...] [--idle] [--json out.json]

Run it on a quiet machine (``--idle`` waits for one before every process).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

# (T, B, I, H) of the item 7: ours <= torch at both
SIZES = [(100, 16, 128, 256), (100, 64, 256, 512)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--budget", type=float, default=1.0, help="seconds of timed calls per process")
    ap.add_argument("--backend", action="append", help="ours (default: numba)")
    ap.add_argument("--size", action="append", help="T,B,I,H (default: the issue's two sizes)")
    ap.add_argument("--idle", action="store_true", help="wait for an idle machine before each process")
    ap.add_argument("--json")
    args = ap.parse_args()

    from lstm_backends._bench import Size, parse_size
    from lstm_backends._peers import compare

    sizes = [parse_size(s) for s in args.size] if args.size else [Size(*s) for s in SIZES]
    ours = [f"ours-train:{b}" for b in (args.backend or ["numba"])]
    peak, results = compare(sizes, [*ours, "torch-train"], threads=args.threads, rounds=args.rounds,
                            budget=args.budget, progress=lambda m: print(m, file=sys.stderr, flush=True),
                            idle=args.idle)
    print(f"forward_train + backward vs torch forward + backward, float32, {args.threads} threads, each contender "
          f"in its own fresh process, {args.rounds} rounds (sgemm 2048^3 in this run: {peak:.0f} GFLOP/s)")
    print(f"{'T,B,I,H':>18}  {'contender':<20} {'median ms':>10} {'runs ms':<40} {'/ torch':>8} {'paired':>7} ok")
    summary = []
    for size in sizes:
        rows = [r for r in results if r.size == size]
        torch_row = next(r for r in rows if r.name == "torch-train")
        for r in rows:
            mine = r.name != "torch-train"
            ratio = r.median_s / torch_row.median_s
            paired = statistics.median(a / b for a, b in zip(r.runs_s, torch_row.runs_s)) if mine else float("nan")
            runs = " ".join(f"{t * 1e3:.2f}" for t in r.runs_s)
            print(f"{','.join(map(str, size)):>18}  {r.name:<20} {r.median_s * 1e3:>10.2f} {runs:<40} "
                  f"{ratio:>8.2f} {'-' if not mine else f'{paired:.2f}':>7} {'yes' if r.agrees else 'NO'}")
            summary.append({**r.as_dict(), "ratio_torch": ratio, "paired_ratio": paired})
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": args.threads, "rounds": args.rounds, "sgemm_gflops": peak, "results": summary}, f,
                      indent=1, default=str)
    return 0 if all(r.agrees for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
