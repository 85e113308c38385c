"""Command line: ``lstm-backends info | bench | verify | onnx`` (also ``python -m lstm_backends``)."""

from __future__ import annotations

import argparse
import json
import platform
import sys
from collections.abc import Sequence

# T,B,I,H: the library's order (x is (T, B, I)); see lstm_backends._bench.parse_size
DEFAULT_SIZES = ["100,1,64,128", "100,16,128,256", "100,64,256,512"]


def _size(text: str) -> tuple[int, int, int, int]:
    from ._bench import parse_size

    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _backend_name(name: str) -> str:
    """argparse type: a backend that exists and can run here (else a usage error, exit 2)."""
    from . import get_backend
    from ._errors import BackendUnavailableError, UnknownBackendError

    try:
        get_backend(name)
    except (UnknownBackendError, BackendUnavailableError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return name


def cmd_info(args: argparse.Namespace) -> int:
    import numpy as np

    from . import __version__, list_backends

    print(f"lstm_backends {__version__}  Python {platform.python_version()}  NumPy {np.__version__}  "
          f"{platform.machine()}")
    print("\nbackends:")
    for b in list_backends():
        status = "available" if b.available else "unavailable"
        print(f"  {b.name:<8} {status:<12} {b.origin:<10} version {b.version or '-':<10} "
              f"dtypes {','.join(b.dtypes) or '-'}")
        if b.capabilities:
            print(f"           capabilities: {', '.join(b.capabilities)}")
        if b.reason:
            print(f"           {b.reason}")
        if not b.available and b.install_hint:
            print(f"           fix: {b.install_hint}")
        if b.url:
            print(f"           {b.url}")
    print("\nnumba:")
    try:
        import numba

        from .backends.numba_backend import describe_threads

        print(f"  version {numba.__version__}, {numba.config.NUMBA_NUM_THREADS} threads")
        for line in describe_threads():
            print(f"  {line}")
    except ImportError as exc:
        print(f"  not importable: {exc}")
    print("\nBLAS (threadpoolctl):")
    try:
        import scipy.linalg  # noqa: F401 - loads scipy's BLAS, which numba uses
        from threadpoolctl import threadpool_info

        for pool in threadpool_info():
            print(f"  {pool.get('internal_api')} {pool.get('version')} ({pool.get('architecture', '?')}), "
                  f"{pool.get('num_threads')} threads: {pool.get('filepath')}")
    except ImportError as exc:
        print(f"  threadpoolctl not importable: {exc}")
    print("\nCUDA:")
    from .backends._cuda_probe import cuda_device_report

    print(f"  {cuda_device_report()}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    import os

    import numpy as np

    from . import list_backends
    from ._bench import Size, plot, print_progress
    from ._peers import available_peers, compare, format_results

    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise ValueError('--plot needs matplotlib: pip install matplotlib (or "lstm-backends[bench]")') from None
    dtype = np.dtype(args.dtype)
    names = args.backend or [b.name for b in list_backends()
                             if b.available and "forward" in b.capabilities and str(dtype) in b.dtypes]
    peers = [] if args.no_peers else [p for p in available_peers(dtype) if not (args.no_torch and p == "torch")]
    threads = args.threads or os.cpu_count() or 1
    sizes = args.size or [_size(s) for s in DEFAULT_SIZES]
    ours = [f"ours:{n}" for n in names]
    envs: dict[str, dict[str, str]] = {}
    if "numba" in names and not args.no_mkl and os.environ.get("LSTM_BACKENDS_GEMM", "auto") != "mkl":
        from .backends import _mkl

        if _mkl.available():  # the MKL extra is installed: show its path next to the default one
            ours.append("ours:numba@mkl")
            envs["ours:numba@mkl"] = {"LSTM_BACKENDS_GEMM": "mkl"}
    peak, rows = compare(
        sizes, ours + peers, dtype=dtype, threads=threads, rounds=args.rounds,
        budget=args.budget, cell=None if args.no_cell else Size(1, *sizes[0][1:]),
        progress=None if args.quiet else print_progress, envs=envs,
    )
    print(format_results(peak, rows, threads))
    if not peers:
        print("\n(no peer installed: pip install torch onnx onnxruntime, or lstm-backends[peers], to compare)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"threads": threads, "sgemm_gflops": peak, "rows": [r.as_dict() for r in rows]}, fh, indent=2)
        print(f"wrote {args.json}")
    if args.plot:
        plot([r for r in rows if "cell" not in r.name], args.plot, title=f"forward, {dtype.name}, {threads} threads")
        print(f"wrote {args.plot}")
    bad = [r for r in rows if not r.agrees]
    if bad:
        print(f"\nFAILED: {', '.join(sorted({r.name for r in bad}))} disagree with the float64 reference",
              file=sys.stderr)
        return 1
    print("\nevery contender agrees with the float64 reference")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from . import get_backend, list_backends
    from .testing import run_conformance

    if args.backend:
        names = [args.backend]
    else:
        names = [b.name for b in list_backends() if b.available]
    failures = 0
    for name in names:
        print(f"{name}:")
        for r in run_conformance(get_backend(name), args.check or None, raise_on_failure=False):
            if r.skipped:
                print(f"  skip  {r.name:<18} {r.message}")
                continue
            status = "pass" if r.passed else "FAIL"
            worst = f"worst {r.worst:.2g} of tolerance" if r.passed else ""
            print(f"  {status}  {r.name:<18} {worst:<26} {r.seconds:6.2f} s")
            if not r.passed:
                failures += 1
                print(f"        {r.message}")
    print(f"\n{failures} failed" if failures else "\nall checks passed")
    return 1 if failures else 0


def cmd_onnx(args: argparse.Namespace) -> int:
    import importlib.util

    from . import onnx as lbo

    nodes = lbo.load_all(args.model, backend=args.backend)
    if not nodes:
        print(f"{args.model}: no LSTM node")
        return 0
    check = not args.no_check and importlib.util.find_spec("onnxruntime") is not None
    failures = 0
    for name, node in nodes.items():
        info = node.describe()
        print(f"{name}: LSTM {info['direction']}, hidden_size={info['hidden_size']}, input_size={info['input_size']}, "
              f"layout={info['layout']}, {info['dtype']}")
        print(f"  peepholes: {'yes' if info['peepholes'] else 'no'}, clip: {info['clip']}, "
              f"input_forget: {int(info['input_forget'])}")
        print(f"  activations: {' | '.join(info['activations'])}")
        torch_like = f"ONNX-only: {', '.join(info['onnx_only'])}" if info["onnx_only"] else \
            "converts to lstm_backends.LSTM"
        print(f"  runs on: {info['backend']}; {torch_like}")
        if check:
            result = lbo.check_against_onnxruntime(node)
            if not result["compared"]:
                print(f"  onnxruntime: not compared ({result['reason']})")
            else:
                status = "agrees" if result["agrees"] else "DISAGREES"
                print(f"  onnxruntime: {status} (worst error {result['worst']:.2g} of the float32 tolerance)")
                failures += not result["agrees"]
    if not check and not args.no_check:
        print("\n(onnxruntime is not installed: nothing was compared)")
    return 1 if failures else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lstm-backends", description="Fast LSTM layers outside PyTorch: inspect, benchmark and verify backends."
    )
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback when a command fails (not for usage errors)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("info", help="backends, Numba, BLAS and CUDA on this machine",
                       description="Show every known backend (available or why not), Numba, BLAS and CUDA.")
    p.set_defaults(func=cmd_info)
    p = sub.add_parser("bench", help="time every backend against its peers and check them (the README's main job)",
                       description="Run every available backend and the installed peers (torch.nn.LSTM, "
                       "onnxruntime's LSTM), each in its own fresh process, in alternating rounds, on random "
                       "problems; check every output against the float64 reference; print medians, GFLOP/s, "
                       "% of the sgemm peak measured in the same run, and ours / best peer.")
    p.add_argument("--size", action="append", type=_size, metavar="T,B,I,H",
                   help="problem size in the library's order (x is (T, B, I)), or keyed in any order like "
                   f"B=16,T=100,I=128,H=256; repeatable (default: {' '.join(DEFAULT_SIZES)})")
    p.add_argument("--backend", action="append", type=_backend_name, metavar="NAME",
                   help="backend to run, repeatable (default: all available)")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--rounds", "--repeat", type=int, default=2,
                   help="rounds; each launches every contender once in a fresh process (default 2)")
    p.add_argument("--budget", type=float, default=0.5, help="seconds of timed calls per process (default 0.5)")
    p.add_argument("--threads", type=int, default=None, help="thread budget of every contender (default: all cores)")
    p.add_argument("--no-peers", action="store_true", help="time our backends only")
    p.add_argument("--no-torch", action="store_true", help="leave torch out of the peers")
    p.add_argument("--no-cell", action="store_true", help="skip the streaming cell comparison")
    p.add_argument("--no-mkl", action="store_true",
                   help="leave out numba@mkl (the numba backend on MKL's packed GEMM, run when MKL is installed)")
    p.add_argument("--json", metavar="FILE", help="write the results as JSON")
    p.add_argument("--plot", metavar="FILE.png", help="write a bar chart (needs matplotlib)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=cmd_bench)
    p = sub.add_parser("verify", help="run the conformance suite against one backend or all",
                       description="Run the conformance checks; exit non-zero if any fails.")
    p.add_argument("backend", nargs="?", type=_backend_name, help="backend name (default: every available one)")
    p.add_argument("--check", action="append", metavar="NAME", type=_check_name,
                   help="run only this check, repeatable")
    p.set_defaults(func=cmd_verify)
    p = sub.add_parser("onnx", help="list the LSTM nodes of an ONNX model and check them against onnxruntime",
                       description="List every LSTM node of an ONNX file with its attributes and the backend "
                       "that runs it; when onnxruntime is installed, run each node on random inputs with "
                       "both and compare (needs the onnx extra).")
    p.add_argument("model", help="path of the .onnx file")
    p.add_argument("--backend", default="auto", type=_backend_or_auto, metavar="NAME",
                   help="backend to run the nodes on (default: auto, the fastest with the features a node needs)")
    p.add_argument("--no-check", action="store_true", help="only list, do not compare with onnxruntime")
    p.set_defaults(func=cmd_onnx)
    return parser


def _backend_or_auto(name: str) -> str:
    return name if name == "auto" else _backend_name(name)


def _check_name(name: str) -> str:
    from .testing.conformance import CHECKS

    if name not in CHECKS:
        raise argparse.ArgumentTypeError(f"unknown check {name!r}; known: {', '.join(CHECKS)}")
    return name


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line.  Usage errors exit with 2 (``error: …``, from argparse); a
    command that fails exits with 1, printing the exception in one line, or its full
    traceback with ``--debug``."""
    parser = build_parser()
    args = parser.parse_args(argv)  # usage errors: argparse prints "error: ..." and exits 2
    if getattr(args, "rounds", 1) < 1:
        parser.error("--rounds must be at least 1")
    if args.debug:
        return int(args.func(args))
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("lstm-backends: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - a failure inside a backend, not a usage error
        print(f"lstm-backends {args.command}: failed: {type(exc).__name__}: {exc}\n"
              "(run again with --debug for the full traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
