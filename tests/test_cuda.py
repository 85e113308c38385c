"""The cuda backend without a GPU: availability, the CUDA simulator, and a real PTX compile.

Simulator runs happen in subprocesses (``NUMBA_ENABLE_CUDASIM=1`` must be set before
numba.cuda is imported) with tiny problems.  What the simulator cannot do
(``__cuda_array_interface__`` from CuPy/PyTorch, real concurrency between blocks, real
timings) is covered by ``scripts/gpu_check.py`` on a real GPU.
"""

import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from lstm_backends.testing._cudasim_patch import SIMULATOR_PRELUDE
from lstm_backends.testing.conformance import CHECKS

pytest.importorskip("numba_cuda", reason='needs the cuda extra: pip install "lstm-backends[cuda]"')



# Simulator subprocesses start with SIMULATOR_PRELUDE: the shared-array patch, then a 0.1 ms
# thread-switch interval (~4x faster; before the patch a short interval made the simulator's
# shared-array race show, lstm_backends/testing/_cudasim_patch.py).


def _env(sim):
    env = dict(os.environ)
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    if sim:
        env["NUMBA_ENABLE_CUDASIM"] = "1"
    return env


def _run(code, sim=True, timeout=900):
    # under the simulator, first patch the race in its shared arrays (lstm_backends.testing._cudasim_patch)
    code = (SIMULATOR_PRELUDE if sim else "") + textwrap.dedent(code)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(sim),
                          timeout=timeout)


def test_unavailable_without_driver_says_why_and_how_to_fix():
    from lstm_backends.backends._cuda_probe import cuda_driver_status

    if cuda_driver_status()[0]:
        pytest.skip("a GPU is present")
    out = _run(
        """
        import sys, lstm_backends as lb
        row = next(b for b in lb.list_backends() if b.name == "cuda")
        print("AVAILABLE", row.available)
        print("REASON", row.reason)
        try:
            lb.get_backend("cuda")
        except lb.BackendUnavailableError as exc:
            print("ERROR", exc)
        print("IMPORTED", sorted(m for m in sys.modules if m.startswith("numba")))
        """,
        sim=False,
    )
    assert out.returncode == 0, out.stderr
    lines = dict(line.split(" ", 1) for line in out.stdout.strip().splitlines())
    assert lines["AVAILABLE"] == "False"
    assert "driver" in lines["REASON"] or "device" in lines["REASON"]
    assert 'pip install "lstm-backends[cuda]"' in lines["ERROR"] and lines["REASON"] in lines["ERROR"]
    assert lines["IMPORTED"] == "[]"


def test_simulator_is_available_but_never_auto():
    out = _run(
        """
        import lstm_backends as lb
        row = next(b for b in lb.list_backends() if b.name == "cuda")
        print(row.available, "simulated" in row.reason, lb.get_backend("auto").name)
        """
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True", "numba"]


CHECK_CODE = """
from lstm_backends.testing import run_conformance
r = run_conformance("cuda", [{check!r}], raise_on_failure=False)[0]
print("RESULT", r.passed or r.skipped, r.worst, round(r.seconds, 1), "skipped" if r.skipped else "")
print(r.message)
"""


@pytest.mark.cudasim
def test_conformance_under_simulator():
    """Every conformance check on the cuda backend, each in its own simulator process,
    two at a time (the simulator is single-core bound).  Skipped, as not applicable: ``activations``
    (the backend refuses non-default activations, checked by ``refuses_missing_features``), the
    precision modes and the njit entry points (cuda has neither: its device functions are
    ``lstm_backends.cuda_device``, tested in test_cuda_device.py)."""
    from concurrent.futures import ThreadPoolExecutor

    from lstm_backends.backends.cuda_backend import CudaBackend
    from lstm_backends.testing.conformance import requirements

    def one(check):
        return check, _run(CHECK_CODE.format(check=check))

    not_applicable = [c for c in CHECKS if requirements(CHECKS[c]) - CudaBackend.capabilities]
    assert not_applicable == ["activations", "bf16", "bf16x3", "njit_cell", "njit_forward", "njit_prange",
                              "njit_errors"], not_applicable
    with ThreadPoolExecutor(max_workers=2) as pool:   # (the not-applicable ones: one process each, to see them skip)
        results = list(pool.map(one, CHECKS))
    failures, skipped = [], []
    for check, out in results:
        print(check, out.stdout.splitlines()[0] if out.stdout else out.stderr[-300:])
        if out.returncode != 0 or not out.stdout.startswith("RESULT True"):
            failures.append(f"{check}: {out.stdout[-1500:]} {out.stderr[-1500:]}")
        elif "skipped" in out.stdout.splitlines()[0]:
            skipped.append(check)
    assert not failures, "\n".join(failures)
    assert skipped == not_applicable, skipped


@pytest.mark.cudasim
def test_device_arrays_in_device_arrays_out_and_streams():
    out = _run(
        """
        import numpy as np
        from numba import cuda
        import lstm_backends as lb
        from lstm_backends.testing import random_problem, reference_forward, assert_close
        be = lb.get_backend("cuda")
        p = random_problem(4, 3, 5, 6, seed=1, lengths=[4, 2, 0])
        stream = cuda.stream()
        d_params = be.to_device(p.params, stream=stream)
        dx, dh, dc = (cuda.to_device(a, stream=stream) for a in (p.x, p.h0, p.c0))
        y, h_n, c_n = be.forward(dx, d_params, dh, dc, lengths=p.lengths, stream=stream)
        assert all(hasattr(a, "copy_to_host") and not isinstance(a, np.ndarray) for a in (y, h_n, c_n))
        stream.synchronize()
        ref = reference_forward(p)
        for g, r, n in zip((y, h_n, c_n), ref, "y h c".split()):
            assert_close(g.copy_to_host(), r, dtype=np.float32, name=n)
        # streaming on the device: state updated in place, weights resident
        h, c = cuda.to_device(p.h0), cuda.to_device(p.c0)
        for t in range(2):
            out = be.cell(cuda.to_device(p.x[t]), h, c, d_params, out=(h, c))
            assert out[0] is h and out[1] is c
        full = reference_forward(random_problem(4, 3, 5, 6, seed=1))
        assert_close(h.copy_to_host(), full[0][1], dtype=np.float32, name="h after 2 cell steps")
        # host in -> host out
        y_host = be.forward(p.x, p.params, p.h0, p.c0, lengths=p.lengths)[0]
        assert isinstance(y_host, np.ndarray)
        # a stacked bidirectional layer on device input stays on the device
        lstm = lb.LSTM(5, 6, num_layers=2, bidirectional=True, backend="cuda", seed=0)
        yd, (hd, cd) = lstm(dx, lengths=p.lengths)
        assert hasattr(yd, "copy_to_host") and yd.shape == (4, 3, 12) and hd.shape == (4, 3, 6)
        ref_lstm = lb.LSTM(5, 6, num_layers=2, bidirectional=True, backend="numpy", dtype=np.float64)
        ref_lstm.load_state_dict(lstm.state_dict())
        ry, (rh, rc) = ref_lstm(p.x.astype(np.float64), lengths=p.lengths)
        assert_close(yd.copy_to_host(), ry, dtype=np.float32, name="stacked y")
        assert_close(cd.copy_to_host(), rc, dtype=np.float32, name="stacked c_n")
        print("OK")
        """
    )
    assert out.returncode == 0 and "OK" in out.stdout, out.stdout[-2000:] + out.stderr[-3000:]


@pytest.mark.cudasim
def test_warm_streaming_cell_allocates_nothing_on_the_device():
    """Counts every device allocation per cell step: device arrays with out=(h, c) and resident
    weights, and host arrays with out= (staged in reused buffers): 0 after the first step."""
    out = _run(
        """
        import numpy as np
        from numba import cuda
        import lstm_backends as lb
        from lstm_backends.testing import random_problem, reference_forward, assert_close
        count = [0]
        def counting(fn):
            def wrapper(*a, **k):
                count[0] += 1
                return fn(*a, **k)
            return wrapper
        for name in ("device_array", "to_device", "device_array_like", "pinned_array", "mapped_array"):
            if hasattr(cuda, name):
                setattr(cuda, name, counting(getattr(cuda, name)))
        be = lb.get_backend("cuda")
        p = random_problem(4, 3, 5, 6, seed=2)
        ref = reference_forward(p)[0]
        params = be.to_device(p.params)
        h, c = cuda.to_device(p.h0), cuda.to_device(p.c0)
        xs = [cuda.to_device(p.x[t]) for t in range(4)]
        dev = []
        for t in range(4):
            before = count[0]
            be.cell(xs[t], h, c, params, out=(h, c))
            dev.append(count[0] - before)
        assert_close(h.copy_to_host(), ref[3], dtype=np.float32, name="device h after 4 steps")
        hh, cc = p.h0.copy(), p.c0.copy()
        host = []
        for t in range(4):
            before = count[0]
            be.cell(p.x[t], hh, cc, p.params, out=(hh, cc))
            host.append(count[0] - before)
        assert_close(hh, ref[3], dtype=np.float32, name="host h after 4 steps")
        print("DEVICE", dev, "HOST", host)
        """
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    line = next(s for s in out.stdout.splitlines() if s.startswith("DEVICE"))
    dev = eval(line.split("HOST")[0].split("DEVICE")[1])
    host = eval(line.split("HOST")[1])
    assert dev[0] > 0 and dev[1:] == [0, 0, 0], line
    assert host[0] > 0 and host[1:] == [0, 0, 0], line


def test_gpu_check_script_smoke_under_simulator(tmp_path):
    """The prepared GPU script runs end to end (tiny sizes, no torch) under the simulator."""
    script = os.path.join(os.path.dirname(__file__), "..", "scripts", "gpu_check.py")
    # the script as __main__, after the shared-array patch (SIMULATOR_PRELUDE)
    run_script = (SIMULATOR_PRELUDE + "import runpy, sys\n"
                  "sys.argv.pop(0)\nrunpy.run_path(sys.argv[0], run_name='__main__')\n")
    res = subprocess.run([sys.executable, "-c", run_script, script, "--smoke", "--out", str(tmp_path)],
                         capture_output=True, text=True, env=_env(True), timeout=900)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    assert (tmp_path / "gpu_check.json").exists() and "PASS" in res.stdout


def test_kernels_compile_to_ptx_for_sm90_without_spills():
    from lstm_backends.backends._cuda_kernels import PTX_VARIANTS, assemble_report, variant_name

    rows = assemble_report((np.float32, np.float64), cc=(9, 0))
    variants = {variant_name(k, f) for f in PTX_VARIANTS for k in ("lstm_gates_ext", "cell_gates_ext")}
    training = {variant_name(k, f) for f in (frozenset(), *PTX_VARIANTS) for k in ("lstm_gates_train", "lstm_bwd")}
    assert {r["kernel"] for r in rows} == {"matmul_nt_bias", "matmul_nt", "matmul_nt_proj", "lstm_gates", "cell_gates",
                                           "add", "zero_past_lengths", "fill", "bwd_dh_total", "matmul_nn",
                                           "matmul_nn_rows", "matmul_tn", "h_prev", "col_sum_partial",
                                           "col_sum_final"} | variants | training
    assert {r["dtype"] for r in rows} == {"float32", "float64"}
    assert all(r["ptx_bytes"] > 1000 for r in rows)
    if shutil.which("ptxas"):
        for r in rows:
            print(f"{r['kernel']:>10} {r['dtype']}: {r['registers']} registers, {r['smem_bytes']} B smem, "
                  f"{r['spill_bytes']} B spills")
            assert r["spill_bytes"] == 0 and r["registers"] is not None
        for name in ("matmul_nt", "matmul_nt_bias", "matmul_nt_proj", "matmul_nn", "matmul_nn_rows"):
            matmul32 = next(r for r in rows if r["kernel"] == name and r["dtype"] == "float32")
            assert matmul32["smem_bytes"] == 4 * (16 * 16 + 16 * 17)  # the two shared-memory tiles
        tn32 = next(r for r in rows if r["kernel"] == "matmul_tn" and r["dtype"] == "float32")
        assert tn32["smem_bytes"] == 4 * 2 * 16 * 17


def test_feature_variants_are_compiled_in_not_branched_on():
    """Peepholes, clip and input_forget are compile-time variants of the gate kernel: the PTX of
    each holds exactly its feature's extra work, and nothing of the features that are off (so the
    plain kernel, a separate function, pays for none of them)."""
    import re

    from numba import cuda

    from lstm_backends.backends._cuda_kernels import signatures

    def census(name):
        fn, sig = signatures(np.float32)[name]
        body = cuda.compile_ptx(fn, sig, cc=(9, 0))[0]
        body = body[body.index("{"):]
        return {"loads": len(re.findall(r"ld\.f32", body)), "compares": len(re.findall(r"setp\.", body)),
                "fma_mul": len(re.findall(r"(?:fma|mul)\.rn\.f32", body)), "stores": len(re.findall(r"st\.f32", body))}

    plain = census("lstm_gates")
    peep = census("lstm_gates_ext[peephole]")
    clip = census("lstm_gates_ext[clip]")
    coupled = census("lstm_gates_ext[input_forget]")
    project = census("lstm_gates_ext[project]")
    # peepholes: three weight loads, three more multiply-adds, nothing else
    assert peep == {**plain, "loads": plain["loads"] + 3, "fma_mul": plain["fma_mul"] + 3}, (plain, peep)
    # clip: two comparisons per gate (4 gates), no extra memory traffic
    assert clip == {**plain, "compares": plain["compares"] + 8}, (plain, clip)
    # input_forget: the forget gate's two loads and its sigmoid are gone
    assert coupled["loads"] == plain["loads"] - 2 and coupled["fma_mul"] < plain["fma_mul"], (plain, coupled)
    # projection: m is stored instead of h and y
    assert project == {**plain, "stores": plain["stores"] - 1}, (plain, project)


FEATURE_CODE = """
import numpy as np
from numba import cuda
import lstm_backends as lb
from lstm_backends.testing import assert_close, random_problem, reference_cell, reference_forward
be = lb.get_backend("cuda")
# every combination of peephole x clip x input_forget x projection, forward (both directions) and cell
for k in range(16):
    peephole, clip, coupled, proj = (bool(k >> j & 1) for j in range(4))
    opts = dict(clip=0.4 if clip else None, input_forget=coupled)
    p = random_problem(2, 2, 3, 3, seed=k, lengths=[2, 0] if k % 4 == 1 else None, reverse=k % 2 == 1,
                       peephole=peephole, proj_size=2 if proj else 0, **opts)
    ctx = p.describe()
    for g, r, n in zip(p.forward(be), reference_forward(p), ("y", "h_n", "c_n")):
        assert_close(g, r, dtype=np.float32, name=n, context=ctx)
    hc = be.cell(p.x[0], p.h0, p.c0, p.params, **opts)
    for g, r, n in zip(hc, reference_cell(p.x[0], p.h0, p.c0, p.params, **opts), ("h", "c")):
        assert_close(g, r, dtype=np.float32, name="cell " + n, context=ctx)
# LSTMP on device arrays: a stacked bidirectional layer stays on the device, each direction
# writing its (T, B, P) part of the layer output through the projection GEMM's epilogue
lstm = lb.LSTM(4, 5, num_layers=2, bidirectional=True, proj_size=3, backend="cuda", seed=0)
ref = lb.LSTM(4, 5, num_layers=2, bidirectional=True, proj_size=3, backend="numpy", dtype=np.float64)
ref.load_state_dict(lstm.state_dict())
p = random_problem(4, 3, 4, 5, seed=20, lengths=[4, 1, 0])
yd, (hd, cd) = lstm(cuda.to_device(p.x), lengths=p.lengths)
assert hasattr(yd, "copy_to_host") and yd.shape == (4, 3, 6) and hd.shape == (4, 3, 3) and cd.shape == (4, 3, 5)
ry, (rh, rc) = ref(p.x.astype(np.float64), lengths=p.lengths)
for g, r, n in ((yd, ry, "y"), (hd, rh, "h_n"), (cd, rc, "c_n")):
    assert_close(g.copy_to_host(), r, dtype=np.float32, name="stacked LSTMP " + n)
# streaming with a projection and peepholes, in place on device arrays
p = random_problem(3, 2, 4, 5, seed=21, proj_size=2, peephole=True, clip=0.5)
params = be.to_device(p.params)
h, c = cuda.to_device(p.h0), cuda.to_device(p.c0)
for t in range(3):
    out = be.cell(cuda.to_device(p.x[t]), h, c, params, out=(h, c), clip=0.5)
    assert out[0] is h and out[1] is c
assert_close(h.copy_to_host(), reference_forward(p)[1], dtype=np.float32, name="streamed LSTMP h")
# not implemented here: refused, naming the activation and the backend that has it
try:
    be.forward(p.x, p.params, activations=["HardSigmoid", "Tanh", "Tanh"])
except lb.UnsupportedFeatureError as exc:
    assert "HardSigmoid" in str(exc) and "numpy" in str(exc), exc
else:
    raise AssertionError("activations were not refused")
print("OK")
"""


@pytest.mark.cudasim
def test_projection_peephole_clip_variants_under_simulator():
    out = _run(FEATURE_CODE)
    assert out.returncode == 0 and "OK" in out.stdout, out.stdout[-2000:] + out.stderr[-3000:]


def test_backward_kernels_use_no_atomics():
    """Deterministic by construction: no atomic instruction in any training kernel's PTX."""
    import re

    from numba import cuda

    from lstm_backends.backends._cuda_kernels import signatures

    for name, (fn, sig) in signatures(np.float32).items():
        if any(part in name for part in ("train", "bwd", "matmul_nn", "matmul_tn", "h_prev", "col_sum")):
            text = cuda.compile_ptx(fn, sig, cc=(9, 0))[0]
            assert re.search(r"ld\.", text) and not re.search(r"^\s*(@%p\d+\s+)?(atom|red)\.", text, re.M), name


TRAIN_CODE = """
import numpy as np
from numba import cuda
import lstm_backends as lb
from lstm_backends.testing import assert_close, random_problem, reference_backward, reference_forward

def check(got, ref, dtype, ctx):
    for n, g, r in zip(("dx", "dh0", "dc0"), got[:3], ref[:3]):
        assert_close(g.copy_to_host() if hasattr(g, "copy_to_host") else g, r, dtype=dtype, name=n, context=ctx)
    for n, g, r in zip(lb.LSTMParams._fields, got.dparams, ref.dparams):
        assert (g is None) == (r is None), n
        if r is not None:
            assert_close(g.copy_to_host() if hasattr(g, "copy_to_host") else g, r, dtype=dtype, name=n, context=ctx)

be = lb.get_backend("cuda")
# the compile-time variants of the training kernels (peephole x clip x input_forget x projection)
# that the conformance kit's backward checks do not run: none, one feature and all are run there
for k in range(16):
    peephole, clip, coupled, proj = (bool(k >> j & 1) for j in range(4))
    if sum((peephole, clip, coupled, proj)) in (0, 1, 4):
        continue
    p = random_problem(2, 2, 2, 3, seed=k, lengths=[2, 1] if k % 3 else None, reverse=k % 2 == 1,
                       peephole=peephole, proj_size=2 if proj else 0, clip=0.4 if clip else None,
                       input_forget=coupled, scale=2.0)
    grads = p.output_grads()
    check(be.backward(p.forward_train(be)[3], *grads), reference_backward(p, *grads), np.float32, p.describe())
# device arrays in, device arrays out, on a stream; the tape stays on the device
p = random_problem(3, 3, 4, 5, seed=30, lengths=[3, 0, 2], proj_size=2)
stream = cuda.stream()
dparams = be.to_device(p.params, stream=stream)
dx, dh, dc = (cuda.to_device(a, stream=stream) for a in (p.x, p.h0, p.c0))
y, h_n, c_n, tape = be.forward_train(dx, dparams, dh, dc, lengths=p.lengths, stream=stream)
assert all(hasattr(a, "copy_to_host") for a in (y, h_n, c_n, tape.gates, tape.cells, tape.x))
grads = p.output_grads()
g = be.backward(tape, *(cuda.to_device(a, stream=stream) for a in grads), stream=stream)
assert all(hasattr(a, "copy_to_host") for a in (*g[:3], *(d for d in g.dparams if d is not None)))
stream.synchronize()
check(g, reference_backward(p, *grads), np.float32, "device arrays")
g_host = be.backward(tape)  # no output gradients: zeros; a device-input tape still gives device arrays
assert hasattr(g_host.dx, "copy_to_host") and not g_host.dx.copy_to_host().any()
# host in, host out
tape = be.forward_train(p.x, p.params, p.h0, p.c0, lengths=p.lengths)[3]
g = be.backward(tape, *grads)
assert isinstance(g.dx, np.ndarray) and isinstance(g.dparams.w_hr, np.ndarray)
# a stacked bidirectional layer on device input: everything stays on the device
lstm = lb.LSTM(3, 4, num_layers=2, bidirectional=True, backend="cuda", seed=0)
ref = lb.LSTM(3, 4, num_layers=2, bidirectional=True, backend="numpy", dtype=np.float64)
ref.load_state_dict(lstm.state_dict())
x = np.random.default_rng(31).standard_normal((3, 2, 3)).astype(np.float32)
dy = np.random.default_rng(32).standard_normal((3, 2, 8)).astype(np.float32)
y, _, tape = lstm.forward_train(cuda.to_device(x), lengths=[3, 1])
dx, (dh0, dc0), grads = lstm.backward(tape, cuda.to_device(dy))
assert hasattr(dx, "copy_to_host") and hasattr(grads["weight_ih_l1_reverse"], "copy_to_host")
rdx, (rdh0, _), rgrads = ref.backward(ref.forward_train(x.astype(np.float64), lengths=[3, 1])[2], dy.astype(np.float64))
assert_close(dx.copy_to_host(), rdx, dtype=np.float32, name="stacked dx")
assert_close(dh0.copy_to_host(), rdh0, dtype=np.float32, name="stacked dh0")
for key in rgrads:
    assert_close(grads[key].copy_to_host(), rgrads[key], dtype=np.float32, name=key)
# allocation: the same number of device allocations in backward for 2 steps as for 5
count = [0]
real = cuda.device_array
def counting(*a, **k):
    count[0] += 1
    return real(*a, **k)
cuda.device_array = counting
counts = []
for steps in (2, 5):
    q = random_problem(steps, 2, 2, 3, seed=33, lengths=[steps, 1], peephole=True)
    tape = q.forward_train(be)[3]
    count[0] = 0
    be.backward(tape, *q.output_grads())
    counts.append(count[0])
assert counts[0] == counts[1], counts
print("OK", counts)
"""


@pytest.mark.cudasim
def test_training_under_simulator():
    """Every variant of the training kernels against the reference; device arrays in, device arrays
    out (the tape on the device); host in, host out; a stacked bidirectional layer on the device;
    device allocations in backward independent of the number of steps."""
    out = _run(TRAIN_CODE)
    assert out.returncode == 0 and "OK" in out.stdout, out.stdout[-2000:] + out.stderr[-3000:]
