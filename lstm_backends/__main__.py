"""Command line: ``lstm-backends info | bench | verify`` (also ``python -m lstm_backends``)."""

from __future__ import annotations

import argparse
import json
import platform
import sys
from collections.abc import Sequence

DEFAULT_SIZES = ["1,100,64,128", "16,100,128,256", "64,100,256,512"]


class _CliError(Exception):
    pass


def _size(text: str) -> tuple[int, int, int, int]:
    from ._bench import parse_size

    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _backend_names(names: Sequence[str] | None) -> list[str] | None:
    if not names:
        return None
    from . import get_backend

    for n in names:
        get_backend(n)  # raises the registry's clear errors
    return list(names)


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
        if b.reason:
            print(f"           {b.reason}")
        if not b.available and b.install_hint:
            print(f"           fix: {b.install_hint}")
    print("\nnumba:")
    try:
        import numba

        layer = "not started yet (chosen on first parallel call)"
        try:
            layer = numba.threading_layer()
        except ValueError:
            pass
        print(f"  version {numba.__version__}, {numba.config.NUMBA_NUM_THREADS} threads, threading layer: {layer}")
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
    import numpy as np

    from ._bench import format_table, plot, print_progress, run_bench

    backends = _backend_names(args.backend)
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise ValueError('--plot needs matplotlib: pip install matplotlib (or "lstm-backends[bench]")') from None
    rows = run_bench(
        args.size or [_size(s) for s in DEFAULT_SIZES],
        backends,
        dtype=np.dtype(args.dtype),
        repeat=args.repeat,
        torch=not args.no_torch,
        threads=args.threads,
        progress=None if args.quiet else print_progress,
    )
    print(format_table(rows))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump([r.as_dict() for r in rows], fh, indent=2)
        print(f"wrote {args.json}")
    if args.plot:
        plot(rows, args.plot)
        print(f"wrote {args.plot}")
    bad = [r for r in rows if not r.agrees]
    if bad:
        print(f"\nFAILED: {', '.join(sorted({r.backend for r in bad}))} disagree with the float64 reference",
              file=sys.stderr)
        return 1
    print("\nall backends agree with the float64 reference")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from . import get_backend, list_backends
    from .testing import run_conformance

    if args.backend:
        names = [args.backend]
        get_backend(args.backend)
    else:
        names = [b.name for b in list_backends() if b.available]
    failures = 0
    for name in names:
        print(f"{name}:")
        for r in run_conformance(name, args.check or None, raise_on_failure=False):
            status = "pass" if r.passed else "FAIL"
            worst = "" if r.passed is False else f"worst {r.worst:.2g} of tolerance"
            print(f"  {status}  {r.name:<18} {worst:<26} {r.seconds:6.2f} s")
            if not r.passed:
                failures += 1
                print(f"        {r.message}")
    print(f"\n{failures} failed" if failures else "\nall checks passed")
    return 1 if failures else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lstm-backends", description="Fast LSTM layers outside PyTorch: inspect, benchmark and verify backends."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("info", help="backends, Numba, BLAS and CUDA on this machine",
                       description="Show every known backend (available or why not), Numba, BLAS and CUDA.")
    p.set_defaults(func=cmd_info)
    p = sub.add_parser("bench", help="check then time every backend (the README's main job)",
                       description="Run every available backend (and torch.nn.LSTM when installed) on random "
                       "problems; check each against the float64 reference, then print median times.")
    p.add_argument("--size", action="append", type=_size, metavar="B,T,I,H",
                   help=f"problem size, repeatable (default: {' '.join(DEFAULT_SIZES)})")
    p.add_argument("--backend", action="append", metavar="NAME",
                   help="backend to run, repeatable (default: all available)")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--repeat", type=int, default=5, help="timed calls per backend (default 5)")
    p.add_argument("--threads", type=int, default=None, help="threads for numba, BLAS and torch")
    p.add_argument("--no-torch", action="store_true", help="do not run torch.nn.LSTM even if installed")
    p.add_argument("--json", metavar="FILE", help="write the results as JSON")
    p.add_argument("--plot", metavar="FILE.png", help="write a bar chart (needs matplotlib)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=cmd_bench)
    p = sub.add_parser("verify", help="run the conformance suite against one backend or all",
                       description="Run the conformance checks; exit non-zero if any fails.")
    p.add_argument("backend", nargs="?", help="backend name (default: every available one)")
    p.add_argument("--check", action="append", metavar="NAME", help="run only this check, repeatable")
    p.set_defaults(func=cmd_verify)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from ._errors import BackendUnavailableError, UnknownBackendError

    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "repeat", 1) < 1:
        parser.error("--repeat must be at least 1")
    try:
        return int(args.func(args))
    except (UnknownBackendError, BackendUnavailableError, ValueError) as exc:
        print(f"lstm-backends: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
