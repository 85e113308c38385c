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

5. Training (capability ``backward``), haste style — the forward written knowing the backward
   will need its activations:

   * ``lstm_gates_train``: version 4 (every compile-time variant, :func:`train_variants`)
     also writing the tape at [t, b]: the activations i, f, g, o, the new c and, with clip,
     which pre-activations were clipped;
   * ``lstm_bwd``: the fused pointwise backward of one step (one thread per row and unit): dz
     of the four gates from dh, dc and the saved activations, dc carried in place, dz written
     per step (input of the recurrent product) and at [t, b] (for the weight gradients);
     ``bwd_dh_total`` adds dy to dh before the projection's ``dm = dh @ W_hr``;
   * ``matmul_nn`` (out = a @ w) and ``matmul_nn_rows`` (the same with an epilogue that
     writes only the rows that ran the step: ``dh = dz @ W_hh`` per step);
   * ``matmul_tn`` (out = a.T @ b): each weight gradient as ONE product over all T*B rows
     after the time loop, each output element summed by one thread in a fixed order;
   * ``h_prev``: h_{t-1} at every [t, b] from the recomputed h_t (o * tanh(c), projected by
     one ``matmul_nt`` with a projection) and h0; ``col_sum_partial``/``col_sum_final``: the
     bias (and peephole) gradients, a two-stage column sum in chunks fixed by the shape.

   No atomics anywhere (the PTX test checks): bitwise repeatable gradients.

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
        """(acc, m, n): acc = sum_k a[m, k] * w[n, k] for this thread's output element (m, n)."""
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
        return acc, m, cuda.blockIdx.x * TILE + tx

    return cuda.jit(device=True, inline="always")(tiles)  # IR-inlined: compile_ptx needs no GPU


def _matmul_factory(tiles, name, doc, with_bias=False, masked=False):
    """A tiled GEMM kernel: the tile loop ``tiles(a, w) -> (acc, m, n)`` (every thread of the
    block takes part: shared-memory tiles) and the bounds-checked epilogue out[m, n] = acc; with
    ``with_bias`` + bias[n]; with ``masked`` only for the rows m with step < lengths[m].  The
    kernel is named ``name`` (profiles, PTX) and documented by ``doc``."""
    if with_bias:
        def kernel(a, w, bias, out):
            acc, m, n = tiles(a, w)
            if m < out.shape[0] and n < out.shape[1]:
                out[m, n] = acc + bias[n]
    elif masked:
        def kernel(step, lengths, a, w, out):
            acc, m, n = tiles(a, w)
            if m < out.shape[0] and n < out.shape[1] and step < lengths[m]:
                out[m, n] = acc
    else:
        def kernel(a, w, out):
            acc, m, n = tiles(a, w)
            if m < out.shape[0] and n < out.shape[1]:
                out[m, n] = acc
    kernel.__name__ = kernel.__qualname__ = name
    kernel.__doc__ = doc
    return kernel


def _matmul_nt_factory(nb_dtype, TILE=TILE, with_bias=True):  # noqa: N803 - compile-time constants
    tiles = _tiles_factory(nb_dtype, TILE)
    if with_bias:
        doc = """out[m, n] = sum_k a[m, k] * w[n, k] + bias[n].

        a : (M, K)   w : (N, K)   bias : (N,)   out : (M, N)
        grid: (ceil(N / TILE), ceil(M / TILE)) blocks of (TILE, TILE) threads
        """
        return _matmul_factory(tiles, "matmul_nt_bias", doc, with_bias=True)
    doc = """out[m, n] = sum_k a[m, k] * w[n, k] (no bias: the recurrent product).

    a : (M, K)   w : (N, K)   out : (M, N)
    grid: (ceil(N / TILE), ceil(M / TILE)) blocks of (TILE, TILE) threads
    """
    return _matmul_factory(tiles, "matmul_nt", doc)


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
        acc, b, n = tiles(m, w_hr)  # every thread of the block takes part (shared-memory tiles)
        if b < h.shape[0] and n < h.shape[1]:
            steps = lengths[b]
            if step < steps:
                t = steps - 1 - step if reverse else step
                h[b, n] = acc
                y[t, b, n] = acc

    return matmul_nt_proj


# ---------------------------------------------------------------------------- training
def _gate_math_train_factory(nb_dtype, peephole, clip, input_forget):
    half = nb_dtype(0.5)
    one = nb_dtype(1)
    bound = _bound_factory(nb_dtype)
    PEEPHOLE, CLIP, COUPLED = bool(peephole), bool(clip), bool(input_forget)  # noqa: N806

    def gate_math_train(gi, gf, gg, go, c_prev, p_i, p_f, p_o, limit):
        """``gate_math_ext``, also returning the activations i, f, g, o and, with clip, whether
        each pre-activation lay outside [-limit, limit] (its gradient is then 0)."""
        ci = cf = cg = co = False
        if PEEPHOLE:
            gi += p_i * c_prev
            gf += p_f * c_prev
        if CLIP:
            ci = abs(gi) > limit
            cg = abs(gg) > limit
            gi = bound(gi, limit)
            gg = bound(gg, limit)
        i = half + half * math.tanh(half * gi)
        if COUPLED:
            f = one - i
        else:
            if CLIP:
                cf = abs(gf) > limit
                gf = bound(gf, limit)
            f = half + half * math.tanh(half * gf)
        g = math.tanh(gg)
        c_new = f * c_prev + i * g
        if PEEPHOLE:
            go += p_o * c_new
        if CLIP:
            co = abs(go) > limit
            go = bound(go, limit)
        o = half + half * math.tanh(half * go)
        return o * math.tanh(c_new), c_new, i, f, g, o, ci, cf, cg, co

    return cuda.jit(device=True, inline="always")(gate_math_train)


def _lstm_gates_train_factory(nb_dtype, peephole=False, clip=False, input_forget=False, project=False):
    gate_math = _gate_math_train_factory(nb_dtype, peephole, clip, input_forget)
    PEEPHOLE, CLIP, PROJECT = bool(peephole), bool(clip), bool(project)  # noqa: N806
    zero = nb_dtype(0)

    def lstm_gates_train(step, reverse, xp, rec, lengths, h, c, y, peep, limit, m, gates, cells, clipped):
        """One time step of the training forward for every (row, unit): thread x = unit, y = row.

        As ``lstm_gates_ext``, plus the tape at [t, b]: gates (T, B, 4H) receives i, f, g, o;
        cells (T, B, H) the new c; clipped (T, B, 4H) bool (with clip) whether each gate's
        pre-activation was clipped.  Rows past their length write nothing.
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
        out, c_new, i, f, g, o, ci, cf, cg, co = gate_math(
            xp[t, b, u] + rec[b, u], xp[t, b, hidden + u] + rec[b, hidden + u],
            xp[t, b, 2 * hidden + u] + rec[b, 2 * hidden + u], xp[t, b, 3 * hidden + u] + rec[b, 3 * hidden + u],
            c[b, u], p_i, p_f, p_o, limit)
        c[b, u] = c_new
        gates[t, b, u] = i
        gates[t, b, hidden + u] = f
        gates[t, b, 2 * hidden + u] = g
        gates[t, b, 3 * hidden + u] = o
        cells[t, b, u] = c_new
        if CLIP:
            clipped[t, b, u] = ci
            clipped[t, b, hidden + u] = cf
            clipped[t, b, 2 * hidden + u] = cg
            clipped[t, b, 3 * hidden + u] = co
        if PROJECT:
            m[b, u] = out
        else:
            h[b, u] = out
            y[t, b, u] = out

    return lstm_gates_train


def _lstm_bwd_factory(nb_dtype, peephole=False, clip=False, input_forget=False, project=False):
    PEEPHOLE, CLIP, COUPLED, PROJECT = bool(peephole), bool(clip), bool(input_forget), bool(project)  # noqa: N806
    zero = nb_dtype(0)
    one = nb_dtype(1)

    def lstm_bwd(step, reverse, lengths, gates, cells, clipped, c0, dy, dh, dc, peep, dg_step, dgates, m_all, dpeep):
        """The fused pointwise backward of one step for every (row, unit): thread x = unit, y = row.

        Undoes step ``step`` (t as in ``lstm_gates``) of the rows that ran it, with the saved
        activations (the recursions of ``lstm_step_backward`` in the numpy backend):

        gates (T, B, 4H), cells (T, B, H), clipped (T, B, 4H) bool (read with clip): the tape
        c0 (B, H): the cell state before each row's first step
        dy (T, B, H): output gradient (may be a strided view; read without a projection)
        dh (B, H): without a projection, dL/dh from the later steps (dh_n until the row's last
            step; the masked ``matmul_nn_rows`` after this kernel replaces it by dz @ W_hh); with
            one, dm = (dy[t] + dh) @ W_hr of this step
        dc (B, H): dL/dc from the later steps (dc_n until the row's last step), replaced in place
            by dL/dc_{t-1}
        peep (3, H): peepholes (read with peepholes)
        dg_step (B, 4H): dz of this step per row, 0 for the rows that did not run it (the input of
            the recurrent product); dgates (T, B, 4H): dz at [t, b] for the weight gradients
        m_all (T, B, H): o * tanh(c) at [t, b] (h_t without a projection), for dW_hh and dW_hr
        dpeep (T, B, 3H): with peepholes, dz_i * c_{t-1}, dz_f * c_{t-1}, dz_o * c_t at [t, b]
        """
        u = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
        b = cuda.blockIdx.y * cuda.blockDim.y + cuda.threadIdx.y
        batch, hidden = dc.shape
        if u >= hidden or b >= batch:
            return
        n = lengths[b]
        if step >= n:
            dg_step[b, u] = zero
            dg_step[b, hidden + u] = zero
            dg_step[b, 2 * hidden + u] = zero
            dg_step[b, 3 * hidden + u] = zero
            return
        t = n - 1 - step if reverse else step
        if step == 0:
            c_prev = c0[b, u]
        else:
            c_prev = cells[t + 1 if reverse else t - 1, b, u]
        i = gates[t, b, u]
        f = gates[t, b, hidden + u]
        g = gates[t, b, 2 * hidden + u]
        o = gates[t, b, 3 * hidden + u]
        c = cells[t, b, u]
        tanh_c = math.tanh(c)
        m_all[t, b, u] = o * tanh_c
        if PROJECT:
            dm = dh[b, u]
        else:
            dm = dy[t, b, u] + dh[b, u]
        dcc = dc[b, u] + dm * o * (one - tanh_c * tanh_c)
        dz_o = dm * tanh_c * o * (one - o)
        if CLIP:
            if clipped[t, b, 3 * hidden + u]:
                dz_o = zero
        if PEEPHOLE:
            dcc += dz_o * peep[2, u]
        di = dcc * g
        df = dcc * c_prev
        if COUPLED:
            di -= df
            dz_f = zero
        else:
            dz_f = df * f * (one - f)
        dz_i = di * i * (one - i)
        dz_g = dcc * i * (one - g * g)
        if CLIP:
            if clipped[t, b, u]:
                dz_i = zero
            if clipped[t, b, hidden + u]:
                dz_f = zero
            if clipped[t, b, 2 * hidden + u]:
                dz_g = zero
        dc_prev = dcc * f
        if PEEPHOLE:
            dc_prev += dz_i * peep[0, u] + dz_f * peep[1, u]
            dpeep[t, b, u] = dz_i * c_prev
            dpeep[t, b, hidden + u] = dz_f * c_prev
            dpeep[t, b, 2 * hidden + u] = dz_o * c
        dc[b, u] = dc_prev
        dg_step[b, u] = dz_i
        dg_step[b, hidden + u] = dz_f
        dg_step[b, 2 * hidden + u] = dz_g
        dg_step[b, 3 * hidden + u] = dz_o
        dgates[t, b, u] = dz_i
        dgates[t, b, hidden + u] = dz_f
        dgates[t, b, 2 * hidden + u] = dz_g
        dgates[t, b, 3 * hidden + u] = dz_o

    return lstm_bwd


def _bwd_dh_total_factory(nb_dtype):
    zero = nb_dtype(0)

    def bwd_dh_total(step, reverse, lengths, dy, dh, dh_step, dh_all):
        """With a projection, dL/dh of step ``step``: dy[t, b] + dh[b] for the rows that ran it,
        written to dh_step (B, P) (0 for the other rows; the input of dm = dh_step @ W_hr) and to
        dh_all (T, B, P) at [t, b] (for dW_hr).  Thread x = column, y = row."""
        n_ = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
        b = cuda.blockIdx.y * cuda.blockDim.y + cuda.threadIdx.y
        batch, width = dh.shape
        if n_ >= width or b >= batch:
            return
        n = lengths[b]
        if step >= n:
            dh_step[b, n_] = zero
            return
        t = n - 1 - step if reverse else step
        v = dy[t, b, n_] + dh[b, n_]
        dh_step[b, n_] = v
        dh_all[t, b, n_] = v

    return bwd_dh_total


def _tiles_nn_factory(nb_dtype, TILE=TILE):  # noqa: N803 - compile-time constant
    PADDED = TILE + 1  # noqa: N806

    def tiles_nn(a, w):
        """(acc, m, n): acc = sum_k a[m, k] * w[k, n] for this thread's output element (m, n)."""
        a_tile = cuda.shared.array((TILE, TILE), nb_dtype)
        w_tile = cuda.shared.array((TILE, PADDED), nb_dtype)
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        m = cuda.blockIdx.y * TILE + ty
        n = cuda.blockIdx.x * TILE + tx
        rows, inner = a.shape
        cols = w.shape[1]
        acc = nb_dtype(0)
        for k0 in range(0, inner, TILE):
            k = k0 + tx
            a_tile[ty, tx] = a[m, k] if (m < rows and k < inner) else nb_dtype(0)
            kw = k0 + ty
            w_tile[ty, tx] = w[kw, n] if (kw < inner and n < cols) else nb_dtype(0)
            cuda.syncthreads()
            for kk in range(TILE):
                acc += a_tile[ty, kk] * w_tile[kk, tx]
            cuda.syncthreads()
        return acc, m, n

    return cuda.jit(device=True, inline="always")(tiles_nn)


def _matmul_nn_factory(nb_dtype, TILE=TILE, masked=False):  # noqa: N803 - compile-time constants
    tiles = _tiles_nn_factory(nb_dtype, TILE)
    if masked:
        doc = """out[m, n] = sum_k a[m, k] * w[k, n] for the rows m with step < lengths[m]; the other
        rows of out are not written (the recurrent gradient dh = dz @ W_hh of the rows that ran
        step ``step``; the others keep dh_n).

        a : (M, K)   w : (K, N)   out : (M, N)
        grid: (ceil(N / TILE), ceil(M / TILE)) blocks of (TILE, TILE) threads
        """
        return _matmul_factory(tiles, "matmul_nn_rows", doc, masked=True)
    doc = """out[m, n] = sum_k a[m, k] * w[k, n] (out = a @ w).

    a : (M, K)   w : (K, N)   out : (M, N)
    grid: (ceil(N / TILE), ceil(M / TILE)) blocks of (TILE, TILE) threads
    """
    return _matmul_factory(tiles, "matmul_nn", doc)


def _tiles_tn_factory(nb_dtype, TILE=TILE):  # noqa: N803 - compile-time constant
    PADDED = TILE + 1  # noqa: N806

    def tiles_tn(a, b):
        """(acc, n, k): acc = sum_m a[m, n] * b[m, k] for this thread's output element (n, k)."""
        a_tile = cuda.shared.array((TILE, PADDED), nb_dtype)
        b_tile = cuda.shared.array((TILE, PADDED), nb_dtype)
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        n_block = cuda.blockIdx.y * TILE
        k_block = cuda.blockIdx.x * TILE
        rows, cols_a = a.shape
        cols_b = b.shape[1]
        acc = nb_dtype(0)
        for m0 in range(0, rows, TILE):
            m = m0 + ty
            a_tile[ty, tx] = a[m, n_block + tx] if (m < rows and n_block + tx < cols_a) else nb_dtype(0)
            b_tile[ty, tx] = b[m, k_block + tx] if (m < rows and k_block + tx < cols_b) else nb_dtype(0)
            cuda.syncthreads()
            for mm in range(TILE):
                acc += a_tile[mm, ty] * b_tile[mm, tx]
            cuda.syncthreads()
        return acc, n_block + ty, k_block + tx

    return cuda.jit(device=True, inline="always")(tiles_tn)


def _matmul_tn_factory(nb_dtype, TILE=TILE):  # noqa: N803 - compile-time constant
    doc = """out[n, k] = sum_m a[m, n] * b[m, k] (out = a.T @ b): a weight gradient, reduced over all
    M = T * B rows by one thread per output element in a fixed order (no atomics).

    a : (M, N)   b : (M, K)   out : (N, K)
    grid: (ceil(K / TILE), ceil(N / TILE)) blocks of (TILE, TILE) threads
    """
    return _matmul_factory(_tiles_tn_factory(nb_dtype, TILE), "matmul_tn", doc)


def _h_prev_factory(nb_dtype):
    zero = nb_dtype(0)

    def h_prev(reverse, lengths, h_src, h0, out):
        """out[t, b] = the state h before the step at time t of row b: h0[b] at the row's first
        step, else h_src at the row's previous step (t - 1, or t + 1 in reverse); 0 past the row's
        length.  h_src (T, B, S) holds h_t at valid steps.  Grid-stride over T * B * S."""
        steps, batch, width = out.shape
        start = cuda.grid(1)
        stride = cuda.gridsize(1)
        for idx in range(start, steps * batch * width, stride):
            t = idx // (batch * width)
            b = (idx // width) % batch
            j = idx % width
            n = lengths[b]
            if t >= n:
                out[t, b, j] = zero
            elif (t == n - 1) if reverse else (t == 0):
                out[t, b, j] = h0[b, j]
            else:
                out[t, b, j] = h_src[t + 1 if reverse else t - 1, b, j]

    return h_prev


def _col_sum_partial_factory(nb_dtype):
    def col_sum_partial(a, partial):
        """partial[r, n] = sum of a[m, n] over chunk r of the rows, in order (a bias gradient's
        first stage; chunks fixed by the shapes, so the sum is deterministic).

        a : (M, N)   partial : (R, N)
        grid: (ceil(N / threads), R) blocks
        """
        n = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
        r = cuda.blockIdx.y
        rows, cols = a.shape
        chunks = partial.shape[0]
        if n >= cols or r >= chunks:
            return
        size = (rows + chunks - 1) // chunks
        acc = nb_dtype(0)
        for m in range(r * size, min(rows, (r + 1) * size)):
            acc += a[m, n]
        partial[r, n] = acc

    return col_sum_partial


def _col_sum_final_factory(nb_dtype):
    def col_sum_final(partial, out):
        """out[n] = sum over r of partial[r, n], in order (the second stage).

        partial : (R, N)   out : (N,)
        """
        n = cuda.grid(1)
        if n >= out.shape[0]:
            return
        acc = nb_dtype(0)
        for r in range(partial.shape[0]):
            acc += partial[r, n]
        out[n] = acc

    return col_sum_final


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
    # training: the forward that fills the tape, the pointwise backward (plain and every variant),
    # and the products and reductions of the backward pass
    b3 = types.boolean[:, :, :]
    for features in (frozenset(), *variants):
        flags = {f: f in features for f in FEATURES}
        sigs[variant_name("lstm_gates_train", features)] = (
            _lstm_gates_train_factory(t, **flags),
            (int64, types.boolean, a3, a2, int64[:], a2, a2, y, a2, t, a2, a3, a3, b3))
        sigs[variant_name("lstm_bwd", features)] = (
            _lstm_bwd_factory(t, **flags),
            (int64, types.boolean, int64[:], a3, a3, b3, a2, y, a2, a2, a2, a2, a3, a3, a3))
    sigs.update({
        "bwd_dh_total": (_bwd_dh_total_factory(t), (int64, types.boolean, int64[:], y, a2, a2, a3)),
        "matmul_nn": (_matmul_nn_factory(t), (a2, a2, a2)),
        "matmul_nn_rows": (_matmul_nn_factory(t, masked=True), (int64, int64[:], a2, a2, a2)),
        "matmul_tn": (_matmul_tn_factory(t), (a2, a2, a2)),
        "h_prev": (_h_prev_factory(t), (types.boolean, int64[:], a3, a2, a3)),
        "col_sum_partial": (_col_sum_partial_factory(t), (a2, a2)),
        "col_sum_final": (_col_sum_final_factory(t), (a2, a1)),
    })
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
        bwd_dh_total = cuda.jit(_bwd_dh_total_factory(t))
        matmul_nn = cuda.jit(_matmul_nn_factory(t, tile))
        matmul_nn_rows = cuda.jit(_matmul_nn_factory(t, tile, masked=True))
        matmul_tn = cuda.jit(_matmul_tn_factory(t, tile))
        h_prev = cuda.jit(_h_prev_factory(t))
        col_sum_partial = cuda.jit(_col_sum_partial_factory(t))
        col_sum_final = cuda.jit(_col_sum_final_factory(t))

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


@functools.cache
def train_variants(dtype, peephole=False, clip=False, input_forget=False, project=False):
    """The training kernels compiled for one combination of features: an object with
    ``lstm_gates`` (the forward that fills the tape, ``lstm_gates_train``) and ``lstm_bwd`` (the
    fused pointwise backward).  No features: the plain cell."""
    t = _TYPES[np.dtype(dtype)]
    flags = {"peephole": peephole, "clip": clip, "input_forget": input_forget, "project": project}

    class V:
        lstm_gates = cuda.jit(_lstm_gates_train_factory(t, **flags))
        lstm_bwd = cuda.jit(_lstm_bwd_factory(t, **flags))

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
