"""Fair timing of our backends against the libraries a user would pick instead.

Every contender runs in its **own fresh process** (``python -m lstm_backends._peers
--run …``), rounds alternate the order of the contenders, and the medians of the
per-process medians are reported.  In one process, one library's spinning worker
threads (OpenMP in torch, OpenBLAS, onnxruntime's pool) slow the other and the ratios
lie — torch.nn.LSTM was measured 8x slower beside our kernels than alone.

Contenders (``name`` → what runs in the child):

``ours:BACKEND``
    a registered backend's ``forward`` (``ours-cell:BACKEND``: one ``cell`` step with ``out=``;
    ``ours-train:BACKEND``: ``forward_train`` + ``backward`` with a fixed random ``dy``)
``torch``
    ``torch.nn.LSTM`` in inference mode (``torch-cell``: ``torch.nn.LSTMCell``; ``torch-train``:
    forward + autograd backward of ``y`` with the same ``dy``, ``x`` requiring its gradient)
``onnxruntime``
    onnxruntime's LSTM operator, from a model built with ``onnx.helper`` (gate order
    converted to ONNX's i, o, f, c)
``openvino``
    OpenVINO's CPU plugin on the same ONNX model, ``INFERENCE_PRECISION_HINT`` set explicitly
    (``f32``; ``bf16`` with the ``bf16`` option: OpenVINO's own default on CPUs with AMX, and
    ignored by it where the CPU has no bfloat16 instructions: the record's ``precision`` says
    what it ran)
``sgemm``
    NumPy's float32 2048³ matmul: the machine's GEMM rate in the same run, the yardstick
    for "% of peak"

A name may end in ``@`` and comma-separated options: ``float32`` / ``float64`` (the dtype of
this contender), ``full`` (peepholes and ``clip=3``: the full ONNX cell), ``prepared`` (the
weights prepared once by ``Backend.prepare``, outside the timed calls), ``bf16`` / ``bf16x3`` (a
precision mode: ours on weights prepared in that mode; ``torch@bf16`` runs its LSTM with weights
and input in ``torch.bfloat16``, ``openvino@bf16`` with the bf16 hint; the outputs are checked
against the mode's stated accuracy, :data:`lstm_backends._prepared.ACCURACY`) and any other word
as a label (``ours:numba@before``, with ``compare(envs=...)`` giving that contender its own
environment, e.g. another checkout on ``PYTHONPATH`` or ``LSTM_BACKENDS_GEMM=mkl``).

Every child builds the same seeded problem, sets its thread count to the budget, times
calls for a fixed wall-clock budget (after warm-up calls) and prints one JSON line; it
saves its outputs so the parent can check them against the float64 reference before any
figure is trusted.

Noise: a contender whose per-process medians spread by more than :data:`MAX_SPREAD`
(slowest / fastest, so it needs two rounds or more) is re-run in fresh processes, up to
``reruns`` times, until the median of all its runs lies within that factor of its fastest
run; if it still does not, its row is flagged ``noisy`` (the machine was busy: rerun the
bench).  One process that ran while another job hogged the cores would otherwise move a
two-round median by any amount (a 23 ms contender once read 839 ms).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ._bench import Size, flops, parse_size

__all__ = ["MAX_SPREAD", "PEERS", "Result", "available_peers", "bf16_peak_text", "compare", "peer_status",
           "run_contender"]

#: the libraries a user would pick instead, and the module each needs
PEERS = {"torch": "torch", "onnxruntime": "onnxruntime", "openvino": "openvino"}
#: the peers that run an ONNX model built here (they need the onnx package too)
_ONNX_PEERS = ("onnxruntime", "openvino")
#: contender options that select what the child runs (the others only label an environment)
_CHILD_OPTIONS = {"float32", "float64", "full", "prepared", "bf16", "bf16x3"}
#: slowest / fastest per-process median of a contender beyond which it is re-run (then flagged):
#: a busy neighbour slows a process by integer factors, a quiet machine's rounds agree within ~10-20 %
MAX_SPREAD = 1.5
#: extra fresh processes a spread contender gets at most
RERUNS = 2


def available_peers(dtype: Any = np.float32) -> list[str]:
    """The peers whose packages are installed (``torch``, ``onnxruntime``, ``openvino``; the last two
    need ``onnx`` to build their model) and that run ``dtype`` (onnxruntime and OpenVINO have no
    float64 LSTM)."""
    import importlib.util

    found = []
    for name, module in PEERS.items():
        if name in _ONNX_PEERS and np.dtype(dtype) != np.float32:
            continue
        needs = [module] + (["onnx"] if name in _ONNX_PEERS else [])
        if all(importlib.util.find_spec(m) is not None for m in needs):
            found.append(name)
    return found


def peer_status(dtype: Any = np.float32) -> dict[str, str]:
    """Every peer with why it is left out at ``dtype``: ``""`` if it runs, else the reason
    (``"not installed: pip install torch"``, ``"no float64 LSTM"``)."""
    import importlib.util

    runs = set(available_peers(dtype))
    status = {}
    for name, module in PEERS.items():
        needs = [module] + (["onnx"] if name in _ONNX_PEERS else [])
        missing = [m for m in needs if importlib.util.find_spec(m) is None]
        status[name] = "" if name in runs else f"not installed: pip install {' '.join(missing)}" if missing \
            else f"no {np.dtype(dtype).name} LSTM"
    return status


FULL_CLIP = 3.0


def split_name(name: str) -> tuple[str, set[str]]:
    """``"ours:numba@float64,full"`` -> ``("ours:numba", {"float64", "full"})``."""
    base, _, opts = name.partition("@")
    return base, {o for o in opts.split(",") if o}


def contender_precision(name: str) -> str | None:
    """The precision mode a contender runs (``"bf16"``, ``"bf16x3"``) or None (its dtype's)."""
    opts = split_name(name)[1]
    return "bf16x3" if "bf16x3" in opts else "bf16" if "bf16" in opts else None


def _contender_dtype(name: str, dtype: np.dtype) -> np.dtype:
    opts = split_name(name)[1]
    return np.dtype("float64") if "float64" in opts else np.dtype("float32") if "float32" in opts else dtype


def _problem(size: Size, dtype: np.dtype, seed: int, full: bool = False) -> Any:
    from .testing import random_problem

    if full:  # the full ONNX cell: peepholes and a clip (same x, state and plain weights as the plain problem)
        return random_problem(size.steps, size.batch, size.input_size, size.hidden_size, dtype=dtype, seed=seed,
                              peephole=True, clip=FULL_CLIP)
    return random_problem(size.steps, size.batch, size.input_size, size.hidden_size, dtype=dtype, seed=seed)


def _time(fn: Callable[[], Any], budget: float, inner: int = 1) -> tuple[float, int]:
    """Median seconds per call: 3 untimed calls, then samples of ``inner`` calls until ``budget``
    seconds have passed (5 samples at least)."""
    for _ in range(3):
        fn()
    samples: list[float] = []
    end = time.perf_counter() + budget
    while len(samples) < 5 or (time.perf_counter() < end and len(samples) < 1000):
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter() - start) / inner)
    return statistics.median(samples), len(samples)


def _onnx_model(p: Any) -> bytes:
    import onnx  # noqa: F401 - onnx.helper needs the package
    from onnx import TensorProto, helper, numpy_helper

    from .layouts import to_onnx

    t, b, i = p.x.shape
    h = p.params.w_hh.shape[1]
    w, r, bias = to_onnx([p.params])  # (1, 4H, I), (1, 4H, H), (1, 8H): gates i, o, f, c
    elem = TensorProto.FLOAT  # onnxruntime has no float64 LSTM (available_peers leaves it out)
    inits = [numpy_helper.from_array(np.ascontiguousarray(a), n) for a, n in ((w, "W"), (r, "R"), (bias, "B"))]
    node = helper.make_node("LSTM", ["X", "W", "R", "B", "", "h0", "c0"], ["Y", "Y_h", "Y_c"], hidden_size=h)
    graph = helper.make_graph(
        [node], "lstm",
        [helper.make_tensor_value_info("X", elem, [t, b, i]), helper.make_tensor_value_info("h0", elem, [1, b, h]),
         helper.make_tensor_value_info("c0", elem, [1, b, h])],
        [helper.make_tensor_value_info("Y", elem, [t, 1, b, h]), helper.make_tensor_value_info("Y_h", elem, [1, b, h]),
         helper.make_tensor_value_info("Y_c", elem, [1, b, h])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)]).SerializeToString()


def _runner(name: str, p: Any, threads: int, prepared: bool = False,
            precision: str | None = None) -> tuple[Callable[[], Any], Callable[[Any], tuple], dict]:
    """(call, outputs-from-result, info) for one contender in this process (``prepared``: ours on
    weights prepared once by ``Backend.prepare``, outside the timed calls; ``precision``: a mode,
    see the module's notes)."""
    kind, _, backend = name.partition(":")
    if kind in ("ours", "ours-cell", "ours-train"):
        from . import get_backend

        be = get_backend(backend)
        if hasattr(be, "num_threads"):  # a private instance with the thread budget
            be = type(be)(num_threads=threads)
        info = {"backend": be.name, "version": be.version()}
        describe = getattr(be, "describe_path", None)
        if callable(describe):
            t, b, i = p.x.shape
            try:
                info["path"] = describe(b, p.params.w_hh.shape[1], p.x.dtype, steps=t, input_size=i,
                                        cell=kind == "ours-cell")
            except TypeError:  # a plugin's describe_path(batch, hidden, dtype)
                info["path"] = describe(b, p.params.w_hh.shape[1], p.x.dtype)
        if prepared:
            info["prepared"] = True
        if precision:
            info["precision"] = precision
            if callable(describe):
                try:
                    info["path"] = describe(p.x.shape[1], p.params.w_hh.shape[1], p.x.dtype, precision=precision,
                                            input_size=p.x.shape[2], cell=kind == "ours-cell")
                except TypeError:
                    pass
        params = be.prepare(p.params, precision=precision) if prepared or precision else p.params
        if kind == "ours":
            return (lambda: be.forward(p.x, params, p.h0, p.c0, **p.options)), (lambda r: r), info
        if kind == "ours-train":
            dy = _train_dy(p)

            def train() -> Any:
                y, h_n, c_n, tape = be.forward_train(p.x, p.params, p.h0, p.c0, **p.options)
                be.backward(tape, dy)
                return y, h_n, c_n

            return train, (lambda r: r), info
        out = (np.empty_like(p.h0), np.empty_like(p.c0))
        return (lambda: be.cell(p.x[0], p.h0, p.c0, params, out=out)), (lambda r: (r[0][None], *r)), info
    if kind in ("torch", "torch-cell", "torch-train"):
        import torch

        torch.set_num_threads(threads)
        t, b, i = p.x.shape
        h = p.params.w_hh.shape[1]
        tdtype = torch.float32 if p.x.dtype == np.float32 else torch.float64
        names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        module = torch.nn.LSTMCell(i, h, dtype=tdtype) if kind == "torch-cell" else torch.nn.LSTM(i, h, dtype=tdtype)
        with torch.no_grad():
            for n, v in zip(names, p.params):
                getattr(module, n + ("" if kind == "torch-cell" else "_l0")).copy_(torch.from_numpy(v))
        x, h0, c0 = torch.from_numpy(p.x), torch.from_numpy(p.h0), torch.from_numpy(p.c0)
        info = {"version": torch.__version__}
        if precision == "bf16" and kind != "torch-train":  # weights, input and state in bfloat16
            module = module.to(torch.bfloat16)
            x, h0, c0 = (a.to(torch.bfloat16) for a in (x, h0, c0))
            info["precision"] = "bf16"
        elif precision:
            raise ValueError(f"torch contenders run float32, float64 or (forward, cell) bf16, not {precision}")
        if kind == "torch-train":
            x_grad = torch.from_numpy(p.x.copy()).requires_grad_(True)
            dy = torch.from_numpy(_train_dy(p))

            def train_torch() -> Any:
                y, (h_n, c_n) = module(x_grad, (h0[None], c0[None]))
                y.backward(dy)
                return y.detach(), h_n.detach(), c_n.detach()

            return train_torch, (lambda r: (r[0].numpy(), r[1][0].numpy(), r[2][0].numpy())), info
        if kind == "torch":
            def call() -> Any:
                with torch.inference_mode():
                    return module(x, (h0[None], c0[None]))

            return call, (lambda r: (_np(r[0]), _np(r[1][0][0]), _np(r[1][1][0]))), info

        def call_cell() -> Any:
            with torch.inference_mode():
                return module(x[0], (h0, c0))

        return call_cell, (lambda r: (_np(r[0])[None], _np(r[0]), _np(r[1]))), info
    if kind == "onnxruntime":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(_onnx_model(p), options, providers=["CPUExecutionProvider"])
        feed = {"X": p.x, "h0": p.h0[None], "c0": p.c0[None]}
        if precision:
            raise ValueError("onnxruntime's LSTM runs float32 only")
        return (lambda: session.run(None, feed)), (lambda r: (r[0][:, 0], r[1][0], r[2][0])), \
            {"version": ort.__version__}
    if kind == "openvino":
        return _openvino_runner(p, threads, precision)
    raise ValueError(f"unknown contender {name!r}: ours:BACKEND, ours-cell:BACKEND, ours-train:BACKEND, torch, "
                     "torch-cell, torch-train, onnxruntime, openvino")


def _np(t: Any) -> np.ndarray:
    """A torch tensor as a NumPy array (bfloat16 as float32: NumPy has no bfloat16)."""
    import torch

    return (t.float() if t.dtype == torch.bfloat16 else t).numpy()


def _openvino_runner(p: Any, threads: int, precision: str | None) -> tuple[Callable[[], Any], Callable, dict]:
    """OpenVINO's CPU plugin on the onnxruntime contender's model: ``INFERENCE_PRECISION_HINT``
    ``f32`` (or ``bf16``), ``threads`` inference threads, one stream, the latency hint."""
    if precision not in (None, "bf16"):
        raise ValueError(f"openvino runs f32 or bf16, not {precision}")
    import openvino as ov

    core = ov.Core()
    with tempfile.TemporaryDirectory() as tmp:  # read_model takes ONNX from a file
        path = os.path.join(tmp, "lstm.onnx")
        with open(path, "wb") as fh:
            fh.write(_onnx_model(p))
        model = core.read_model(path)
    compiled = core.compile_model(model, "CPU", {
        "INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_PRECISION_HINT": precision or "f32"})
    request = compiled.create_infer_request()
    feed = {"X": p.x, "h0": p.h0[None], "c0": p.c0[None]}
    outs = compiled.outputs

    def call() -> Any:
        res = request.infer(feed)
        return [np.array(res[o]) for o in outs]  # copies: the request reuses its buffers

    ran = str(compiled.get_property("INFERENCE_PRECISION_HINT"))
    info = {"version": ov.__version__, "precision": "bf16" if "bf16" in ran else "f32"}
    return call, (lambda r: (r[0][:, 0], r[1][0], r[2][0])), info


def _train_dy(p: Any) -> np.ndarray:
    """The output gradient of the training contenders: N(0, 1), seeded, shaped like y."""
    t, b = p.x.shape[:2]
    return np.random.default_rng(12345).standard_normal((t, b, p.params.w_hh.shape[1])).astype(p.x.dtype)


def _sgemm(budget: float, n: int = 2048) -> float:
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    med, _ = _time(lambda: a @ a, budget)
    return 2.0 * n**3 / med / 1e9


def _bf16_instructions() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (AMX or AVX512-BF16): elsewhere torch's
    bfloat16 matmul is emulated, minutes for 2048³, and no peak worth the name."""
    try:
        from .backends._numba.ir import BF16_FEATURES
    except ImportError:   # pragma: no cover - no numba: not worth guessing
        return False
    return bool(BF16_FEATURES)


def _bf16gemm(budget: float, threads: int, n: int = 2048) -> float:
    """GFLOP/s of torch's bfloat16 matmul 2048³ (oneDNN: AMX or AVX512-BF16 where the CPU has them):
    the machine's bfloat16 ceiling as the bf16 peers reach it; NaN without torch."""
    try:
        import torch
    except ImportError:
        return float("nan")
    torch.set_num_threads(threads)
    a = torch.randn(n, n, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    with torch.inference_mode():
        t0 = time.perf_counter()
        a @ a
        once = time.perf_counter() - t0
        if once > 1.0:   # no bfloat16 instructions under it after all: one call is the figure
            return 2.0 * n**3 / once / 1e9
        med, _ = _time(lambda: a @ a, budget)
    return 2.0 * n**3 / med / 1e9


def run_contender(name: str, size: Size, *, dtype: Any = np.float32, threads: int = 2, budget: float = 1.0,
                  seed: int = 0, save: str | None = None) -> dict:
    """Time one contender in *this* process (the child side); returns the JSON-able record.

    Parameters
    ----------
    name : str
        ``ours:BACKEND``, ``ours-cell:BACKEND``, ``torch``, ``torch-cell``, ``onnxruntime``, ``sgemm`` or
        ``bf16gemm`` (torch's bfloat16 matmul 2048³: the bf16 rows' peak).
    size : Size
    dtype : numpy dtype
    threads : int
        Thread budget given to the contender.
    budget : float
        Seconds of timed calls.
    seed : int
        Seed of the problem (the same for every contender).
    save : str, optional
        Path of an ``.npz`` to save the outputs ``y``, ``h_n``, ``c_n`` to.

    Returns
    -------
    dict
        ``median_s``, ``samples`` and contender details.
    """
    if name == "sgemm":
        return {"name": name, "gflops": _sgemm(budget)}
    if name == "bf16gemm":
        return {"name": name, "gflops": _bf16gemm(budget, threads)}
    base, opts = split_name(name)
    p = _problem(size, _contender_dtype(name, np.dtype(dtype)), seed, "full" in opts)
    cell = base.startswith(("ours-cell", "torch-cell"))
    call, outputs, info = _runner(base, p, threads, prepared="prepared" in opts, precision=contender_precision(name))
    med, n = _time(call, budget, inner=50 if cell else 1)
    if save:
        y, h_n, c_n = (np.asarray(a) for a in outputs(call()))
        np.savez(save, y=y, h_n=h_n, c_n=c_n)
    return {"name": name, "median_s": med, "samples": n, **info}


@dataclass
class Result:
    """One contender at one size: medians of the per-process medians."""

    size: Size
    name: str
    median_s: float
    runs_s: list[float]
    gflops: float
    pct_peak: float
    worst_error: float  # fraction of the dtype's tolerance (a mode's accuracy) against the float64 reference
    agrees: bool
    info: dict = field(default_factory=dict)
    ratio_best_peer: float = float("nan")
    spread: float = float("nan")  # slowest / fastest of runs_s (nan with one run)
    reruns: int = 0  # extra processes run because the rounds spread by more than the limit
    noisy: bool = False  # still spread after the re-runs: the median is not to be trusted

    def as_dict(self) -> dict:
        d = asdict(self)
        d["size"] = str(self.size)
        return d


def wait_idle(threshold: float = 0.1, max_wait: float = 30.0) -> float:
    """Wait (at most ``max_wait`` s) until the machine is idle: less than ``threshold`` of all CPU
    time busy over half a second (other users' jobs distort a timing run).  Linux only; returns
    the last busy fraction seen (0 elsewhere)."""
    def ticks() -> tuple[int, int]:
        with open("/proc/stat") as fh:
            v = [int(t) for t in fh.readline().split()[1:9]]
        return sum(v) - v[3] - v[4], sum(v)

    if not os.path.exists("/proc/stat"):
        return 0.0
    end = time.monotonic() + max_wait
    busy = 1.0
    while time.monotonic() < end:
        b0, t0 = ticks()
        time.sleep(0.5)
        b1, t1 = ticks()
        busy = (b1 - b0) / max(1, t1 - t0)
        if busy < threshold:
            break
    return busy


def _reference(size: Size, dtype: np.dtype, seed: int, full: bool, cell: bool) -> tuple:
    """(y, h_n, c_n) of the float64 reference for the problem every contender of a size runs."""
    from .testing._problems import reference_cell, reference_forward

    p = _problem(size, dtype, seed, full)
    if cell:
        ref_h, ref_c = reference_cell(p.x[0], p.h0, p.c0, p.params, **p.options)
        return ref_h[None], ref_h, ref_c
    return reference_forward(p)


def _launch(name: str, size: Size, dtype: np.dtype, threads: int, budget: float, seed: int,
            save: str | None, env: dict | None, timeout: float, idle: bool = False) -> dict:
    if idle:
        wait_idle()
    # labels (any option but a dtype or "full") only select an environment: the child (possibly
    # another version of this module) gets the bare name
    base, opts = split_name(name)
    known = sorted(opts & _CHILD_OPTIONS)
    child = base + ("@" + ",".join(known) if known else "")
    cmd = [sys.executable, "-m", "lstm_backends._peers", "--run", child, "--size", ",".join(map(str, size)),
           "--dtype", dtype.name, "--threads", str(threads), "--budget", str(budget), "--seed", str(seed)]
    if save:
        cmd += ["--save", save]
    # cwd: a neutral directory, so that ``-m`` (which puts the cwd first on sys.path) imports the
    # lstm_backends the environment selects (installed, or PYTHONPATH), not a checkout we stand in
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=tempfile.gettempdir())
    for line in reversed(res.stdout.strip().splitlines()):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("name") == child:
            record["name"] = name
            return record
    raise RuntimeError(f"contender {name} at {size} failed (exit {res.returncode}):\n"
                       f"{res.stdout[-1500:]}\n{res.stderr[-3000:]}")


def compare(
    sizes: Sequence[Size],
    contenders: Sequence[str],
    *,
    dtype: Any = np.float32,
    threads: int = 2,
    rounds: int = 3,
    budget: float = 1.0,
    seed: int = 0,
    cell: Size | None = None,
    progress: Callable[[str], None] | None = None,
    timeout: float = 900.0,
    envs: dict[str, dict[str, str]] | None = None,
    idle: bool = False,
    max_spread: float = MAX_SPREAD,
    reruns: int = RERUNS,
) -> tuple[float, list[Result]]:
    """Time contenders, each in a fresh process, in alternating rounds; check their outputs.

    Parameters
    ----------
    sizes : sequence of Size
    contenders : sequence of str
        ``ours:BACKEND`` entries and peers (``torch``, ``onnxruntime``).
    dtype : numpy dtype
    threads : int
        Thread budget of every contender.
    rounds : int
        Each round launches every contender once (order reversed every other round).
    budget : float
        Seconds of timed calls per process.
    seed : int
    cell : Size, optional
        Also time one ``cell`` step at this size (``T`` ignored) for the ``ours:`` backends
        (``ours-cell:``) against ``torch.nn.LSTMCell`` when torch is among the contenders.
    progress : callable, optional
    timeout : float
        Seconds allowed per process.
    envs : dict, optional
        Extra environment variables per contender name (e.g. ``{"ours:numba@mkl":
        {"LSTM_BACKENDS_GEMM": "mkl"}}``).
    idle : bool
        Before each process, wait for an idle machine (see :func:`wait_idle`).
    max_spread : float
        A contender whose per-process medians spread by more than this factor (slowest /
        fastest) is re-run; one still spread after ``reruns`` extra processes is flagged
        ``noisy`` (see the module's notes).
    reruns : int
        Extra processes a spread contender gets at most (0: flag only).

    Returns
    -------
    peak_gflops : float
        NumPy float32 sgemm 2048³ with ``threads`` threads, median over the rounds.
    results : list of Result
    """
    dtype = np.dtype(dtype)
    say = progress or (lambda _msg: None)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads), LSTM_BACKENDS_NUM_THREADS=str(threads))
    peaks = []
    for _ in range(rounds):
        peaks.append(_launch("sgemm", Size(1, 1, 1, 1), np.dtype(np.float32), threads, min(budget, 1.0), seed,
                             None, env, timeout)["gflops"])
    peak = statistics.median(peaks)
    say(f"sgemm 2048^3 float32, {threads} threads: {peak:.0f} GFLOP/s")
    bf16_peak = float("nan")   # the bf16 rows' ceiling: torch's bfloat16 matmul, where torch is installed
    if any(contender_precision(c) == "bf16" for c in contenders) and _bf16_instructions():
        bf16_peak = statistics.median(
            _launch("bf16gemm", Size(1, 1, 1, 1), np.dtype(np.float32), threads, min(budget, 1.0), seed, None, env,
                    timeout)["gflops"] for _ in range(rounds))
        say(f"bf16 GEMM 2048^3 (torch), {threads} threads: {bf16_peak:.0f} GFLOP/s")
    jobs = [(size, list(contenders)) for size in sizes]
    if cell is not None:
        cell_names = [c.replace("ours:", "ours-cell:") for c in contenders if c.startswith("ours:")
                      and not split_name(c)[1] & {"full", "float64"}]
        cell_names += [c.replace("torch", "torch-cell", 1) for c in contenders if split_name(c)[0] == "torch"]
        jobs.append((Size(1, *cell[1:]), cell_names))
    results: list[Result] = []
    with tempfile.TemporaryDirectory() as tmp:
        for k, (size, names) in enumerate(jobs):
            is_cell = names and "cell" in names[0]
            refs: dict[tuple[bool, np.dtype], Any] = {}
            runs: dict[str, list[dict]] = {n: [] for n in names}
            errors: dict[str, float] = {}
            for r in range(rounds):
                for name in names if r % 2 == 0 else names[::-1]:
                    save = os.path.join(tmp, f"{k}_{name.replace(':', '_').replace('@', '_').replace(',', '_')}.npz") \
                        if r == 0 else None
                    say(f"[{k + 1}/{len(jobs)}] {'cell ' if is_cell else ''}{size} round {r + 1}/{rounds}: {name}")
                    child_env = {**env, **(envs or {}).get(name.replace("ours-cell:", "ours:"), {})}
                    runs[name].append(_launch(name, size, dtype, threads, budget, seed, save, child_env, timeout,
                                              idle))
                    if save:
                        full = "full" in split_name(name)[1]
                        cdt = _contender_dtype(name, dtype)  # a float64 contender runs the float64 problem
                        if (full, cdt) not in refs:
                            say(f"[{k + 1}/{len(jobs)}] {size}: float64 reference")
                            refs[full, cdt] = _reference(size, cdt, seed, full, bool(is_cell))
                        ref = refs[full, cdt]
                        with np.load(save) as got:
                            errors[name] = _error(got, ref, cdt, contender_precision(name))
            f = flops(size.batch, size.steps, size.input_size, size.hidden_size)
            size_rows = []
            for name in names:
                extra = 0
                while _spread_out(meds := [d["median_s"] for d in runs[name]], max_spread) and extra < reruns:
                    extra += 1
                    say(f"[{k + 1}/{len(jobs)}] {'cell ' if is_cell else ''}{size}: {name} spread "
                        f"{max(meds) / min(meds):.2f}x > {max_spread}x over its runs: re-run {extra}/{reruns}")
                    child_env = {**env, **(envs or {}).get(name.replace("ours-cell:", "ours:"), {})}
                    runs[name].append(_launch(name, size, dtype, threads, budget, seed, None, child_env, timeout,
                                              idle))
                med = statistics.median(meds)
                info = {k_: v for k_, v in runs[name][0].items() if k_ not in ("name", "median_s", "samples")}
                top = peak
                if _class(name) == "bf16" and bf16_peak > 0:   # (NaN without torch: the sgemm peak)
                    top = info["peak_gflops"] = bf16_peak
                size_rows.append(Result(size, name, med, meds, f / med / 1e9, 100 * f / med / 1e9 / top,
                                        errors[name], bool(errors[name] <= 1.0), info,
                                        spread=max(meds) / min(meds) if len(meds) > 1 else float("nan"),
                                        reruns=extra, noisy=_spread_out(meds, max_spread)))
            for row in size_rows:  # against the best peer of its class: float32 (bf16x3 too) or bf16
                peer_times = [r.median_s for r in size_rows if not r.name.startswith("ours")
                              and _contender_dtype(r.name, dtype) == dtype and _class(r.name) == _class(row.name)]
                if peer_times:
                    row.ratio_best_peer = row.median_s / min(peer_times)
            results.extend(size_rows)
    return peak, results


def _class(name: str) -> str | None:
    """Which peers a contender is compared with: ``"bf16"`` ones, or (None) the dtype's."""
    return "bf16" if contender_precision(name) == "bf16" else None


def _error(got: Any, ref: tuple, dtype: np.dtype, precision: str | None) -> float:
    """Worst error of a contender's saved ``y, h_n, c_n`` against the float64 reference, as a
    fraction of what it may be: the dtype's tolerance, or a precision mode's stated accuracy (the
    largest absolute difference, :data:`lstm_backends._prepared.ACCURACY`)."""
    from ._prepared import ACCURACY
    from .testing import worst_error

    names = ("y", "h_n", "c_n")
    if precision is None:
        return max(worst_error(got[n], e, dtype) for n, e in zip(names, ref))
    worst = 0.0
    for n, e in zip(names, ref):
        a = np.asarray(got[n], np.float64)
        if a.shape != e.shape or (np.isnan(a) != np.isnan(e)).any():
            return float("inf")
        worst = max(worst, float(np.nan_to_num(np.abs(a - e), nan=0.0).max(initial=0.0)))
    return worst / ACCURACY[precision]


def _spread_out(medians: Sequence[float], max_spread: float) -> bool:
    """Runs that need another one: they spread by more than ``max_spread`` and their median is
    not within that factor of the fastest (a single slow outlier among agreeing runs is fine)."""
    if len(medians) < 2 or max(medians) <= max_spread * min(medians):
        return False
    return len(medians) == 2 or statistics.median(medians) > max_spread * min(medians)


def _spread_text(r: Result) -> str:
    if np.isnan(r.spread):
        return "-"
    return f"{r.spread:.2f}" + (f" re-run x{r.reruns}" if r.reruns else "") + (" NOISY" if r.noisy else "")


def _what_ran(r: Result) -> str:
    """`` [path]`` of our rows; `` [ran f32]`` of a peer that says which precision it ran."""
    if r.info.get("path"):
        return f" [{r.info['path']}]"
    return f" [ran {r.info['precision']}]" if r.info.get("precision") and not r.name.startswith("ours") else ""


def bf16_peak_text(results: Sequence[Result], column: str = "% peak") -> str:
    """``; bf16 GEMM ...`` where the bf16 rows' ``column`` is of torch's bfloat16 matmul (the peak
    :func:`compare` measured), else ``""``."""
    peaks = [r.info["peak_gflops"] for r in results if "peak_gflops" in r.info]
    return f"; bf16 GEMM 2048^3 (torch) {peaks[0]:.0f} GFLOP/s, the {column} of the bf16 rows" if peaks else ""


def format_results(peak: float, results: Sequence[Result], threads: int, max_spread: float = MAX_SPREAD) -> str:
    """An aligned text table: median, GFLOP/s, % of the sgemm peak, ours / best peer, the spread of
    the per-process medians (slowest / fastest; ``re-run xN``, ``NOISY``), and notes on flagged rows."""
    header = ["T", "B", "I", "H", "contender", "median ms", "GFLOP/s", "% peak", "/ best peer", "err/tol", "ok",
              "spread"]
    lines = [header]
    for r in results:
        t, b, i, h = r.size
        is_cell = "cell" in r.name
        lines.append([
            "cell" if is_cell else str(t), str(b), str(i), str(h), r.name + _what_ran(r),
            f"{r.median_s * 1e3:.4f}" if is_cell else f"{r.median_s * 1e3:.3f}", f"{r.gflops:.1f}",
            f"{r.pct_peak:.0f}%", "-" if np.isnan(r.ratio_best_peer) else f"{r.ratio_best_peer:.2f}",
            f"{r.worst_error:.2g}", "yes" if r.agrees else "NO", _spread_text(r),
        ])
    widths = [max(len(row[c]) for row in lines) for c in range(len(header))]
    out = [f"each contender in its own fresh process, {threads} threads; sgemm 2048^3 float32 peak measured in "
           f"this run: {peak:.0f} GFLOP/s" + bf16_peak_text(results)]
    for n, row in enumerate(lines):
        out.append("  ".join(cell.rjust(w) for cell, w in zip(row, widths)))
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    if any(r.reruns for r in results):
        out.append(f"re-run xN: its processes' medians spread by more than {max_spread}x (slowest / fastest), so it "
                   "ran N more times; its median is over all its runs")
    noisy = [f"{r.name} at {r.size}" for r in results if r.noisy]
    if noisy:
        out.append(f"NOISY: still spread by more than {max_spread}x after the re-runs, do not trust its median (the "
                   f"machine was busy; run the bench again): {', '.join(noisy)}")
    return "\n".join(out)


def _main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Run one contender in this process (used by compare()).")
    ap.add_argument("--run", required=True)
    ap.add_argument("--size", type=parse_size, required=True)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--budget", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--save")
    a = ap.parse_args(argv)
    record = run_contender(a.run, a.size, dtype=np.dtype(a.dtype), threads=a.threads, budget=a.budget, seed=a.seed,
                           save=a.save)
    print(json.dumps(record, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_main())
