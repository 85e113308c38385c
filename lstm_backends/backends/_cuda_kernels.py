"""numba.cuda kernels of the ``cuda`` backend (imported on first use only).

Versions, llm.c style:

1. ``matmul_nt_bias`` / ``matmul_nt``: C (M, N) = A (M, K) @ W (N, K).T (+ bias), tiled
   through shared memory (TILE x TILE threads, each loads one element of each operand tile
   per K-step, so every global element is read M/TILE or N/TILE times instead of K
   times).  With bias (``b_ih + b_hh``, folded once per call by ``add``) once per call for
   the input projection of all T*B rows; without (a compile-time variant, no dummy zero
   bias) once per step for the recurrent product of the B rows.
2. ``lstm_gates``: one thread per (row, hidden unit): adds the input projection and the
   recurrent product of its four gates, applies the nonlinearities, updates c and h in
   place and writes y; rows past their length keep their state.  Handles direction and
   per-row lengths, so a step is exactly two launches, all on one stream, with no host
   synchronisation inside the time loop.  ``cell_gates`` is the same math for one
   streaming step, writing separate (or the same, in place) state outputs.
3. ``zero_past_lengths``: y[t, b] = 0 for t >= lengths[b] (the base class's one place
   for it); ``fill``: zeros; ``add``: the folded bias.
4. The full cell, haste style: ``lstm_gates_ext`` / ``cell_gates_ext`` are compile-time
   variants of version 2 (:func:`gate_variants`), one per combination of peepholes, clip,
   coupled input/forget gates and projection.  A feature that is off is not in the
   machine code (its branch is a frozen closure constant, removed by the compiler), so the
   plain kernels of version 2 stay exactly as they were and no variant pays for a feature
   it does not use.  With a projection the gate kernel writes ``m = o * tanh(c)`` to a
   scratch array and ``matmul_nt_proj`` — the tiled GEMM of version 1 with a masked
   epilogue — computes ``h = m @ W_hr.T`` and writes ``h`` and ``y`` for the rows still
   running at that step: one more GEMM launch per step.

Kernels are built per dtype by :func:`kernels` (shared-memory arrays need a concrete
type) from plain Python functions, so :func:`ptx` can compile the very same code for
``sm_90`` without a GPU (``numba.cuda.compile_ptx``).
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numba import cuda, float32, float64, int64, types

#: matmul tile edge on a GPU: TILE x TILE threads per block.  The simulator runs each
#: thread as a Python thread, so it uses SIM_TILE (same code, smaller blocks).
TILE = 16
SIM_TILE = 8


def _tiles_factory(nb_dtype, TILE=TILE):  # noqa: N803 - compile-time constant
    PADDED = TILE + 1  # noqa: N806 - +1 column: reads w_tile[tx, kk] avoid shared-memory bank conflicts

    def tiles(a, w):
        """acc = sum_k a[m, k] * w[n, k] for this thread's (m, n); shared by both variants."""
        a_tile = cuda.shared.array((TILE, TILE), nb_dtype)
        w_tile = cuda.shared.array((TILE, PADDED), nb_dtype)
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        m = cuda.blockIdx.y * TILE + ty
        rows, inner = a.shape
        cols = w.shape[0]
        acc = nb_dtype(0)
        for k0 in range(0, inner, TILE):
            # a_tile[ty, tx] = a[m, k0 + tx]; w_tile[ty, tx] = w[n_block + ty, k0 + tx]
            k = k0 + tx
            a_tile[ty, tx] = a[m, k] if (m < rows and k < inner) else nb_dtype(0)
            wn = cuda.blockIdx.x * TILE + ty
            w_tile[ty, tx] = w[wn, k] if (wn < cols and k < inner) else nb_dtype(0)
            cuda.syncthreads()
            for kk in range(TILE):
                acc += a_tile[ty, kk] * w_tile[tx, kk]
            cuda.syncthreads()
        return acc

    return cuda.jit(device=True, inline="always")(tiles)  # IR-inlined: compile_ptx needs no GPU


def _matmul_nt_factory(nb_dtype, TILE=TILE, with_bias=True):  # noqa: N803 - compile-time constants
    tiles = _tiles_factory(nb_dtype, TILE)

    if with_bias:
        def matmul_nt_bias(a, w, bias, out):
            """out[m, n] = sum_k a[m, k] * w[n, k] + bias[n].

            a : (M, K)   w : (N, K)   bias : (N,)   out : (M, N)
            grid: (ceil(N / TILE), ceil(M / TILE)) blocks of (TILE, TILE) threads
            """
            acc = tiles(a, w)
            n = cuda.blockIdx.x * TILE + cuda.threadIdx.x
            m = cuda.blockIdx.y * TILE + cuda.threadIdx.y
            if m < out.shape[0] and n < out.shape[1]:
                out[m, n] = acc + bias[n]

        return matmul_nt_bias

    def matmul_nt(a, w, out):
        """out[m, n] = sum_k a[m, k] * w[n, k] (no bias: the recurrent product).

        a : (M, K)   w : (N, K)   out : (M, N)
        grid: (ceil(N / TILE), ceil(M / TILE)) blocks of (TILE, TILE) threads
        """
        acc = tiles(a, w)
        n = cuda.blockIdx.x * TILE + cuda.threadIdx.x
        m = cuda.blockIdx.y * TILE + cuda.threadIdx.y
        if m < out.shape[0] and n < out.shape[1]:
            out[m, n] = acc

    return matmul_nt


def _gate_math_factory(nb_dtype):
    half = nb_dtype(0.5)

    def gate_math(gi, gf, gg, go, c_prev):
        """(h_new, c_new) from the four pre-activations and the previous cell state."""
        # sigmoid(x) = (1 + tanh(x / 2)) / 2: no exp to overflow at any input
        i = half + half * math.tanh(half * gi)
        f = half + half * math.tanh(half * gf)
        g = math.tanh(gg)
        o = half + half * math.tanh(half * go)
        c_new = f * c_prev + i * g
        return o * math.tanh(c_new), c_new

    return cuda.jit(device=True, inline="always")(gate_math)


def _lstm_gates_factory(nb_dtype):
    gate_math = _gate_math_factory(nb_dtype)

    def lstm_gates(step, reverse, xp, rec, lengths, h, c, y):
        """One time step for every (row, unit): thread x = unit, y = row.

        step : int, index of the step (0 .. max length - 1)
        xp : (T, B, 4H) input projection incl. the folded bias   rec : (B, 4H) h @ W_hh.T
        lengths : (B,) int64   h, c : (B, H) state, updated in place
        y : (T, B, H) output (may be a strided view), written at [t, b, u] for valid steps
        """
        u = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
        b = cuda.blockIdx.y * cuda.blockDim.y + cuda.threadIdx.y
        batch, hidden = h.shape
        if u >= hidden or b >= batch:
            return
        n = lengths[b]
        if step >= n:
            return  # a finished row keeps its state
        t = n - 1 - step if reverse else step
        h_new, c_new = gate_math(xp[t, b, u] + rec[b, u], xp[t, b, hidden + u] + rec[b, hidden + u],
                                 xp[t, b, 2 * hidden + u] + rec[b, 2 * hidden + u],
                                 xp[t, b, 3 * hidden + u] + rec[b, 3 * hidden + u], c[b, u])
        c[b, u] = c_new
        h[b, u] = h_new
        y[t, b, u] = h_new

    return lstm_gates


def _cell_gates_factory(nb_dtype):
    gate_math = _gate_math_factory(nb_dtype)

    def cell_gates(xp, rec, c, h_out, c_out):
        """One streaming step for every (row, unit): thread x = unit, y = row.

        xp : (B, 4H) input projection incl. the folded bias   rec : (B, 4H) h @ W_hh.T
        c : (B, H) cell state before the step
        h_out, c_out : (B, H) written; c_out may be c (each thread reads its element first)
        """
        u = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
        b = cuda.blockIdx.y * cuda.blockDim.y + cuda.threadIdx.y
        batch, hidden = h_out.shape
        if u >= hidden or b >= batch:
            return
        h_new, c_new = gate_math(xp[b, u] + rec[b, u], xp[b, hidden + u] + rec[b, hidden + u],
                                 xp[b, 2 * hidden + u] + rec[b, 2 * hidden + u],
                                 xp[b, 3 * hidden + u] + rec[b, 3 * hidden + u], c[b, u])
        c_out[b, u] = c_new
        h_out[b, u] = h_new

    return cell_gates


def _bound_factory(nb_dtype):
    def bound(z, clip):
        """z limited to [-clip, clip]; NaN stays NaN (both comparisons are false)."""
        if z > clip:
            return clip
        if z < -clip:
            return -clip
        return z

    return cuda.jit(device=True, inline="always")(bound)


def _gate_math_ext_factory(nb_dtype, peephole, clip, input_forget):
    half = nb_dtype(0.5)
    one = nb_dtype(1)
    bound = _bound_factory(nb_dtype)
    # PEEPHOLE, CLIP and COUPLED are frozen into the compiled code as constants: a branch on
    # a feature that is off disappears from the machine code.
    PEEPHOLE, CLIP, COUPLED = bool(peephole), bool(clip), bool(input_forget)  # noqa: N806

    def gate_math_ext(gi, gf, gg, go, c_prev, p_i, p_f, p_o, limit):
        """(h_or_m, c_new) of the full cell: peepholes p_* (i, f see c_prev; o sees c_new),
        pre-activations bounded by ``limit``, f = 1 - i when coupled."""
        if PEEPHOLE:
            gi += p_i * c_prev
            gf += p_f * c_prev
        if CLIP:
            gi = bound(gi, limit)
            gg = bound(gg, limit)
        i = half + half * math.tanh(half * gi)
        if COUPLED:
            f = one - i
        else:
            if CLIP:
                gf = bound(gf, limit)
            f = half + half * math.tanh(half * gf)
        g = math.tanh(gg)
        c_new = f * c_prev + i * g
        if PEEPHOLE:
            go += p_o * c_new
        if CLIP:
            go = bound(go, limit)
        o = half + half * math.tanh(half * go)
        return o * math.tanh(c_new), c_new

    return cuda.jit(device=True, inline="always")(gate_math_ext)


def _lstm_gates_ext_factory(nb_dtype, peephole=False, clip=False, input_forget=False, project=False):
    gate_math = _gate_math_ext_factory(nb_dtype, peephole, clip, input_forget)
    PEEPHOLE, PROJECT = bool(peephole), bool(project)  # noqa: N806
    zero = nb_dtype(0)

    def lstm_gates_ext(step, reverse, xp, rec, lengths, h, c, y, peep, limit, m):
        """One time step of the full cell for every (row, unit): thread x = unit, y = row.

        As ``lstm_gates``, plus: peep (3, H) peepholes i, f, o (read when compiled with
        peepholes); limit, the clip bound (read when compiled with clip); m (B, H): with a
        projection, ``o * tanh(c)`` is written here and h (B, P), y (T, B, P) are left to
        ``matmul_nt_proj``; without, h and y are written as in ``lstm_gates``.
        """
        u = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
        b = cuda.blockIdx.y * cuda.blockDim.y + cuda.threadIdx.y
        batch, hidden = c.shape
        if u >= hidden or b >= batch:
            return
        n = lengths[b]
        if step >= n:
            return  # a finished row keeps its state
        t = n - 1 - step if reverse else step
        p_i = p_f = p_o = zero
        if PEEPHOLE:
            p_i, p_f, p_o = peep[0, u], peep[1, u], peep[2, u]
        out, c_new = gate_math(xp[t, b, u] + rec[b, u], xp[t, b, hidden + u] + rec[b, hidden + u],
                               xp[t, b, 2 * hidden + u] + rec[b, 2 * hidden + u],
                               xp[t, b, 3 * hidden + u] + rec[b, 3 * hidden + u], c[b, u], p_i, p_f, p_o, limit)
        c[b, u] = c_new
        if PROJECT:
            m[b, u] = out
        else:
            h[b, u] = out
            y[t, b, u] = out

    return lstm_gates_ext


def _cell_gates_ext_factory(nb_dtype, peephole=False, clip=False, input_forget=False, project=False):
    gate_math = _gate_math_ext_factory(nb_dtype, peephole, clip, input_forget)
    PEEPHOLE, PROJECT = bool(peephole), bool(project)  # noqa: N806
    zero = nb_dtype(0)

    def cell_gates_ext(xp, rec, c, h_out, c_out, peep, limit, m):
        """One streaming step of the full cell for every (row, unit): thread x = unit, y = row.

        As ``cell_gates``, plus peep, limit and m as in ``lstm_gates_ext`` (with a projection
        m receives ``o * tanh(c)`` and h_out is left to a ``matmul_nt`` launch).
        """
        u = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
        b = cuda.blockIdx.y * cuda.blockDim.y + cuda.threadIdx.y
        batch, hidden = c_out.shape
        if u >= hidden or b >= batch:
            return
        p_i = p_f = p_o = zero
        if PEEPHOLE:
            p_i, p_f, p_o = peep[0, u], peep[1, u], peep[2, u]
        out, c_new = gate_math(xp[b, u] + rec[b, u], xp[b, hidden + u] + rec[b, hidden + u],
                               xp[b, 2 * hidden + u] + rec[b, 2 * hidden + u],
                               xp[b, 3 * hidden + u] + rec[b, 3 * hidden + u], c[b, u], p_i, p_f, p_o, limit)
        c_out[b, u] = c_new
        if PROJECT:
            m[b, u] = out
        else:
            h_out[b, u] = out

    return cell_gates_ext


def _matmul_nt_proj_factory(nb_dtype, TILE=TILE):  # noqa: N803 - compile-time constant
    tiles = _tiles_factory(nb_dtype, TILE)

    def matmul_nt_proj(step, reverse, lengths, m, w_hr, h, y):
        """The projection of one step: h[b, n] = y[t, b, n] = sum_k m[b, k] * w_hr[n, k] for the
        rows still running at ``step`` (t as in ``lstm_gates``); other rows are not written.

        m : (B, H)   w_hr : (P, H)   h : (B, P)   y : (T, B, P), may be a strided view
        grid: (ceil(P / TILE), ceil(B / TILE)) blocks of (TILE, TILE) threads
        """
        acc = tiles(m, w_hr)  # every thread of the block takes part (shared-memory tiles)
        n = cuda.blockIdx.x * TILE + cuda.threadIdx.x
        b = cuda.blockIdx.y * TILE + cuda.threadIdx.y
        if b < h.shape[0] and n < h.shape[1]:
            steps = lengths[b]
            if step < steps:
                t = steps - 1 - step if reverse else step
                h[b, n] = acc
                y[t, b, n] = acc

    return matmul_nt_proj


def _add_factory(nb_dtype):
    def add(a, b, out):
        """out[i] = a[i] + b[i] (grid-stride loop): b_ih + b_hh folded once per call."""
        start = cuda.grid(1)
        stride = cuda.gridsize(1)
        for i in range(start, out.shape[0], stride):
            out[i] = a[i] + b[i]

    return add


def _zero_past_lengths_factory(nb_dtype):
    zero = nb_dtype(0)

    def zero_past_lengths(y, lengths):
        """y[t, b, u] = 0 for t >= lengths[b] (grid-stride over T*B*H; y may be a strided view)."""
        steps, batch, hidden = y.shape
        start = cuda.grid(1)
        stride = cuda.gridsize(1)
        for i in range(start, steps * batch * hidden, stride):
            t = i // (batch * hidden)
            b = (i // hidden) % batch
            if t >= lengths[b]:
                y[t, b, i % hidden] = zero

    return zero_past_lengths


def _fill_factory(nb_dtype):
    def fill(flat, value):
        """flat[i] = value for every i (grid-stride loop)."""
        start = cuda.grid(1)
        stride = cuda.gridsize(1)
        for i in range(start, flat.shape[0], stride):
            flat[i] = value

    return fill


def _simulated():
    from numba import config

    return bool(config.ENABLE_CUDASIM)


_TYPES = {np.dtype(np.float32): float32, np.dtype(np.float64): float64}


#: The compile-time features of the full-cell kernels, in the order of :func:`gate_variants`.
FEATURES = ("peephole", "clip", "input_forget", "project")

#: Variants compiled to PTX by :func:`signatures` (``assemble_report``, the sm_90 test): every
#: feature alone, the ONNX combination, and all at once.
PTX_VARIANTS = (
    frozenset({"peephole"}), frozenset({"clip"}), frozenset({"input_forget"}), frozenset({"project"}),
    frozenset({"peephole", "clip", "input_forget"}), frozenset(FEATURES),
)


def variant_name(kernel, features):
    """``"lstm_gates_ext[clip,peephole]"``: a kernel variant's name in reports."""
    return f"{kernel}[{','.join(sorted(features))}]"


def signatures(dtype, variants=PTX_VARIANTS):
    """Launch signatures of every kernel for one dtype, for PTX compilation, with the full-cell
    variants of ``variants``.  ``y`` is typed with any layout (``A``): a direction of a
    bidirectional layer writes a strided view."""
    t = _TYPES[np.dtype(dtype)]
    a1, a2, a3 = t[:], t[:, :], t[:, :, :]
    y = types.Array(t, 3, "A")
    sigs = {
        "matmul_nt_bias": (_matmul_nt_factory(t, with_bias=True), (a2, a2, a1, a2)),
        "matmul_nt": (_matmul_nt_factory(t, with_bias=False), (a2, a2, a2)),
        "matmul_nt_proj": (_matmul_nt_proj_factory(t), (int64, types.boolean, int64[:], a2, a2, a2, y)),
        "lstm_gates": (_lstm_gates_factory(t), (int64, types.boolean, a3, a2, int64[:], a2, a2, y)),
        "cell_gates": (_cell_gates_factory(t), (a2, a2, a2, a2, a2)),
        "add": (_add_factory(t), (a1, a1, a1)),
        "zero_past_lengths": (_zero_past_lengths_factory(t), (y, int64[:])),
        "fill": (_fill_factory(t), (a1, t)),
    }
    for features in variants:
        flags = {f: f in features for f in FEATURES}
        sigs[variant_name("lstm_gates_ext", features)] = (
            _lstm_gates_ext_factory(t, **flags), (int64, types.boolean, a3, a2, int64[:], a2, a2, y, a2, t, a2))
        sigs[variant_name("cell_gates_ext", features)] = (
            _cell_gates_ext_factory(t, **flags), (a2, a2, a2, a2, a2, a2, t, a2))
    return sigs


@functools.cache
def kernels(dtype):
    """The jitted kernels for one dtype: an object with one attribute per kernel of
    :func:`signatures`, plus ``matmul_tile``."""
    t = _TYPES[np.dtype(dtype)]
    tile = SIM_TILE if _simulated() else TILE

    class K:
        matmul_tile = tile
        matmul_nt_bias = cuda.jit(_matmul_nt_factory(t, tile, with_bias=True))
        matmul_nt = cuda.jit(_matmul_nt_factory(t, tile, with_bias=False))
        lstm_gates = cuda.jit(_lstm_gates_factory(t))
        cell_gates = cuda.jit(_cell_gates_factory(t))
        matmul_nt_proj = cuda.jit(_matmul_nt_proj_factory(t, tile))
        add = cuda.jit(_add_factory(t))
        zero_past_lengths = cuda.jit(_zero_past_lengths_factory(t))
        fill = cuda.jit(_fill_factory(t))

    return K


@functools.cache
def gate_variants(dtype, peephole=False, clip=False, input_forget=False, project=False):
    """The full-cell gate kernels compiled for one combination of features: an object with
    ``lstm_gates`` and ``cell_gates`` (signatures of ``lstm_gates_ext``/``cell_gates_ext``)."""
    t = _TYPES[np.dtype(dtype)]
    flags = {"peephole": peephole, "clip": clip, "input_forget": input_forget, "project": project}

    class V:
        lstm_gates = cuda.jit(_lstm_gates_ext_factory(t, **flags))
        cell_gates = cuda.jit(_cell_gates_ext_factory(t, **flags))

    return V


def ptx(dtype, cc=(9, 0)):
    """PTX text of every kernel for ``dtype`` compiled for compute capability ``cc``.

    Returns
    -------
    dict of str to str
    """
    out = {}
    for name, (fn, sig) in signatures(dtype).items():
        text, _ = cuda.compile_ptx(fn, sig, cc=cc)
        out[name] = text
    return out


def assemble_report(dtypes=(np.float32, np.float64), cc=(9, 0), ptxas=None):
    """Compile every kernel to PTX for ``cc`` and, when ``ptxas`` is found, assemble it.

    ``ptxas -arch=sm_XY -v --warn-on-spills -Werror`` fails on any register spill.

    Parameters
    ----------
    dtypes : iterable of numpy dtypes
    cc : tuple (major, minor)
    ptxas : str, optional
        Path of ``ptxas``; looked up on PATH when omitted (assembly is skipped if absent).

    Returns
    -------
    list of dict
        One per kernel and dtype: ``kernel``, ``dtype``, ``ptx_bytes``, and when assembled
        ``registers``, ``smem_bytes``, ``spill_bytes``, ``ptxas_log``.

    Raises
    ------
    RuntimeError
        ``ptxas`` rejected a kernel (an error, or a spill with ``-Werror``).
    """
    import os
    import re
    import shutil
    import subprocess
    import tempfile

    ptxas = ptxas or shutil.which("ptxas")
    arch = f"sm_{cc[0]}{cc[1]}"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for dtype in dtypes:
            for name, text in ptx(dtype, cc).items():
                row = {"kernel": name, "dtype": np.dtype(dtype).name, "ptx_bytes": len(text)}
                if ptxas:
                    path = os.path.join(tmp, f"{name}_{np.dtype(dtype).name}.ptx")
                    with open(path, "w") as fh:
                        fh.write(text)
                    res = subprocess.run([ptxas, f"-arch={arch}", "-v", "--warn-on-spills", "-Werror", path,
                                          "-o", path + ".cubin"], capture_output=True, text=True)
                    log = res.stdout + res.stderr
                    if res.returncode != 0:
                        raise RuntimeError(f"ptxas failed for {name} ({row['dtype']}):\n{log}")
                    regs = re.search(r"Used (\d+) registers", log)
                    smem = re.search(r"(\d+) bytes smem", log)
                    spills = re.search(r"(\d+) bytes spill stores", log)
                    row.update(registers=int(regs.group(1)) if regs else None,
                               smem_bytes=int(smem.group(1)) if smem else 0,
                               spill_bytes=int(spills.group(1)) if spills else 0, ptxas_log=log)
                rows.append(row)
    return rows
