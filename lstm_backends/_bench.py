"""The benchmark behind ``lstm-backends bench``: check every backend, then time it.

For each size, every available backend (and PyTorch's ``nn.LSTM`` when torch is
installed) runs the same random problem; each result is compared with the
float64 reference *before* any timing, then timed; medians are reported.  Timed
calls run in two rounds, each backend's calls back to back after a short idle
pause, the order reversed in the second round.
"""

from __future__ import annotations

import contextlib
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import numpy as np

__all__ = ["BenchRow", "Size", "flops", "parse_size", "run_bench"]


class Size(NamedTuple):
    """A problem size in the library's order: ``x`` is (T, B, I), the hidden size is H."""

    steps: int
    batch: int
    input_size: int
    hidden_size: int

    def __str__(self) -> str:
        return f"T={self.steps},B={self.batch},I={self.input_size},H={self.hidden_size}"

    @property
    def flops(self) -> float:
        """Floating-point operations of one forward (see :func:`flops`)."""
        return flops(self.batch, self.steps, self.input_size, self.hidden_size)


def flops(batch: int, steps: int, input_size: int, hidden_size: int) -> float:
    """Floating-point operations of one forward: ``2 * 4H * (I + H) * B * T`` (the two GEMMs)."""
    return 2.0 * 4 * hidden_size * (input_size + hidden_size) * batch * steps


_KEYS = {"T": 0, "B": 1, "I": 2, "H": 3}


def parse_size(text: str) -> Size:
    """Parse a problem size — the one parser of the CLI, the scripts and asv.

    Two spellings: four integers in the library's order ``"T,B,I,H"`` (``x`` is (T, B, I);
    ``x`` may separate them too: ``100x16x128x256``), or keyed in any order,
    ``"B=16,T=100,I=128,H=256"``.

    Parameters
    ----------
    text : str

    Returns
    -------
    Size

    Raises
    ------
    ValueError
        Not four positive integers, or a key missing, repeated or unknown.
    """
    parts = [p.strip() for p in text.replace("x", ",").split(",")]
    values: list[int | None] = [None] * 4
    try:
        if any("=" in p for p in parts):
            for part in parts:
                key, _, value = part.partition("=")
                k = _KEYS[key.strip().upper()]
                if values[k] is not None:
                    raise KeyError(key)
                values[k] = int(value)
        elif len(parts) == 4:
            values = [int(p) for p in parts]
    except (KeyError, ValueError):
        values = [None] * 4
    if any(v is None for v in values) or min(v for v in values if v is not None) < 1:
        raise ValueError(
            "size must be four positive integers T,B,I,H (the library's order: x is (T, B, I)), "
            f"e.g. 100,16,128,256, or keyed in any order, e.g. B=16,T=100,I=128,H=256; got {text!r}"
        )
    return Size(*values)  # type: ignore[arg-type]


@dataclass
class BenchRow:
    """One backend at one size."""

    steps: int
    batch: int
    input_size: int
    hidden_size: int
    dtype: str
    backend: str
    median_ms: float
    gflops: float
    worst_error: float  # fraction of the dtype's tolerance; <= 1 agrees with the reference
    agrees: bool
    ratio_fastest: float = float("nan")
    ratio_torch: float = float("nan")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _torch_runner(problem: Any, threads: int | None) -> Callable[[], np.ndarray] | None:
    try:
        import torch
    except ImportError:
        return None
    if threads:
        torch.set_num_threads(threads)
    t, b, i = problem.x.shape
    h = problem.params.w_hh.shape[1]
    tdtype = torch.float32 if problem.x.dtype == np.float32 else torch.float64
    lstm = torch.nn.LSTM(i, h, dtype=tdtype)
    with torch.no_grad():
        for name, value in zip(("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"), problem.params):
            getattr(lstm, name).copy_(torch.from_numpy(np.asarray(value)))
    x = torch.from_numpy(problem.x)
    h0 = torch.from_numpy(problem.h0)[None]
    c0 = torch.from_numpy(problem.c0)[None]

    def run() -> np.ndarray:
        with torch.inference_mode():
            y, _ = lstm(x, (h0, c0))
        return y.numpy()

    return run


def run_bench(
    sizes: Sequence[tuple[int, int, int, int]],
    backends: Sequence[str] | None = None,
    *,
    dtype: Any = np.float32,
    repeat: int = 5,
    torch: bool = True,
    threads: int | None = None,
    progress: Callable[[str], None] | None = None,
    seed: int = 0,
    settle: float = 0.3,
) -> list[BenchRow]:
    """Check then time backends on random problems.

    Parameters
    ----------
    sizes : sequence of Size or (T, B, I, H) tuples
    backends : sequence of str, optional
        Names; every available backend by default.
    dtype : numpy dtype
    repeat : int
        Timed calls per backend (rounded up to even; after one untimed warm-up call); the
        median is reported.
    torch : bool
        Include ``torch.nn.LSTM`` (CPU, inference mode) when torch is importable.
    threads : int, optional
        Thread count for the numba backend, BLAS and torch.
    progress : callable, optional
        Receives one line per step of work.
    seed : int
    settle : float
        Seconds of idle before each backend's block of calls (see the code's comment).

    Returns
    -------
    list of BenchRow
    """
    from . import get_backend, list_backends
    from .testing import random_problem, reference_forward, worst_error

    say = progress or (lambda _msg: None)
    if backends is None:
        backends = [b.name for b in list_backends() if b.available]
    instances = {name: get_backend(name) for name in backends}
    rows: list[BenchRow] = []
    with _thread_limits(threads):
        for k, size in enumerate(sizes):
            t, b, i, h = Size(*size)
            problem = random_problem(t, b, i, h, dtype=dtype, seed=seed + k)
            say(f"[{k + 1}/{len(sizes)}] {Size(t, b, i, h)}: float64 reference")
            ref_y = reference_forward(problem)[0]
            runners: dict[str, Callable[[], Any]] = {}
            for name, be in instances.items():
                if np.dtype(dtype) not in [np.dtype(d) for d in be.dtypes]:
                    continue
                runners[name] = (lambda be=be, problem=problem: problem.forward(be)[0])
            if torch:
                tr = _torch_runner(problem, threads)
                if tr is not None:
                    runners["torch"] = tr
            errors = {}
            for name, run in runners.items():
                say(f"[{k + 1}/{len(sizes)}] checking {name}")
                errors[name] = worst_error(run(), ref_y, dtype)  # also the warm-up call
            times: dict[str, list[float]] = {name: [] for name in runners}
            say(f"[{k + 1}/{len(sizes)}] timing {', '.join(runners)} ({repeat} calls each)")
            # Two rounds, each backend's calls back to back, the order reversed in the second
            # round, so drift hits all alike.  A pause before each block lets the previous
            # library's worker threads (OpenMP, OpenBLAS), which spin for a while after each
            # call, go to sleep instead of competing for the cores inside the next timing.
            names = list(runners)
            for order in (names, names[::-1]):
                for name in order:
                    time.sleep(settle)
                    runners[name]()  # untimed: caches and thread pools of this library
                    for _ in range((repeat + 1) // 2):
                        start = time.perf_counter()
                        runners[name]()
                        times[name].append(time.perf_counter() - start)
            size_rows = []
            for name in runners:
                med = statistics.median(times[name])
                size_rows.append(
                    BenchRow(t, b, i, h, np.dtype(dtype).name, name, med * 1e3, flops(b, t, i, h) / med / 1e9,
                             errors[name], bool(errors[name] <= 1.0))
                )
            fastest = min(r.median_ms for r in size_rows)
            torch_ms = next((r.median_ms for r in size_rows if r.backend == "torch"), float("nan"))
            for r in size_rows:
                r.ratio_fastest = r.median_ms / fastest
                r.ratio_torch = r.median_ms / torch_ms
            rows.extend(size_rows)
    return rows


def _thread_limits(threads: int | None) -> Any:
    """BLAS limited to ``threads`` for the ``with`` block (nothing when None)."""
    if not threads:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=threads)


def format_table(rows: Sequence[BenchRow]) -> str:
    """Rows as an aligned text table."""
    header = ["T", "B", "I", "H", "dtype", "backend", "median ms", "GFLOP/s", "x fastest", "x torch", "err/tol", "ok"]
    lines = [header]
    for r in rows:
        lines.append([
            str(r.steps), str(r.batch), str(r.input_size), str(r.hidden_size), r.dtype, r.backend,
            f"{r.median_ms:.3f}", f"{r.gflops:.1f}", f"{r.ratio_fastest:.2f}",
            "-" if np.isnan(r.ratio_torch) else f"{r.ratio_torch:.2f}",
            f"{r.worst_error:.2g}", "yes" if r.agrees else "NO",
        ])
    widths = [max(len(row[c]) for row in lines) for c in range(len(header))]
    out = []
    for n, row in enumerate(lines):
        out.append("  ".join(cell.rjust(w) for cell, w in zip(row, widths)))
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def plot(rows: Sequence[BenchRow], path: str) -> None:
    """Bar chart of median time per backend per size (log scale), saved to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = list(dict.fromkeys(Size(r.steps, r.batch, r.input_size, r.hidden_size) for r in rows))
    names = list(dict.fromkeys(r.backend for r in rows))
    fig, ax = plt.subplots(figsize=(max(6, 1.8 * len(sizes)), 4))
    width = 0.8 / max(1, len(names))
    for j, name in enumerate(names):
        xs, ys = [], []
        for k, s in enumerate(sizes):
            for r in rows:
                if Size(r.steps, r.batch, r.input_size, r.hidden_size) == s and r.backend == name:
                    xs.append(k + j * width)
                    ys.append(r.median_ms)
        ax.bar(xs, ys, width, label=name)
    ax.set_xticks([k + width * (len(names) - 1) / 2 for k in range(len(sizes))])
    ax.set_xticklabels([f"T={t} B={b}\nI={i} H={h}" for t, b, i, h in sizes])
    ax.set_yscale("log")
    ax.set_ylabel("median time per forward (ms, log)")
    ax.set_title(f"lstm_backends forward, {rows[0].dtype}" if rows else "lstm_backends")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def print_progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
