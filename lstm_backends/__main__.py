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


def _version() -> str:
    """The installed distribution's version, else the package's ``__version__`` (a source tree)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lstm-backends")
    except PackageNotFoundError:
        from . import __version__

        return __version__


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
        from .backends import _mkl

        if _mkl.available():  # which GEMM is faster is measured here: the last bench, else a short probe
            from ._probe import mkl_advice

            print(f"  {mkl_advice()}")
    except ImportError as exc:
        print(f"  not importable: {exc}")
    print("\nThread pools (threadpoolctl: BLAS libraries, OpenMP runtimes):")
    try:
        import scipy.linalg  # noqa: F401 - loads scipy's BLAS, which numba uses
        from threadpoolctl import threadpool_info

        for pool in threadpool_info():
            api, lib = pool.get("user_api"), pool.get("internal_api")
            if lib == api:   # an OpenMP runtime: its library's name (libgomp, libomp, libiomp5)
                lib = pool.get("prefix")
            name = " ".join(str(v) for v in (lib, pool.get("version")) if v)
            arch = f" ({pool['architecture']} kernels)" if pool.get("architecture") else ""
            n = pool.get("num_threads")
            print(f"  {api}: {name}{arch}, {n} thread{'' if n == 1 else 's'}: {pool.get('filepath')}")
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
    from ._peers import available_peers, compare, format_results, peer_status
    from ._probe import save_last_bench

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
    for mode in args.precision or []:  # our backends that have the mode, and the peers' bf16
        if dtype != np.float32:
            raise ValueError(f"--precision {mode} runs float32 problems (its inputs and outputs are float32)")
        caps = {b.name: b.capabilities for b in list_backends()}
        ours += [f"ours:{n}@{mode}" for n in names if mode in caps.get(n, ())]
        if mode == "bf16":
            peers += [f"{p}@bf16" for p in ("torch", "openvino") if p in peers]
    peak, rows = compare(
        sizes, ours + peers, dtype=dtype, threads=threads, rounds=args.rounds,
        budget=args.budget, cell=None if args.no_cell else Size(1, *sizes[0][1:]),
        progress=None if args.quiet else print_progress, envs=envs, max_spread=args.max_spread, reruns=args.reruns,
    )
    print(format_results(peak, rows, threads, max_spread=args.max_spread))
    if not peers:
        print(f"\n({_peers_note(args, peer_status(dtype))})")
    kept = save_last_bench(rows, threads=threads, dtype=dtype.name)
    if kept and not args.quiet:
        print(f"(summary kept for `lstm-backends info`: {kept})")
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


def _peers_note(args: argparse.Namespace, status: dict[str, str]) -> str:
    """Why no peer ran: what the flags left out and, for the others, why each cannot run."""
    if args.no_peers:
        installed = [name for name, why in status.items() if not why]
        return "peers skipped by --no-peers" + (f"; installed: {', '.join(installed)}" if installed else "")
    reasons = [f"{name} left out by --no-torch" if name == "torch" and args.no_torch and not why else f"{name} {why}"
               for name, why in status.items()]
    return "no peer to compare: " + "; ".join(reasons) + ' (pip install -e ".[peers,torch]" in a clone)'


def cmd_verify(args: argparse.Namespace) -> int:
    from . import get_backend, list_backends
    from .testing import run_conformance

    if args.backend:
        names = [args.backend]
    else:
        names = [b.name for b in list_backends() if b.available]
    failures = skips = 0
    for name in names:
        print(f"{name}:")
        checks = args.check or None
        if args.precision:   # the prepared-weights check and the mode's own
            checks = [*(args.check or []), "prepared", args.precision]
        results = run_conformance(get_backend(name), checks, raise_on_failure=False)
        # columns as wide as their longest entry, so long check names do not shift the rest
        width = max((len(r.name) for r in results), default=0)
        worsts = {r.name: f"worst {r.worst:.2g} of tolerance" if r.passed else "" for r in results}
        worst_width = max((len(worsts[r.name]) for r in results if not r.skipped), default=0)
        for r in results:
            if r.skipped:
                skips += 1
                print(f"  skip  {r.name:<{width}}  {r.message}")
                continue
            status = "pass" if r.passed else "FAIL"
            print(f"  {status}  {r.name:<{width}}  {worsts[r.name]:<{worst_width}}  {r.seconds:6.2f} s")
            if not r.passed:
                failures += 1
                print(f"        {r.message}")
    skipped = f" ({skips} skipped: not applicable)" if skips else ""
    print(f"\n{failures} failed{skipped}" if failures else f"\nall checks that apply passed{skipped}")
    return 1 if failures else 0


def cmd_onnx(args: argparse.Namespace) -> int:
    import importlib.util

    from . import onnx as lbo

    run = args.run or bool(args.input or args.dim)  # --input / --dim imply --run
    nodes = lbo.load_all(args.model, backend=args.backend, precision=args.precision)
    if not nodes:
        print(f"{args.model}: no LSTM node")
        return lbo._cli_run(args.model, backend=args.backend, inputs=args.input, dims=args.dim, seed=args.seed,
                            check=not args.no_check, precision=args.precision) if run else 0
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
                of = f"the {node.precision} accuracy bound" if node.precision else "the float32 tolerance"
                print(f"  onnxruntime: {status} (worst error {result['worst']:.2g} of {of})")
                failures += not result["agrees"]
    if not check and not args.no_check:
        print("\n(onnxruntime is not installed: nothing was compared)")
    if run:
        failures += lbo._cli_run(args.model, backend=args.backend, inputs=args.input, dims=args.dim,
                                 seed=args.seed, check=not args.no_check, precision=args.precision)
    return 1 if failures else 0


def build_parser() -> argparse.ArgumentParser:
    from ._peers import MAX_SPREAD, RERUNS

    parser = argparse.ArgumentParser(
        prog="lstm-backends", description="Fast LSTM layers outside PyTorch: inspect, benchmark and verify backends."
    )
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback when a command fails (not for usage errors)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
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
    p.add_argument("--max-spread", type=float, default=MAX_SPREAD, metavar="FACTOR",
                   help="re-run a contender whose per-process medians spread by more than this (slowest / "
                   f"fastest; needs --rounds 2 or more), and flag it NOISY if they still do (default {MAX_SPREAD})")
    p.add_argument("--reruns", type=int, default=RERUNS, metavar="N",
                   help=f"extra fresh processes a spread contender gets at most (default {RERUNS}; 0: flag only)")
    p.add_argument("--no-peers", action="store_true", help="time our backends only")
    p.add_argument("--precision", action="append", choices=["bf16", "bf16x3"],
                   help="also our backends in this precision mode (prepared weights), and with bf16 torch "
                   "(weights and input in torch.bfloat16) and OpenVINO (INFERENCE_PRECISION_HINT=bf16); "
                   "a bf16 row's ratio is against the best bf16 peer; repeatable")
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
    from .testing.conformance import CHECKS

    p.add_argument("--check", action="append", metavar="NAME", type=_check_name,
                   help=f"run only this check, repeatable; one of: {', '.join(CHECKS)}")
    p.add_argument("--precision", choices=["bf16", "bf16x3"],
                   help="check a precision mode: the prepared-weights check and the mode's accuracy checks")
    p.set_defaults(func=cmd_verify)
    p = sub.add_parser("onnx", help="list the LSTM nodes of an ONNX model and check them against onnxruntime",
                       description="List every LSTM node of an ONNX file with its attributes and the backend "
                       "that runs it; when onnxruntime is installed, run each node on random inputs with "
                       "both and compare (needs the onnx extra).  With --run, also run the whole model in one call "
                       "(lstm_backends.onnx.load_model) and compare its outputs with onnxruntime's.")
    p.add_argument("model", help="path of the .onnx file")
    p.add_argument("--backend", default="auto", type=_backend_or_auto, metavar="NAME",
                   help="backend to run the nodes on (default: auto, the fastest with the features a node needs)")
    p.add_argument("--no-check", action="store_true", help="only list, do not compare with onnxruntime")
    p.add_argument("--run", action="store_true",
                   help="also run the whole model (LSTM nodes on our backends, the other nodes in onnx.reference) on "
                   "random inputs shaped as the graph declares, or on --input files, and print each output's max "
                   "|ours - onnxruntime| when onnxruntime is installed")
    p.add_argument("--input", action="append", default=[], metavar="NAME=FILE.npy",
                   help="value of a model input for --run, repeatable (implies --run; other inputs stay random)")
    p.add_argument("--dim", action="append", default=[], metavar="NAME=N",
                   help="size of a named dynamic axis of the random inputs, repeatable; a bare N sizes every other "
                   "dynamic axis (default 3; implies --run)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs of --run (default 0)")
    p.add_argument("--precision", choices=["bf16", "bf16x3"],
                   help="run the LSTM nodes in a precision mode (backends that have it) and compare with "
                        "onnxruntime against the mode's stated accuracy")
    p.set_defaults(func=cmd_onnx)
    p = sub.add_parser("warmup", help="compile the kernels ahead of time (cached on disk for every later process)",
                       description="Compile (or load from the on-disk cache) the kernels of the compiled backends "
                       "for the given dtypes, with progress, and say where the machine code is cached.  Run once "
                       "after installing: later processes then load the kernels in a fraction of a second.")
    p.add_argument("--training", action="store_true", help="also the training kernels (forward_train, backward)")
    p.add_argument("--dtypes", nargs="+", choices=["float32", "float64"], default=["float32", "float64"],
                   help="dtypes to compile (default: both)")
    p.add_argument("--backend", action="append", type=_backend_name, metavar="NAME",
                   help="backend to warm up, repeatable (default: numba, and cuda where it can run)")
    p.add_argument("--precision", nargs="+", choices=["bf16", "bf16x3"], default=[],
                   help="also the kernels of these precision modes (backends that have them)")
    p.set_defaults(func=cmd_warmup)
    return parser


def cmd_warmup(args: argparse.Namespace) -> int:
    """``lstm-backends warmup``: compile with a progress line per step, then where the cache is."""
    import time

    from ._warmup import warmup

    t0 = time.perf_counter()
    started: list[float] = []

    def progress(index: int, total: int, label: str) -> None:
        now = time.perf_counter()
        if started:
            print(f" {now - started[-1]:.1f} s", flush=True)
        started.append(now)
        print(f"[{index}/{total}] {label} ...", end="", flush=True)

    print("compiling the kernels (or loading them from the cache, where they are already compiled):")
    steps = warmup(args.backend, args.dtypes, training=args.training, precision=args.precision,
                   progress=progress)
    if started:
        print(f" {time.perf_counter() - started[-1]:.1f} s", flush=True)
    print(f"{len(steps)} steps in {time.perf_counter() - t0:.1f} s")
    if any(label.startswith("numba") for label, _ in steps):
        from .backends.numba_backend import cache_dir

        where = cache_dir()
        print(f"numba kernels cached in {where} (NUMBA_CACHE_DIR moves it)" if where
              else "numba kernels are not cached on disk (caching is off): every process compiles again")
    return 0


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
    if getattr(args, "max_spread", 1.0) < 1 or getattr(args, "reruns", 0) < 0:
        parser.error("--max-spread must be at least 1 and --reruns at least 0")
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
