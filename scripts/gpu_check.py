"""GPU check of the cuda backend: correctness first, then timing against cuDNN.

One command on a machine with an NVIDIA GPU (finishes in a few minutes on an H200)::

    PYTHONPATH=. python3 scripts/gpu_check.py --out "$OUT"

1. the conformance suite on the real GPU (small sizes, every check);
2. correctness against the float64 NumPy reference at real sizes, B in {1, 16, 64, 256},
   T=100, I=H=512, plus odd sizes that do not divide the 16x16 tile, float32 and float64,
   with lengths and both directions; outputs are poisoned (NaN) before each run so an
   unwritten element fails;
3. device arrays from PyTorch (and CuPy when installed) in, device arrays out, no host copy;
   a stacked bidirectional layer on device input (each direction writes a strided half of
   the layer output); streaming ``cell`` on device arrays with resident weights and
   ``out=(h, c)``: correctness after many steps, and no device allocation per warm step;
4. timing: our forward vs ``torch.nn.LSTM`` (cuDNN), both on device-resident inputs, timed
   with CUDA events on one stream, medians of interleaved runs; one streaming ``cell``
   step vs ``torch.nn.LSTMCell``;
5. the full cell (issue 10): every compile-time variant of the gate kernels — peepholes,
   clip, input_forget, projection, and all of them at once — against the float64
   reference at real and odd sizes, both directions, with lengths, float32 and float64,
   outputs poisoned; a stacked bidirectional LSTMP on device input; streaming ``cell`` with a
   projection and peepholes, allocation-free once warm; and the cost of each feature over
   the plain kernel (same sizes, interleaved medians; the requirement is <= 10 % for
   peephole + clip), with ``torch.nn.LSTM(proj_size=P)`` (cuDNN) beside the projection.

6. training (issue 11): ``forward_train`` + ``backward`` against the float64 reference's
   gradients (dx, dh0, dc0 and every weight) at real and odd sizes, float32 and float64, with
   lengths, both directions, plain and with every feature at once and a projection; bitwise
   determinism of repeated backward calls on the real GPU (concurrent blocks, which the
   simulator cannot show); a stacked bidirectional layer trained on device input; and the time
   of our ``forward_train + backward`` against ``torch.nn.LSTM`` (cuDNN) forward + backward
   (autograd, all weight gradients), device-resident, CUDA events, interleaved medians.

7. device functions (``lstm_backends.cuda_device``, issue 18): user-style ``@cuda.jit``
   kernels that step T steps with ``step`` (one block per row, per-row lengths, h double
   buffered, c in place) and ``step_rows`` against the float64 reference, every feature
   variant, float32 and float64, outputs poisoned; then the per-step time of a user kernel
   stepping T steps in one launch at B1 I64 H128 and B1 I128 H256 (CUDA events, medians),
   next to ``torch.nn.LSTMCell`` stepped from Python.

Writes ``gpu_check.json`` and ``gpu_check.md`` to ``--out``; exits non-zero when any
correctness check fails.  ``--smoke`` runs tiny sizes (CUDA simulator friendly, torch
optional) and two of the conformance checks (the test suite runs every one of them under the
simulator) to prove the script itself works without a GPU.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import time
import traceback

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from numba import cuda  # noqa: E402 - a module global for the user-style kernels (_device_fn_kernel)

import lstm_backends as lb  # noqa: E402
from lstm_backends._bench import flops  # noqa: E402
from lstm_backends.testing import random_problem, reference_forward, run_conformance, worst_error  # noqa: E402

FULL_SIZES = [(1, 100, 512, 512), (16, 100, 512, 512), (64, 100, 512, 512), (256, 100, 512, 512),
              (3, 37, 37, 77), (129, 20, 100, 300)]
SMOKE_SIZES = [(3, 4, 7, 9)]
TIMING_FULL = [(1, 100, 512, 512), (16, 100, 512, 512), (64, 100, 512, 512), (256, 100, 512, 512),
               (64, 100, 1024, 1024)]
TIMING_SMOKE = [(2, 3, 4, 4)]
# (B, T, I, H, P): the full-cell variants at real and odd sizes, and the sizes their cost is timed at
FEATURE_FULL = [(64, 50, 256, 256, 128), (3, 37, 37, 77, 20)]
FEATURE_SMOKE = [(3, 3, 4, 5, 2)]
FEATURE_TIMING_FULL = [(16, 100, 512, 512, 256), (256, 100, 512, 512, 256)]
FEATURE_TIMING_SMOKE = [(2, 2, 3, 3, 2)]
# (B, T, I, H, P, variant): training checked against the float64 reference; timed against cuDNN
BACKWARD_FULL = [(16, 100, 256, 256, 0, "plain"), (64, 50, 512, 512, 0, "plain"), (3, 37, 37, 77, 0, "plain"),
                 (32, 40, 128, 256, 128, "all"), (5, 21, 19, 45, 13, "projection")]
BACKWARD_SMOKE = [(3, 3, 4, 5, 0, "plain"), (2, 3, 3, 4, 2, "all")]
BACKWARD_TIMING_FULL = [(16, 100, 512, 512), (64, 100, 512, 512), (256, 100, 512, 512), (64, 100, 1024, 1024)]
BACKWARD_TIMING_SMOKE = [(2, 3, 4, 4)]
# (B, T, I, H, P, variant, rows per block): the device functions in user kernels; the step timed at (B, I, H)
DEVICE_FN_FULL = [(4, 50, 64, 128, 0, "plain", 1), (3, 37, 37, 77, 0, "peephole+clip", 1),
                  (4, 40, 64, 128, 48, "projection", 1), (5, 30, 37, 77, 20, "all", 1),
                  (5, 30, 64, 128, 0, "plain", 2), (5, 30, 37, 77, 20, "all", 2)]
DEVICE_FN_SMOKE = [(2, 3, 3, 5, 0, "plain", 1), (3, 3, 3, 5, 2, "all", 2)]
DEVICE_FN_TIMING_FULL = [(1, 64, 128), (1, 128, 256)]
DEVICE_FN_TIMING_SMOKE = [(1, 3, 5)]
#: max |got - ref| / max |ref| per gradient (elementwise tolerances are too strict for sums over
#: thousands of rows in float32; the elementwise figure is reported too)
GRAD_TOLERANCE = {"float32": 1e-4, "float64": 1e-10}
#: name -> (problem keywords, proj?) of every variant the script checks and times
VARIANTS = {
    "plain": {},
    "peephole": {"peephole": True},
    "clip": {"clip": 0.5},
    "input_forget": {"input_forget": True},
    "peephole+clip": {"peephole": True, "clip": 0.5},
    "projection": {"proj": True},
    "all": {"peephole": True, "clip": 0.5, "input_forget": True, "proj": True},
}


def log(msg: str) -> None:
    print(msg, flush=True)


def _verdict(passed) -> str:
    return "PASS" if passed else "FAIL"


def _torch_cuda():
    """The torch module when it is installed and sees a GPU, else None."""
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


def _cuda_ms(stream, work) -> float:
    """Milliseconds of ``work()`` queued on the numba ``stream``, by CUDA events (waits for the end)."""
    from numba import cuda

    start, end = cuda.event(), cuda.event()
    start.record(stream)
    work()
    end.record(stream)
    end.synchronize()
    return start.elapsed_time(end)


def _torch_ms(torch, work, inference=True) -> float:
    """Milliseconds of ``work()`` on torch's current stream, by CUDA events (waits for the end);
    under ``torch.inference_mode()`` unless ``inference`` is false."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    with torch.inference_mode() if inference else contextlib.nullcontext():
        start.record()
        work()
        end.record()
    end.synchronize()
    return start.elapsed_time(end)


def _interleaved_medians(runners, repeat):
    """Each runner once to warm up (JIT compile, cuDNN plans), then ``repeat`` interleaved rounds:
    the median time of each."""
    for fn in runners.values():
        fn()
    times = {k: [] for k in runners}
    for _ in range(repeat):
        for k, fn in runners.items():
            times[k].append(fn())
    return {k: statistics.median(v) for k, v in times.items()}


def _torch_lstm(torch, i, h, params):
    """``torch.nn.LSTM(i, h)`` on the GPU holding our (w_ih, w_hh, b_ih, b_hh)."""
    lstm = torch.nn.LSTM(i, h).cuda()
    with torch.no_grad():
        for name, v in zip(("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"), params):
            getattr(lstm, name).copy_(torch.from_numpy(v))
    return lstm


def _versus_cudnn(size, med, flop_count):
    """The timing row of ours against cuDNN (``cudnn`` may be missing from ``med``), and the
    cuDNN time and ratio as printed."""
    row = {"size": size, "ours_ms": med["ours"], "cudnn_ms": med.get("cudnn"),
           "ratio": med["ours"] / med["cudnn"] if "cudnn" in med else None,
           "ours_tflops": flop_count / med["ours"] / 1e9}
    ratio = f"{row['ratio']:.2f}x" if row["ratio"] else "-"
    cud = f"{row['cudnn_ms']:.3f}" if row["cudnn_ms"] else "-"
    return row, cud, ratio


def _stacked_error(be, t, b, i, h, seed, problem_seed, **layer):
    """A stacked bidirectional ``lb.LSTM`` on device input against the float64 numpy one with the
    same weights: the output y and the worst error / tolerance of (y, h_n, c_n)."""
    from numba import cuda

    lstm = lb.LSTM(i, h, num_layers=2, bidirectional=True, backend=be, seed=seed, **layer)
    ref_lstm = lb.LSTM(i, h, num_layers=2, bidirectional=True, backend="numpy", dtype=np.float64, **layer)
    ref_lstm.load_state_dict(lstm.state_dict())
    p = random_problem(t, b, i, h, seed=problem_seed, lengths="random")
    y, (h_n, c_n) = lstm(cuda.to_device(p.x), lengths=p.lengths)
    ry, (rh, rc) = ref_lstm(p.x.astype(np.float64), lengths=p.lengths)
    return y, max(worst_error(a.copy_to_host(), r, np.float32) for a, r in ((y, ry), (h_n, rh), (c_n, rc)))


def _stream_cells(be, p, steps, **options):
    """Streaming ``cell`` over the steps of problem ``p`` on device arrays, resident weights and
    ``out=(h, c)`` in place: the final h (device) and the number of device allocations made after
    the first (warm-up) step."""
    from numba import cuda

    params = be.to_device(p.params)
    hd, cd = cuda.to_device(p.h0), cuda.to_device(p.c0)
    xs = [cuda.to_device(p.x[s]) for s in range(steps)]
    be.cell(xs[0], hd, cd, params, out=(hd, cd), **options)  # warm: compiles, creates the scratch
    count = [0]
    originals = {n: getattr(cuda, n) for n in ("device_array", "to_device", "device_array_like")}

    def counting(fn):
        def wrapper(*a, **k):
            count[0] += 1
            return fn(*a, **k)
        return wrapper

    for n, fn in originals.items():
        setattr(cuda, n, counting(fn))
    try:
        for s in range(1, steps):
            be.cell(xs[s], hd, cd, params, out=(hd, cd), **options)
    finally:
        for n, fn in originals.items():
            setattr(cuda, n, fn)
    return hd, count[0]


def check_correctness(be, sizes, dtypes, results):
    from numba import cuda

    ok = True
    for b, t, i, h in sizes:
        for dtype in dtypes:
            for reverse in (False, True):
                p = random_problem(t, b, i, h, dtype=dtype, seed=b * 7 + t, lengths="random" if b > 1 else None,
                                   reverse=reverse)
                ref = reference_forward(p)
                poison = [cuda.to_device(np.full(s, np.nan, dtype)) for s in ((t, b, h), (b, h), (b, h))]
                got = be.forward(cuda.to_device(p.x), be.to_device(p.params), cuda.to_device(p.h0),
                                 cuda.to_device(p.c0), lengths=p.lengths, reverse=reverse, out=tuple(poison))
                errs = [worst_error(g.copy_to_host(), r, dtype) for g, r in zip(got, ref)]
                rel = float(np.linalg.norm(got[0].copy_to_host() - ref[0]) / max(np.linalg.norm(ref[0]), 1e-30))
                passed = max(errs) <= 1.0
                ok &= passed
                results["correctness"].append({"size": [b, t, i, h], "dtype": np.dtype(dtype).name,
                                               "reverse": reverse, "err_over_tol": max(errs), "rel_l2": rel,
                                               "passed": passed})
                log(f"  B={b:<4} T={t:<4} I={i:<5} H={h:<5} {np.dtype(dtype).name} reverse={reverse!s:<5} "
                    f"worst/tol={max(errs):.3g} relL2={rel:.2e} {_verdict(passed)}")
    return ok


def check_interop(be, results):
    """PyTorch CUDA tensors (and CuPy arrays) in -> device arrays out, same numbers."""
    ok = True
    p = random_problem(10, 4, 32, 48, seed=5, lengths=[10, 3, 0, 7])
    ref = reference_forward(p)
    try:
        import torch

        if torch.cuda.is_available():
            tx = torch.from_numpy(p.x).cuda()
            y, h_n, c_n = be.forward(tx, [torch.from_numpy(a).cuda() for a in p.params[:4]],
                                     torch.from_numpy(p.h0).cuda(), torch.from_numpy(p.c0).cuda(),
                                     lengths=p.lengths)
            passed = hasattr(y, "__cuda_array_interface__") and not isinstance(y, np.ndarray) and \
                max(worst_error(a.copy_to_host(), r, np.float32) for a, r in zip((y, h_n, c_n), ref)) <= 1
            back = torch.as_tensor(y, device="cuda")  # zero-copy back into torch
            passed &= tuple(back.shape) == (10, 4, 48)
            results["interop"]["torch"] = passed
            ok &= passed
            log(f"  torch CUDA tensors in, device arrays out: {_verdict(passed)}")
    except ImportError:
        results["interop"]["torch"] = "not installed"
    try:
        import cupy

        y, _, _ = be.forward(cupy.asarray(p.x), [cupy.asarray(a) for a in p.params[:4]], cupy.asarray(p.h0),
                             cupy.asarray(p.c0), lengths=p.lengths)
        passed = worst_error(cupy.asnumpy(cupy.asarray(y)), ref[0], np.float32) <= 1
        results["interop"]["cupy"] = passed
        ok &= passed
        log(f"  CuPy arrays in, device arrays out: {_verdict(passed)}")
    except ImportError:
        results["interop"]["cupy"] = "not installed"
    return ok


def check_stack_and_streaming(be, results, smoke):
    """Stacked bidirectional layer on device input; allocation-free streaming cell."""
    ok = True
    t, b, i, h = (5, 3, 4, 6) if smoke else (50, 16, 256, 256)
    y, err = _stacked_error(be, t, b, i, h, seed=3, problem_seed=9)
    passed = err <= 1.0 and not isinstance(y, np.ndarray)
    results["stack"] = {"size": [b, t, i, h], "err_over_tol": err, "passed": passed}
    ok &= passed
    log(f"  stacked bidirectional on device, B={b} T={t} I={i} H={h}: worst/tol={err:.3g} "
        f"{_verdict(passed)}")

    steps = 4 if smoke else 200
    p = random_problem(steps, b, i, h, seed=10)
    ref = reference_forward(p)[0]
    hd, count = _stream_cells(be, p, steps)
    err = worst_error(hd.copy_to_host(), ref[-1], np.float32)
    passed = err <= 1.0 and count == 0
    results["streaming"] = {"steps": steps, "device_allocations_after_warmup": count, "err_over_tol": err,
                            "passed": passed}
    ok &= passed
    log(f"  streaming cell, {steps} steps on device arrays: worst/tol={err:.3g}, device allocations after the "
        f"first step: {count} {_verdict(passed)}")
    return ok


def time_cell(be, repeat, results, smoke):
    """One streaming step on device arrays (resident weights, out=(h, c)) vs torch LSTMCell."""
    from numba import cuda

    b, i, h = (2, 3, 4) if smoke else (1, 128, 256)
    rng = np.random.default_rng(4)
    params = lb.testing.random_params(i, h, rng=rng)
    x = rng.standard_normal((b, i)).astype(np.float32)
    stream = cuda.stream()
    dparams = be.to_device(params, stream=stream)
    dx, hd, cd = (cuda.to_device(a, stream=stream) for a in (x, np.zeros((b, h), np.float32),
                                                             np.zeros((b, h), np.float32)))
    n = 2 if smoke else 200

    def steps():
        for _ in range(n):
            be.cell(dx, hd, cd, dparams, out=(hd, cd), stream=stream)

    runners = {"ours": lambda: _cuda_ms(stream, steps) / n * 1e3}  # microseconds per step, launches included
    torch = _torch_cuda()
    if torch is not None:
        cell = torch.nn.LSTMCell(i, h).cuda()
        tx = torch.from_numpy(x).cuda()
        th, tc = torch.zeros(b, h, device="cuda"), torch.zeros(b, h, device="cuda")

        def torch_steps():
            for _ in range(n):
                cell(tx, (th, tc))

        runners["torch"] = lambda: _torch_ms(torch, torch_steps) / n * 1e3
    for fn in runners.values():
        fn()
    times = {k: statistics.median([fn() for _ in range(max(2, repeat // 3))]) for k, fn in runners.items()}
    results["cell_timing"] = {"size": [b, i, h], **{f"{k}_us": v for k, v in times.items()}}
    log(f"  cell B={b} I={i} H={h}: " + ", ".join(f"{k} {v:.1f} us/step" for k, v in times.items()))


def time_against_cudnn(be, sizes, repeat, results):
    from numba import cuda

    torch = _torch_cuda()
    stream = cuda.stream()
    for b, t, i, h in sizes:
        p = random_problem(t, b, i, h, seed=11)
        dx, dh, dc = (cuda.to_device(a, stream=stream) for a in (p.x, p.h0, p.c0))
        dparams = be.to_device(p.params, stream=stream)

        def ours(dx=dx, dparams=dparams, dh=dh, dc=dc):
            return _cuda_ms(stream, lambda: be.forward(dx, dparams, dh, dc, stream=stream))

        runners = {"ours": ours}
        if torch is not None:
            lstm = _torch_lstm(torch, i, h, p.params)
            tx = torch.from_numpy(p.x).cuda()
            th, tc = torch.from_numpy(p.h0).cuda()[None], torch.from_numpy(p.c0).cuda()[None]

            def cudnn(lstm=lstm, tx=tx, th=th, tc=tc):
                return _torch_ms(torch, lambda: lstm(tx, (th, tc)))

            runners["cudnn"] = cudnn
        med = _interleaved_medians(runners, repeat)
        row, cud, ratio = _versus_cudnn([b, t, i, h], med, flops(b, t, i, h))
        results["timing"].append(row)
        log(f"  B={b:<4} T={t:<4} I={i:<5} H={h:<5} ours {row['ours_ms']:.3f} ms  cuDNN {cud} ms  "
            f"ours/cuDNN {ratio}  ({row['ours_tflops']:.2f} TFLOP/s)")


def _feature_problem(b, t, i, h, p, variant, dtype, seed, reverse=False):
    kw = dict(VARIANTS[variant])
    proj = kw.pop("proj", False)
    peephole = kw.pop("peephole", False)
    return random_problem(t, b, i, h, dtype=dtype, seed=seed, lengths="random" if b > 1 else None, reverse=reverse,
                          proj_size=p if proj else 0, peephole=peephole, **kw)


def check_features(be, sizes, dtypes, results, smoke):
    """Every gate-kernel variant against the float64 reference, outputs poisoned first; the
    stacked LSTMP on device input; streaming cell with projection + peepholes."""
    from numba import cuda

    ok = True
    variants = ["all", "projection"] if smoke else [v for v in VARIANTS if v != "plain"]
    for b, t, i, h, p in sizes:
        for dtype in dtypes:
            for variant in variants:
                for reverse in ((False,) if smoke else (False, True)):
                    prob = _feature_problem(b, t, i, h, p, variant, dtype, seed=b + t + len(variant), reverse=reverse)
                    s = prob.params.w_hh.shape[1]
                    ref = reference_forward(prob)
                    poison = [cuda.to_device(np.full(sh, np.nan, dtype)) for sh in ((t, b, s), (b, s), (b, h))]
                    got = be.forward(cuda.to_device(prob.x), be.to_device(prob.params), cuda.to_device(prob.h0),
                                     cuda.to_device(prob.c0), lengths=prob.lengths, reverse=reverse,
                                     out=tuple(poison), **prob.options)
                    err = max(worst_error(g.copy_to_host(), r, dtype) for g, r in zip(got, ref))
                    passed = err <= 1.0
                    ok &= passed
                    results["features"].append({"size": [b, t, i, h, p], "variant": variant,
                                                "dtype": np.dtype(dtype).name, "reverse": reverse,
                                                "err_over_tol": err, "passed": passed})
                    log(f"  {variant:<13} B={b:<4} T={t:<4} I={i:<4} H={h:<4} P={p:<4} {np.dtype(dtype).name} "
                        f"reverse={reverse!s:<5} worst/tol={err:.3g} {_verdict(passed)}")
    # a stacked bidirectional LSTMP on device input stays on the device
    t, b, i, h, p = (4, 3, 4, 5, 2) if smoke else (50, 16, 256, 256, 128)
    y, err = _stacked_error(be, t, b, i, h, seed=5, problem_seed=12, proj_size=p)
    passed = err <= 1.0 and not isinstance(y, np.ndarray) and y.shape == (t, b, 2 * p)
    ok &= passed
    results["lstmp_stack"] = {"size": [b, t, i, h, p], "err_over_tol": err, "passed": passed}
    log(f"  stacked bidirectional LSTMP on device, B={b} T={t} I={i} H={h} P={p}: worst/tol={err:.3g} "
        f"{_verdict(passed)}")
    # streaming with projection + peepholes + clip: in place, resident weights, no allocation once warm
    steps = 4 if smoke else 100
    prob = random_problem(steps, b, i, h, seed=13, proj_size=p, peephole=True, clip=0.5)
    ref = reference_forward(prob)[1]
    hd, count = _stream_cells(be, prob, steps, clip=0.5)
    err = worst_error(hd.copy_to_host(), ref, np.float32)
    passed = err <= 1.0 and count == 0
    ok &= passed
    results["lstmp_streaming"] = {"steps": steps, "device_allocations_after_warmup": count, "err_over_tol": err,
                                  "passed": passed}
    log(f"  streaming LSTMP cell with peepholes and clip, {steps} steps: worst/tol={err:.3g}, device allocations "
        f"after the first step: {count} {_verdict(passed)}")
    return ok


def time_features(be, sizes, repeat, results, smoke=False):
    """Each variant's forward time next to the plain kernel's, interleaved on one stream (CUDA
    events, medians); cuDNN's LSTM(proj_size=P) beside our projection when torch has CUDA.
    ``smoke``: the plain kernel and all features only (the code path is the same)."""
    from numba import cuda

    variants = ["plain", "all"] if smoke else list(VARIANTS)
    torch = _torch_cuda()
    stream = cuda.stream()
    for b, t, i, h, p in sizes:
        runners = {}
        for variant in variants:
            prob = _feature_problem(b, t, i, h, p, variant, np.float32, seed=14)
            prob.lengths = None
            dx, dh, dc = (cuda.to_device(a, stream=stream) for a in (prob.x, prob.h0, prob.c0))
            dparams = be.to_device(prob.params, stream=stream)

            def run(dx=dx, dparams=dparams, dh=dh, dc=dc, options=prob.options):
                return _cuda_ms(stream, lambda: be.forward(dx, dparams, dh, dc, stream=stream, **options))

            runners[variant] = run
        if torch is not None:
            lstm = torch.nn.LSTM(i, h, proj_size=p).cuda()
            tx = torch.randn(t, b, i, device="cuda")

            def cudnn_proj(lstm=lstm, tx=tx):
                return _torch_ms(torch, lambda: lstm(tx))

            runners["cudnn projection"] = cudnn_proj
        med = _interleaved_medians(runners, repeat)
        row = {"size": [b, t, i, h, p], "ms": med,
               "cost_over_plain": {k: med[k] / med["plain"] - 1 for k in variants if k != "plain"}}
        results["feature_timing"].append(row)
        log(f"  B={b:<4} T={t:<4} I={i:<4} H={h:<4} P={p:<4} plain {med['plain']:.3f} ms; " + ", ".join(
            f"{k} {100 * v:+.1f}%" for k, v in row["cost_over_plain"].items())
            + (f"; cuDNN LSTM(proj_size) {med['cudnn projection']:.3f} ms" if "cudnn projection" in med else ""))


def _grad_errors(got, ref, dtype):
    """Per gradient: (max |got - ref| / max |ref|, elementwise worst / tolerance)."""
    names = ("dx", "dh0", "dc0", *(f"d{n}" for n in lb.LSTMParams._fields))
    out = {}
    for name, g, r in zip(names, (*got[:3], *got.dparams), (*ref[:3], *ref.dparams)):
        if r is None:
            continue
        g = g.copy_to_host() if hasattr(g, "copy_to_host") else np.asarray(g)
        scale = max(float(np.abs(r).max()), 1e-30)
        out[name] = (float(np.abs(g - r).max()) / scale, worst_error(g, r, dtype))
    return out


def check_backward(be, sizes, dtypes, results, smoke):
    """forward_train + backward on device arrays against the float64 reference; bitwise
    determinism of repeated calls; a stacked bidirectional layer trained on the device."""
    from numba import cuda

    from lstm_backends.testing import reference_backward

    ok = True
    for b, t, i, h, p, variant in sizes:
        for dtype in dtypes:
            for reverse in ((False,) if smoke else (False, True)):
                prob = _feature_problem(b, t, i, h, p, variant, dtype, seed=b + t + 3 * len(variant), reverse=reverse)
                dy, dh_n, dc_n = prob.output_grads()
                stream = cuda.stream()
                y, h_n, c_n, tape = be.forward_train(cuda.to_device(prob.x), be.to_device(prob.params),
                                                     cuda.to_device(prob.h0), cuda.to_device(prob.c0),
                                                     lengths=prob.lengths, reverse=reverse, stream=stream,
                                                     **prob.options)
                d_grads = [cuda.to_device(a) for a in (dy, dh_n, dc_n)]
                got = be.backward(tape, *d_grads, stream=stream)
                again = be.backward(tape, *d_grads, stream=stream)
                stream.synchronize()
                same = all(np.array_equal(a.copy_to_host(), c.copy_to_host())
                           for a, c in zip((*got[:3], *got.dparams), (*again[:3], *again.dparams)) if a is not None)
                errs = _grad_errors(got, reference_backward(prob, dy, dh_n, dc_n), dtype)
                dt = np.dtype(dtype).name
                worst = max(e[0] for e in errs.values())
                passed = worst <= GRAD_TOLERANCE[dt] and same
                ok &= passed
                results["backward"].append({"size": [b, t, i, h, p], "variant": variant, "dtype": dt,
                                            "reverse": reverse, "max_rel": worst,
                                            "per_gradient": {k: v[0] for k, v in errs.items()},
                                            "elementwise_over_tol": max(e[1] for e in errs.values()),
                                            "deterministic": same, "passed": passed})
                log(f"  {variant:<10} B={b:<4} T={t:<4} I={i:<4} H={h:<4} P={p:<4} {dt} reverse={reverse!s:<5} "
                    f"max|err|/max|ref|={worst:.2e} (worst: {max(errs, key=lambda k: errs[k][0])}) "
                    f"bitwise repeatable={same} {_verdict(passed)}")
    # a stacked bidirectional layer trained on device input
    t, b, i, h = (3, 2, 3, 4) if smoke else (50, 16, 256, 256)
    lstm = lb.LSTM(i, h, num_layers=2, bidirectional=True, backend=be, seed=7)
    ref = lb.LSTM(i, h, num_layers=2, bidirectional=True, backend="numpy", dtype=np.float64)
    ref.load_state_dict(lstm.state_dict())
    prob = random_problem(t, b, i, h, seed=15, lengths="random")
    dy = np.random.default_rng(16).standard_normal((t, b, 2 * h)).astype(np.float32)
    y, _, tape = lstm.forward_train(cuda.to_device(prob.x), lengths=prob.lengths)
    dx, (dh0, dc0), grads = lstm.backward(tape, cuda.to_device(dy))
    rdx, (rdh0, rdc0), rgrads = ref.backward(ref.forward_train(prob.x.astype(np.float64), lengths=prob.lengths)[2],
                                             dy.astype(np.float64))
    pairs = [(dx, rdx), (dh0, rdh0), (dc0, rdc0), *((grads[k], rgrads[k]) for k in rgrads)]
    worst = max(float(np.abs(g.copy_to_host() - r).max()) / max(float(np.abs(r).max()), 1e-30) for g, r in pairs)
    passed = worst <= GRAD_TOLERANCE["float32"] and not isinstance(dx, np.ndarray)
    ok &= passed
    results["backward_stack"] = {"size": [b, t, i, h], "max_rel": worst, "passed": passed}
    log(f"  stacked bidirectional LSTM trained on device, B={b} T={t} I={i} H={h}: max|err|/max|ref|={worst:.2e} "
        f"{_verdict(passed)}")
    return ok


def time_backward(be, sizes, repeat, results):
    """Our forward_train + backward against cuDNN's forward + backward (torch autograd: dx, dh0,
    dc0 and every weight gradient), float32, device-resident, CUDA events, interleaved medians."""
    from numba import cuda

    torch = _torch_cuda()
    stream = cuda.stream()
    for b, t, i, h in sizes:
        p = random_problem(t, b, i, h, seed=17)
        dy_host = np.random.default_rng(18).standard_normal((t, b, h)).astype(np.float32)
        dx, dh, dc, dy = (cuda.to_device(a, stream=stream) for a in (p.x, p.h0, p.c0, dy_host))
        dparams = be.to_device(p.params, stream=stream)

        def ours(dx=dx, dparams=dparams, dh=dh, dc=dc, dy=dy):
            def work():
                tape = be.forward_train(dx, dparams, dh, dc, stream=stream)[3]
                be.backward(tape, dy, stream=stream)
            return _cuda_ms(stream, work)

        runners = {"ours": ours}
        if torch is not None:
            lstm = _torch_lstm(torch, i, h, p.params)
            tx = torch.from_numpy(p.x).cuda().requires_grad_()
            th = torch.from_numpy(p.h0).cuda()[None].requires_grad_()
            tc = torch.from_numpy(p.c0).cuda()[None].requires_grad_()
            tdy = torch.from_numpy(dy_host).cuda()

            def cudnn(lstm=lstm, tx=tx, th=th, tc=tc, tdy=tdy):
                def work():
                    out, _ = lstm(tx, (th, tc))
                    out.backward(tdy)
                ms = _torch_ms(torch, work, inference=False)
                lstm.zero_grad(set_to_none=True)
                tx.grad = th.grad = tc.grad = None
                return ms

            runners["cudnn"] = cudnn
        med = _interleaved_medians(runners, repeat)
        row, cud, ratio = _versus_cudnn([b, t, i, h], med, 3 * flops(b, t, i, h))
        results["backward_timing"].append(row)
        log(f"  B={b:<4} T={t:<4} I={i:<5} H={h:<5} forward_train+backward: ours {row['ours_ms']:.3f} ms  "
            f"cuDNN {cud} ms  ours/cuDNN {ratio}  (~{row['ours_tflops']:.2f} TFLOP/s at 3x the forward's FLOPs)")


_DEVICE_FN_KERNELS = {}  # (step device function, rows) -> kernel: compiled once per dtype, not per size


def _device_fn_kernel(step, rows):
    """A user-style kernel over T steps with a step device function (``lstm_backends.cuda_device``).

    ``rows == 1``: one block per batch row; rows past their length skip the step (uniform per
    block); h double buffered in ``hbuf`` (2, B, S) and indexed by the steps taken, c in place,
    ys (T, B, S) written after each step, the final h to h_n.  ``rows > 1``: ``step_rows`` on
    ``rows`` rows per block (all rows run all steps; ``lengths`` unused).  The kernels use the
    module-level ``cuda`` (the simulator swaps a kernel's global ``cuda`` for its own).
    """
    if (step, rows) in _DEVICE_FN_KERNELS:
        return _DEVICE_FN_KERNELS[step, rows]
    if rows == 1:
        @cuda.jit
        def run(xs, lengths, w, hbuf, c, m, ys, h_n):
            b = cuda.blockIdx.x
            r = cuda.threadIdx.x
            n = cuda.blockDim.x
            s = 0
            for t in range(xs.shape[0]):
                if t < lengths[b]:
                    h_out = hbuf[(s + 1) % 2, b]
                    step(xs[t, b], hbuf[s % 2, b], c[b], w, h_out, c[b], m[b])
                    cuda.syncthreads()
                    s += 1
                    for j in range(r, h_out.shape[0], n):
                        ys[t, b, j] = h_out[j]
            for j in range(r, h_n.shape[1], n):
                h_n[b, j] = hbuf[s % 2, b, j]
    else:
        @cuda.jit
        def run(xs, lengths, w, hbuf, c, m, ys, h_n):
            lo = cuda.blockIdx.x * rows
            hi = min(lo + rows, xs.shape[1])
            r = cuda.threadIdx.x
            n = cuda.blockDim.x
            width = h_n.shape[1]
            steps = xs.shape[0]
            for t in range(steps):
                h_out = hbuf[(t + 1) % 2, lo:hi]
                step(xs[t, lo:hi], hbuf[t % 2, lo:hi], c[lo:hi], w, h_out, c[lo:hi], m[lo:hi])
                cuda.syncthreads()
                for j in range(r, (hi - lo) * width, n):
                    ys[t, lo + j // width, j % width] = h_out[j // width, j % width]
            for j in range(r, (hi - lo) * width, n):
                h_n[lo + j // width, j % width] = hbuf[steps % 2, lo + j // width, j % width]
    _DEVICE_FN_KERNELS[step, rows] = run
    return run


def check_device_functions(sizes, dtypes, results, smoke):
    """The device functions of ``lstm_backends.cuda_device`` in user-style kernels against the
    float64 reference: every variant, per-row lengths (one row per block), ``step_rows``; h_n
    poisoned (NaN) before each run so an unwritten element fails."""
    from lstm_backends import cuda_device as lcd

    ok = True
    for b, t, i, h, p, variant, rows in sizes:
        for dtype in dtypes:
            prob = _feature_problem(b, t, i, h, p, variant, dtype, seed=b + t + len(variant) + rows)
            if rows > 1:
                prob.lengths = None  # step_rows advances all the rows of a block together
            w = lcd.prepare(prob.params, **prob.options)
            s = w.state_size
            lengths = prob.lengths if prob.lengths is not None else np.full(b, t, np.int64)
            hbuf = np.zeros((2, b, s), dtype)
            hbuf[0] = prob.h0
            threads = min(lcd.threads_per_block(w, rows), 8 if smoke else 1024)
            kernel = _device_fn_kernel(lcd.step_function(w, rows=rows > 1), rows)
            c, ys = cuda.to_device(prob.c0.copy()), cuda.to_device(np.zeros((t, b, s), dtype))
            h_n = cuda.to_device(np.full((b, s), np.nan, dtype))
            kernel[-(-b // rows), threads](cuda.to_device(prob.x), cuda.to_device(lengths), w, cuda.to_device(hbuf),
                                           c, cuda.to_device(np.zeros((b, h), dtype)), ys, h_n)
            ref = reference_forward(prob)
            err = max(worst_error(g.copy_to_host(), r, dtype) for g, r in zip((ys, h_n, c), ref))
            passed = err <= 1.0
            ok &= passed
            name = np.dtype(dtype).name
            results["device_functions"].append({"size": [b, t, i, h, p], "variant": variant, "rows_per_block": rows,
                                                "threads": threads, "dtype": name, "err_over_tol": err,
                                                "passed": passed})
            log(f"  {'step_rows' if rows > 1 else 'step':<9} {variant:<13} B={b:<3} T={t:<3} I={i:<4} H={h:<4} "
                f"P={p:<3} {name} {threads} threads: worst/tol={err:.3g} {_verdict(passed)}")
    return ok


def time_device_functions(sizes, steps, repeat, results):
    """Per-step time of a user kernel that steps ``steps`` steps in one launch with
    ``cuda_device.step`` (float32, one block per row, CUDA events, medians), next to
    ``torch.nn.LSTMCell`` stepped from Python (its launches and Python included: the cost the
    device functions remove)."""
    from lstm_backends import cuda_device as lcd

    torch = _torch_cuda()
    stream = cuda.stream()
    for b, i, h in sizes:
        rng = np.random.default_rng(19)
        w = lcd.prepare(lb.testing.random_params(i, h, rng=rng), stream=stream)
        threads = lcd.threads_per_block(w)
        kernel = _device_fn_kernel(lcd.step_function(w), 1)
        x = rng.standard_normal((steps, b, i)).astype(np.float32)
        dx = cuda.to_device(x, stream=stream)
        args = (dx, cuda.to_device(np.full(b, steps, np.int64), stream=stream), w,
                cuda.to_device(np.zeros((2, b, h), np.float32), stream=stream),
                cuda.to_device(np.zeros((b, h), np.float32), stream=stream),
                cuda.to_device(np.zeros((b, h), np.float32), stream=stream),
                cuda.to_device(np.zeros((steps, b, h), np.float32), stream=stream),
                cuda.to_device(np.zeros((b, h), np.float32), stream=stream))

        def ours(args=args, kernel=kernel, threads=threads, b=b):
            return _cuda_ms(stream, lambda: kernel[b, threads, stream](*args)) * 1e3 / steps

        runners = {"ours": ours}
        if torch is not None:
            cell = torch.nn.LSTMCell(i, h).cuda()
            tx = torch.from_numpy(x).cuda()

            def torch_cell(cell=cell, tx=tx, b=b, h=h):
                def work():
                    hc = (torch.zeros(b, h, device="cuda"), torch.zeros(b, h, device="cuda"))
                    for t in range(steps):
                        hc = cell(tx[t], hc)
                return _torch_ms(torch, work) * 1e3 / steps

            runners["torch"] = torch_cell
        med = _interleaved_medians(runners, repeat)
        row = {"size": [b, i, h], "steps": steps, "threads": threads, "ours_us_per_step": med["ours"],
               "torch_lstmcell_us_per_step": med.get("torch")}
        results["device_function_timing"].append(row)
        theirs = f"{med['torch']:.2f}" if "torch" in med else "-"
        log(f"  B={b} I={i} H={h} T={steps}, {threads} threads: user kernel with cuda_device.step "
            f"{med['ours']:.2f} us/step; torch.nn.LSTMCell from Python {theirs} us/step")


def _cudnn_table(title, rows):
    """Markdown lines of a section of ``_versus_cudnn`` rows."""
    lines = ["", f"## {title}", "", "| B | T | I | H | ours ms | cuDNN ms | ours/cuDNN |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        b, t, i, h = r["size"]
        cudnn = "-" if r["cudnn_ms"] is None else f"{r['cudnn_ms']:.3f}"
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}"
        lines.append(f"| {b} | {t} | {i} | {h} | {r['ours_ms']:.3f} | {cudnn} | {ratio} |")
    return lines


def write_markdown(results, path):
    lines = [f"# GPU check ({results['device']})", "", f"{results['versions']}", "",
             "## Correctness (worst error / tolerance; <= 1 passes)", "",
             "| B | T | I | H | dtype | reverse | worst/tol | rel L2 | result |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results["correctness"]:
        b, t, i, h = r["size"]
        lines.append(f"| {b} | {t} | {i} | {h} | {r['dtype']} | {r['reverse']} | {r['err_over_tol']:.3g} | "
                     f"{r['rel_l2']:.2e} | {_verdict(r['passed'])} |")
    lines += _cudnn_table("Forward time, float32, device-resident inputs (CUDA events, medians)", results["timing"])
    lines += ["", "## Full-cell variants (worst error / tolerance)", "",
              "| variant | B | T | I | H | P | dtype | reverse | worst/tol | result |", "|---" * 10 + "|"]
    for r in results["features"]:
        b, t, i, h, p = r["size"]
        lines.append(f"| {r['variant']} | {b} | {t} | {i} | {h} | {p} | {r['dtype']} | {r['reverse']} | "
                     f"{r['err_over_tol']:.3g} | {_verdict(r['passed'])} |")
    timed = list(results["feature_timing"][0]["cost_over_plain"]) if results["feature_timing"] else []
    lines += ["", "## Cost of each feature over the plain kernel (float32, forward, medians)", "",
              "| B | T | I | H | P | plain ms | " + " | ".join(timed) + " |", "|---" * (6 + len(timed)) + "|"]
    for r in results["feature_timing"]:
        b, t, i, h, p = r["size"]
        lines.append(f"| {b} | {t} | {i} | {h} | {p} | {r['ms']['plain']:.3f} | "
                     + " | ".join(f"{100 * v:+.1f}%" for v in r["cost_over_plain"].values()) + " |")
    lines += ["", "## Training: gradients against the float64 reference (max |err| / max |ref|)", "",
              "| variant | B | T | I | H | P | dtype | reverse | max rel | bitwise repeatable | result |",
              "|---" * 11 + "|"]
    for r in results["backward"]:
        b, t, i, h, p = r["size"]
        lines.append(f"| {r['variant']} | {b} | {t} | {i} | {h} | {p} | {r['dtype']} | {r['reverse']} | "
                     f"{r['max_rel']:.2e} | {r['deterministic']} | {_verdict(r['passed'])} |")
    lines += _cudnn_table("Training time: forward_train + backward vs cuDNN forward + backward (float32, medians)",
                          results["backward_timing"])
    lines += ["", "## Device functions (lstm_backends.cuda_device) in user kernels (worst error / tolerance)", "",
              "| function | variant | B | T | I | H | P | threads | dtype | worst/tol | result |", "|---" * 11 + "|"]
    for r in results["device_functions"]:
        b, t, i, h, p = r["size"]
        fn = "step_rows" if r["rows_per_block"] > 1 else "step"
        lines.append(f"| {fn} | {r['variant']} | {b} | {t} | {i} | {h} | {p} | {r['threads']} | {r['dtype']} | "
                     f"{r['err_over_tol']:.3g} | {_verdict(r['passed'])} |")
    lines += ["", "## Device functions: per-step time of a user kernel (float32, T steps in one launch, medians)", "",
              "| B | I | H | T | threads | cuda_device.step us/step | torch.nn.LSTMCell us/step (from Python) |",
              "|---" * 7 + "|"]
    for r in results["device_function_timing"]:
        b, i, h = r["size"]
        theirs = "-" if r["torch_lstmcell_us_per_step"] is None else f"{r['torch_lstmcell_us_per_step']:.2f}"
        lines.append(f"| {b} | {i} | {h} | {r['steps']} | {r['threads']} | {r['ours_us_per_step']:.2f} | {theirs} |")
    for key in ("stack", "streaming", "cell_timing", "lstmp_stack", "lstmp_streaming", "backward_stack"):
        if results.get(key):
            lines += ["", f"## {key}", "", f"{results[key]}"]
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description="Check and time the cuda backend on a real GPU")
    ap.add_argument("--out", default=".", help="folder for gpu_check.json and gpu_check.md")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: proves the script under the simulator")
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    t_start = time.time()
    be = lb.get_backend("cuda")
    import numba
    from numba import cuda

    sim = bool(numba.config.ENABLE_CUDASIM)
    device = "CUDA simulator" if sim else cuda.get_current_device().name
    device = device.decode() if isinstance(device, bytes) else str(device)
    versions = (f"python {platform.python_version()}, numpy {np.__version__}, numba {numba.__version__},"
                f" numba-cuda {be.version()}, lstm_backends {lb.__version__}")
    try:
        import torch

        versions += f", torch {torch.__version__} (cuDNN {torch.backends.cudnn.version()})"
    except ImportError:
        pass
    log(f"device: {device}\n{versions}")
    results = {"device": device, "versions": versions, "conformance": [], "correctness": [], "interop": {},
               "timing": [], "stack": None, "streaming": None, "cell_timing": None, "features": [],
               "feature_timing": [], "lstmp_stack": None, "lstmp_streaming": None, "backward": [],
               "backward_stack": None, "backward_timing": [], "device_functions": [], "device_function_timing": []}
    ok = True
    try:
        log("conformance suite:")
        for r in run_conformance(be, raise_on_failure=False) if not args.smoke else \
                run_conformance(be, ["cell", "backward_errors"], raise_on_failure=False):   # (the suite runs them all)
            results["conformance"].append(r._asdict())
            ok &= r.passed or r.skipped
            log(f"  {_verdict(r.passed)} {r.name} {r.message[:300]}")
        log("correctness at real sizes:")
        sizes = SMOKE_SIZES if args.smoke else FULL_SIZES
        ok &= check_correctness(be, sizes, (np.float32,) if args.smoke else (np.float32, np.float64), results)
        if not sim:
            log("device-array interop:")
            ok &= check_interop(be, results)
        log("stacked layer and streaming on the device:")
        ok &= check_stack_and_streaming(be, results, args.smoke)
        log("full cell: peepholes, clip, input_forget, projection:")
        ok &= check_features(be, FEATURE_SMOKE if args.smoke else FEATURE_FULL,
                             (np.float32,) if args.smoke else (np.float32, np.float64), results, args.smoke)
        log("training: forward_train + backward against the float64 reference:")
        ok &= check_backward(be, BACKWARD_SMOKE if args.smoke else BACKWARD_FULL,
                             (np.float32,) if args.smoke else (np.float32, np.float64), results, args.smoke)
        log("device functions (lstm_backends.cuda_device) in user kernels, against the float64 reference:")
        ok &= check_device_functions(DEVICE_FN_SMOKE if args.smoke else DEVICE_FN_FULL,
                                     (np.float32,) if args.smoke else (np.float32, np.float64), results, args.smoke)
        log("timing (float32):")
        time_against_cudnn(be, TIMING_SMOKE if args.smoke else TIMING_FULL, 2 if args.smoke else args.repeat,
                           results)
        time_cell(be, 2 if args.smoke else args.repeat, results, args.smoke)
        log("cost of each feature over the plain kernel (float32):")
        time_features(be, FEATURE_TIMING_SMOKE if args.smoke else FEATURE_TIMING_FULL, 1 if args.smoke else args.repeat,
                      results, smoke=args.smoke)
        log("training time, forward_train + backward vs cuDNN forward + backward (float32):")
        time_backward(be, BACKWARD_TIMING_SMOKE if args.smoke else BACKWARD_TIMING_FULL,
                      1 if args.smoke else args.repeat, results)
        log("device functions: per-step time of a user kernel vs torch.nn.LSTMCell (float32):")
        time_device_functions(DEVICE_FN_TIMING_SMOKE if args.smoke else DEVICE_FN_TIMING_FULL, 2 if args.smoke else 200,
                              1 if args.smoke else args.repeat, results)
    except Exception:  # report, keep what was measured
        traceback.print_exc()
        ok = False
    results["passed"] = bool(ok)
    results["seconds"] = time.time() - t_start
    with open(os.path.join(args.out, "gpu_check.json"), "w") as fh:
        json.dump(results, fh, indent=2, default=str)
    write_markdown(results, os.path.join(args.out, "gpu_check.md"))
    log(f"\n{_verdict(ok)} in {results['seconds']:.0f} s; wrote {args.out}/gpu_check.json, gpu_check.md")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
