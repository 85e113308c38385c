"""``lstm_backends.cuda_device``: LSTM steps as device functions in the user's own ``@cuda.jit`` kernels.

Without a GPU, as for the ``cuda`` backend (tests/test_cuda.py): user-style kernels run under
the CUDA simulator (in subprocesses, tiny sizes) against the float64 NumPy reference, and the
same kernels compile for real to PTX for sm_90, assembled by ``ptxas`` (no spills, the
documented barriers, no float64 in float32 code).  ``prepare``'s checks run in-process.
``scripts/gpu_check.py`` repeats the correctness check on a real GPU and times the step.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap

import numpy as np
import pytest

from lstm_backends.testing._cudasim_patch import SIMULATOR_PRELUDE

pytest.importorskip("numba_cuda", reason='needs the cuda extra: pip install "lstm-backends[cuda]"')

# User-style kernels, shared by the simulator runs and the PTX compiles (exec'd in both).
KERNELS = '''
from numba import cuda, float32


def row_kernel(step):
    """One block per batch row (2-D blocks: the step ranks threads itself); per-row lengths
    (the call is skipped uniformly by the whole block), h double buffered in global memory and
    indexed by the number of steps taken, c in place, m always passed (ignored without a
    projection)."""
    def run(xs, lengths, w, h0, hbuf, c, m, ys, h_n):
        b = cuda.blockIdx.x
        r = cuda.threadIdx.x + cuda.blockDim.x * cuda.threadIdx.y
        n = cuda.blockDim.x * cuda.blockDim.y
        for j in range(r, h0.shape[1], n):
            hbuf[0, b, j] = h0[b, j]
        cuda.syncthreads()                      # h0 complete before the first step reads it
        s = 0
        for t in range(xs.shape[0]):
            if t < lengths[b]:                  # uniform across the block
                h_out = hbuf[(s + 1) % 2, b]
                step(xs[t, b], hbuf[s % 2, b], c[b], w, h_out, c[b], m[b])
                cuda.syncthreads()              # h_out, c, m complete
                s += 1
                for j in range(r, h_out.shape[0], n):
                    ys[t, b, j] = h_out[j]
        for j in range(r, h0.shape[1], n):
            h_n[b, j] = hbuf[s % 2, b, j]
    return run


def doc_kernel(step):
    """The example of the docs, as written there (six arguments: no projection)."""
    def run(xs, w, hbuf, c, ys):
        b = cuda.blockIdx.x
        for t in range(xs.shape[0]):
            h_out = hbuf[(t + 1) % 2, b]
            step(xs[t, b], hbuf[t % 2, b], c[b], w, h_out, c[b])
            cuda.syncthreads()
            for j in range(cuda.threadIdx.x, h_out.shape[0], cuda.blockDim.x):
                ys[t, b, j] = h_out[j]
    return run


def shared_kernel(step):
    """x_t and both h buffers in shared memory (float32, I, S <= 8): the caller's barriers
    after loading x_t and before reading h_out."""
    def run(xs, w, h0, c, ys):
        b = cuda.blockIdx.x
        r = cuda.threadIdx.x
        n = cuda.blockDim.x
        n_in = xs.shape[2]
        n_h = h0.shape[1]
        x_s = cuda.shared.array(8, float32)
        h_s = cuda.shared.array((2, 8), float32)
        for j in range(r, n_h, n):
            h_s[0, j] = h0[b, j]
        for t in range(xs.shape[0]):
            for j in range(r, n_in, n):
                x_s[j] = xs[t, b, j]
            cuda.syncthreads()                  # x_t (and h0) complete
            step(x_s[:n_in], h_s[t % 2, :n_h], c[b], w, h_s[(t + 1) % 2, :n_h], c[b])
            cuda.syncthreads()                  # h_out complete; x_s free to overwrite
            for j in range(r, n_h, n):
                ys[t, b, j] = h_s[(t + 1) % 2, j]
    return run


def rows_kernel(step_rows, rows):
    """step_rows: each block advances up to `rows` batch rows, given as 2-D row slices."""
    def run(xs, w, h0, hbuf, c, m, ys):
        lo = cuda.blockIdx.x * rows
        hi = min(lo + rows, xs.shape[1])
        r = cuda.threadIdx.x
        n = cuda.blockDim.x
        width = h0.shape[1]
        for j in range(r, (hi - lo) * width, n):
            hbuf[0, lo + j // width, j % width] = h0[lo + j // width, j % width]
        cuda.syncthreads()
        for t in range(xs.shape[0]):
            h_out = hbuf[(t + 1) % 2, lo:hi]
            step_rows(xs[t, lo:hi], hbuf[t % 2, lo:hi], c[lo:hi], w, h_out, c[lo:hi], m[lo:hi])
            cuda.syncthreads()
            for j in range(r, (hi - lo) * width, n):
                ys[t, lo + j // width, j % width] = h_out[j // width, j % width]
    return run
'''

#: the variants the tests run: name -> (random_problem keywords, prepare keywords)
VARIANTS = {
    "plain": ({}, {}),
    "projection": ({"proj_size": 3}, {}),
    "peephole+clip+input_forget": ({"peephole": True}, {"clip": 0.5, "input_forget": True}),
    "projection+peephole+clip+input_forget": ({"proj_size": 3, "peephole": True}, {"clip": 0.5, "input_forget": True}),
}

SIM_CODE = KERNELS + '''
import numpy as np
from lstm_backends import cuda_device as lcd
from lstm_backends.testing import assert_close, random_problem, reference_forward

ATOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}
VARIANTS = VARIANTS_REPR


def problem(dtype, variant, seed, steps=3, batch=2, lengths=None):
    shape_kw, options = VARIANTS[variant]
    p = random_problem(steps, batch, 3, 5, dtype=dtype, seed=seed, lengths=lengths, **shape_kw, **options)
    return p, lcd.prepare(p.params, **options)


def check(name, got, ref, dtype, ctx):
    assert_close(got, ref, dtype=dtype, name=name, context=ctx)
    err = float(np.abs(got - ref).max())
    assert err <= ATOL[np.dtype(dtype)], (name, err, ctx)
    return err


def buffers(p, w):
    """Device (hbuf with h0 in hbuf[0], c = c0, m, ys)."""
    t, b, _ = p.x.shape
    dt = p.x.dtype
    hbuf = np.zeros((2, b, w.state_size), dt)
    hbuf[0] = p.h0
    return (cuda.to_device(hbuf), cuda.to_device(p.c0.copy()), cuda.to_device(np.zeros((b, w.hidden_size), dt)),
            cuda.to_device(np.zeros((t, b, w.state_size), dt)))


worst = {}
for dtype in (np.float32, np.float64):
    for k, variant in enumerate(VARIANTS):
        # H = 5 over 4 threads in (2, 2) blocks; one row runs all 3 steps, the other 2
        p, w = problem(dtype, variant, seed=10 + k, lengths=[3, 2])
        assert lcd.step_function(w) is lcd.step_function(lcd.Variant(**w.variant._asdict()))
        assert w.variant.name() == variant, (w.variant, variant)
        hbuf, c, m, ys = buffers(p, w)
        h_n = cuda.to_device(np.full(p.h0.shape, np.nan, p.x.dtype))
        cuda.jit(row_kernel(lcd.step_function(w)))[2, (2, 2)](
            cuda.to_device(p.x), cuda.to_device(p.lengths), w, cuda.to_device(p.h0), hbuf, c, m, ys, h_n)
        y_ref, h_ref, c_ref = reference_forward(p)
        ctx = p.describe()
        worst[(np.dtype(dtype).name, variant)] = max(
            check("y", ys.copy_to_host(), y_ref, dtype, ctx), check("h_n", h_n.copy_to_host(), h_ref, dtype, ctx),
            check("c_n", c.copy_to_host(), c_ref, dtype, ctx))
        if "projection" in variant:  # m holds o * tanh(c) of the last step after the caller's barrier
            assert np.isfinite(m.copy_to_host()).all()

    # step_rows: 3 rows, 2 per block (the second block has one), 3 threads per block
    for variant in ("plain", "projection+peephole+clip+input_forget"):
        p, w = problem(dtype, variant, seed=30, batch=3)
        hbuf, c, m, ys = buffers(p, w)
        cuda.jit(rows_kernel(lcd.step_function(w, rows=True), 2))[2, 3](
            cuda.to_device(p.x), w, cuda.to_device(p.h0), hbuf, c, m, ys)
        y_ref, _, c_ref = reference_forward(p)
        worst[(np.dtype(dtype).name, "rows " + variant)] = max(
            check("rows y", ys.copy_to_host(), y_ref, dtype, p.describe()),
            check("rows c_n", c.copy_to_host(), c_ref, dtype, p.describe()))

    # the example of the docs, verbatim: 6 arguments, h0 in hbuf[0]
    p, w = problem(dtype, "plain", seed=40)
    hbuf, c, _, ys = buffers(p, w)
    cuda.jit(doc_kernel(lcd.step_function(w)))[2, lcd.threads_per_block(w)](cuda.to_device(p.x), w, hbuf, c, ys)
    worst[(np.dtype(dtype).name, "docs example")] = check("docs y", ys.copy_to_host(), reference_forward(p)[0],
                                                          dtype, p.describe())

# x and h in shared memory (float32)
p, w = problem(np.float32, "plain", seed=50)
_, c, _, ys = buffers(p, w)
cuda.jit(shared_kernel(lcd.step_function(w)))[2, 4](cuda.to_device(p.x), w, cuda.to_device(p.h0), c, ys)
worst[("float32", "shared memory")] = check("shared y", ys.copy_to_host(), reference_forward(p)[0], np.float32,
                                            p.describe())

# misuse computes nothing and writes NaN: weights of other features, a wrong shape, another dtype
p, w_peep = problem(np.float32, "peephole+clip+input_forget", seed=60)
plain = lcd.step_function()
cases = {"features": (p.x, w_peep),
         "shape": (np.concatenate([p.x, p.x[..., :1]], axis=2), lcd.prepare(p.params[:4])),
         "dtype": (p.x.astype(np.float64), lcd.prepare(p.params[:4]))}
for what, (x, w) in cases.items():
    hbuf, c, m, ys = buffers(p, w)
    h_n = cuda.to_device(np.zeros(p.h0.shape, np.float32))
    cuda.jit(row_kernel(plain))[2, 4](cuda.to_device(x), cuda.to_device(np.array([3, 3])), w,
                                      cuda.to_device(p.h0), hbuf, c, m, ys, h_n)
    assert np.isnan(ys.copy_to_host()).all() and np.isnan(c.copy_to_host()).all(), what
print("WORST", {f"{d} {v}": f"{e:.1e}" for (d, v), e in worst.items()})
print("OK")
'''


def _env(sim):
    env = dict(os.environ)
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    if sim:
        env["NUMBA_ENABLE_CUDASIM"] = "1"
    return env


@pytest.mark.cudasim
def test_user_kernels_under_simulator_match_the_reference():
    """User-style kernels stepping T steps with the device functions, against the float64 NumPy
    reference (float32 within 1e-5, float64 within 1e-12): every feature combination (projection;
    peepholes + clip + input_forget; all), float32 and float64, B > 1, H = 5 over 4 threads in
    2-D blocks, per-row lengths, ``step_rows`` with an uneven last block, the docs' example as
    written, x and h in shared memory, and misuse (other features, a wrong shape, another
    dtype) answered with NaN."""
    code = SIMULATOR_PRELUDE + SIM_CODE.replace("VARIANTS_REPR", repr(VARIANTS))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(True), timeout=600)
    assert out.returncode == 0 and "OK" in out.stdout, out.stdout[-2000:] + out.stderr[-3000:]
    print(next(line for line in out.stdout.splitlines() if line.startswith("WORST")))


def _kernels():
    ns = {}
    exec(KERNELS, ns)  # noqa: S102 - the test's own kernel source
    return ns


def _ptxas(ptx_text):
    """(registers, spill store bytes, spill load bytes) from ``ptxas -arch=sm_90 -v``."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "k.ptx")
        with open(path, "w") as fh:
            fh.write(ptx_text)
        res = subprocess.run(["ptxas", "-arch=sm_90", "-v", path, "-o", path + ".cubin"], capture_output=True,
                             text=True)
    log = res.stdout + res.stderr
    assert res.returncode == 0, log
    regs = re.search(r"Used (\d+) registers", log)
    spills = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", log)
    assert regs and spills, log
    return int(regs.group(1)), int(spills.group(1)), int(spills.group(2))


#: (kernel, dtype, variant) compiled to PTX: ~3 s each, so not every combination
PTX_CASES = [("row_kernel", np.float32, "plain"), ("row_kernel", np.float32, "projection"),
             ("row_kernel", np.float32, "peephole+clip+input_forget"),
             ("row_kernel", np.float64, "projection+peephole+clip+input_forget"),
             ("rows_kernel", np.float32, "projection+peephole+clip+input_forget"),
             ("rows_kernel", np.float64, "projection+peephole+clip+input_forget"),
             ("doc_kernel", np.float32, "plain"), ("shared_kernel", np.float32, "plain")]


def test_user_kernels_compile_to_ptx_for_sm90_without_spills():
    """The user-style kernels compile for sm_90 (no GPU needed), :data:`PTX_CASES`: ``step``
    plain, with a projection and with peepholes + clip + input_forget (float32), with every
    feature (float64); ``step_rows`` with every feature (both dtypes); the docs' example; x and
    h in shared memory.  Each has no spills, registers few enough for the blocks
    ``threads_per_block`` suggests (512 threads for ``step``, 256 for ``step_rows``), exactly
    the documented barriers (the caller's, plus one inside with a projection), and no float64
    instruction in float32 code.  A projection step called without ``m`` is a typing error
    that names ``m``."""
    from numba import config, cuda, typeof

    from lstm_backends import cuda_device as lcd
    from lstm_backends.testing import random_problem

    if config.ENABLE_CUDASIM:
        pytest.skip("the CUDA simulator is on in this process: compile_ptx needs the real compiler")
    ns = _kernels()
    assembled = shutil.which("ptxas") is not None
    report = []
    for kname, dtype, variant in PTX_CASES:
        shape_kw, options = VARIANTS[variant]
        p = random_problem(3, 2, 3, 5, dtype=dtype, seed=1, **shape_kw)
        w = lcd.prepare(p.params, to_device=False, **options)
        a1, a2, a3 = (typeof(np.zeros((1,) * d, dtype)) for d in (1, 2, 3))
        tw, lens = typeof(w), typeof(np.zeros(1, np.int64))
        rows = kname == "rows_kernel"
        step = lcd.step_function(w, rows=rows)
        fn = ns[kname](step, 2) if rows else ns[kname](step)
        sig, caller_barriers = {"row_kernel": ((a3, lens, tw, a2, a3, a2, a2, a3, a2), 2),
                                "rows_kernel": ((a3, tw, a2, a3, a2, a2, a3), 2),
                                "doc_kernel": ((a3, tw, a3, a2, a3), 1),
                                "shared_kernel": ((a3, tw, a2, a2, a3), 2)}[kname]
        ptx, _ = cuda.compile_ptx(fn, sig, cc=(9, 0))
        label = f"{kname} {np.dtype(dtype).name} {variant}"
        barriers = len(re.findall(r"\bbar\.sync\b|\bbarrier\.sync\b", ptx))
        assert barriers == caller_barriers + ("projection" in variant), (label, barriers)
        if dtype == np.float32:
            assert not re.search(r"\.f64\b", ptx), f"{label}: float64 instructions in float32 code"
        if assembled:
            regs, spill_st, spill_ld = _ptxas(ptx)
            report.append(f"{label}: {regs} registers, {spill_st} B spill stores, {spill_ld} B spill loads")
            assert spill_st == 0 and spill_ld == 0, report[-1]
            # the blocks threads_per_block suggests (512 for step, 256 for step_rows) must launch
            assert regs * (256 if kname == "rows_kernel" else 512) <= 65536, report[-1]
    print("\n".join(report) or "ptxas not found: compiled to PTX only")

    # a projection variant needs its scratch m: leaving it out fails to compile, naming m
    p = random_problem(1, 1, 3, 5, seed=2, proj_size=3)
    w = lcd.prepare(p.params, to_device=False)
    step = lcd.step_function(w)

    def no_m(x, w, h, c, h_out):
        step(x, h, c, w, h_out, c)

    a1 = typeof(np.zeros(1, np.float32))
    with pytest.raises(Exception, match="'m'"):
        cuda.compile_ptx(no_m, (a1, typeof(w), a1, a1, a1), cc=(9, 0))
    if not assembled:
        pytest.skip("ptxas not on PATH: PTX compiled and checked, registers and spills not assembled")


# ---------------------------------------------------------------------------- prepare
def _params(proj=0, peephole=False, dtype=np.float32, seed=0):
    from lstm_backends.testing import random_params

    return random_params(3, 5, dtype=dtype, rng=seed, proj_size=proj, peephole=peephole)


def test_prepare_layout_is_transposed_summed_and_its_own_copy():
    from lstm_backends import LSTMParams
    from lstm_backends import cuda_device as lcd

    params = _params(proj=2, peephole=True)
    w = lcd.prepare(params, clip=1.5, input_forget=True, to_device=False)
    assert (w.input_size, w.hidden_size, w.state_size, w.proj_size) == (3, 5, 2, 2)
    np.testing.assert_array_equal(w.w_ih_t, params.w_ih.T)
    np.testing.assert_array_equal(w.w_hh_t, params.w_hh.T)
    np.testing.assert_array_equal(w.w_hr_t, params.w_hr.T)
    np.testing.assert_array_equal(w.w_peep, params.w_peep)
    np.testing.assert_allclose(w.bias, params.b_ih.astype(np.float64) + params.b_hh, rtol=1e-7)
    for a in (w.w_ih_t, w.w_hh_t, w.bias, w.w_hr_t, w.w_peep):
        assert a.flags.c_contiguous and a.dtype == np.float32
        assert not any(np.shares_memory(a, q) for q in params if q is not None)
    assert type(w.clip) is np.float32 and w.clip == np.float32(1.5) and w.input_forget is True
    assert w.dtype == np.float32
    assert w.variant == lcd.Variant(projection=True, peephole=True, clip=True, input_forget=True)
    with pytest.raises(AttributeError):
        w.clip = 2.0  # immutable

    plain = lcd.prepare(LSTMParams(params.w_ih, params.w_ih[:, :1].repeat(5, 1), None, None), to_device=False)
    assert plain.w_hr_t.shape == (0, 0) and plain.w_peep.shape == (0, 0) and not plain.bias.any()
    assert plain.clip == 0 and plain.variant == lcd.Variant() and plain.variant.name() == "plain"
    f64 = lcd.prepare(params, dtype=np.float64, to_device=False)  # an explicit dtype converts
    assert f64.w_ih_t.dtype == np.float64 and type(f64.clip) is np.float64
    assert lcd.prepare(_params(dtype=np.float64), to_device=False).dtype == np.float64  # default: params' dtype


def test_step_function_variants_and_block_size():
    from lstm_backends import cuda_device as lcd

    w = lcd.prepare(_params(peephole=True), clip=2.0, to_device=False)
    step = lcd.step_function(w)
    assert step is lcd.step_function(peephole=True, clip=True)  # cached: one compile per variant
    assert step is not lcd.step_function(w, rows=True) and step is not lcd.step_function()
    assert "peephole+clip" in step.__doc__ or "peephole+clip" in getattr(step, "py_func", step).__doc__
    with pytest.raises(TypeError, match="not both"):
        lcd.step_function(w, projection=True)
    with pytest.raises(TypeError, match="DeviceLSTMWeights"):
        lcd.step_function(_params())
    assert lcd.threads_per_block(w) == 32
    big = lcd.prepare(_params(), to_device=False)._replace(hidden_size=200)
    assert lcd.threads_per_block(big) == 224 and lcd.threads_per_block(big, rows=2) == 256
    assert lcd.threads_per_block(big._replace(hidden_size=4000)) == 512
    assert lcd.threads_per_block(big._replace(hidden_size=50), rows=3) == 160


@pytest.mark.parametrize(
    ("change", "kwargs", "error", "match"),
    [
        (lambda p: p._replace(w_hh=p.w_hh[:, :4]), {}, ValueError, r"params\.w_hh must have shape \(4H, H\)"),
        (lambda p: p._replace(w_ih=p.w_ih[:8]), {}, ValueError, r"params\.w_ih must have shape \(4H, I\) = \(20, I\)"),
        (lambda p: p._replace(b_ih=p.b_ih[:3]), {}, ValueError, r"params\.b_ih must have shape \(4H,\)"),
        (lambda p: p._replace(w_peep=np.zeros((4, 5), np.float32)), {}, ValueError, r"params\.w_peep .* \(3, H\)"),
        (lambda p: p._replace(w_hr=np.zeros((2, 4), np.float32)), {}, ValueError, r"params\.w_hr must have shape"),
        (lambda p: p._replace(w_ih=p.w_ih.astype(np.int32)), {}, TypeError, r"params\.w_ih .*floating point"),
        (lambda p: p._replace(w_hh=p.w_hh.astype(np.float16)), {}, TypeError, r"float16.*not support"),
        (lambda p: p._replace(b_hh=p.b_hh.astype(np.float64)), {}, TypeError, r"mixed dtypes"),
        (lambda p: p[:2], {}, TypeError, r"params must be an LSTMParams or a 4-tuple"),
        (lambda p: p, {"dtype": np.float16}, TypeError, r"dtype must be np\.float32 or np\.float64"),
        (lambda p: p, {"dtype": np.int64}, TypeError, r"dtype must be np\.float32 or np\.float64"),
        (lambda p: p, {"dtype": "no such dtype"}, TypeError, r"dtype must be np\.float32 or np\.float64"),
        (lambda p: p, {"precision": "bf16"}, ValueError, r"precision='bf16' is not available"),
        (lambda p: p, {"clip": -1.0}, ValueError, r"clip must be a positive number"),
        (lambda p: p, {"clip": 0}, ValueError, r"clip must be a positive number"),
        (lambda p: p, {"input_forget": "yes"}, ValueError, r"input_forget must be True or False"),
    ],
)
def test_prepare_refuses_bad_params_with_clear_messages(change, kwargs, error, match):
    from lstm_backends import cuda_device as lcd

    with pytest.raises(error, match=match):
        lcd.prepare(change(_params()), to_device=False, **kwargs)


def test_prepare_refuses_weights_prepared_for_reduced_precision():
    """A backend's prepared weights carry their precision mode: bf16 products are not in the device
    functions, so such weights are refused rather than run in another arithmetic."""
    from types import SimpleNamespace

    from lstm_backends import cuda_device as lcd

    prepared = SimpleNamespace(precision="bf16x3", params=_params())
    with pytest.raises(ValueError, match=r"prepared with precision='bf16x3'.*pass the LSTMParams"):
        lcd.prepare(prepared, to_device=False)


def test_module_docstring_states_the_contract_and_rst_fragment_matches():
    """The contract is written in the module and in the docs fragment, with the same example."""
    from lstm_backends import cuda_device as lcd

    doc = lcd.__doc__
    for words in ("Every* thread of the block calls", "must not overlap ``h``", "``c_out`` may be ``c``",
                  "exactly one ``cuda.syncthreads()``", "allocates nothing", "float32 or float64"):
        assert words in doc, words
    rst = os.path.join(os.path.dirname(__file__), "..", "docs", "_embed_gpu.rst")
    with open(rst, encoding="utf-8") as fh:
        text = fh.read()
    first, underline = text.splitlines()[:2]
    assert first == "GPU: device functions for your own ``@cuda.jit`` kernels"
    assert set(underline) == {"~"} and len(underline) >= len(first)
    example = textwrap.dedent(doc[doc.index("    import numpy as np\n    from numba import cuda"):]).strip()
    missing = [line for line in example.splitlines() if line.strip() and line.rstrip() not in text]
    assert not missing, f"lines of the module's example missing from docs/_embed_gpu.rst: {missing}"
