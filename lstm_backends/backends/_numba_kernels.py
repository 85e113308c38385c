"""Numba kernels of the ``numba`` backend (imported on first use only).

Versions, llm.c style:

1. ``forward_layer``: the input projection of all steps is one GEMM (BLAS, via
   ``np.dot``); then, in one compiled loop over time, one GEMM per step for the
   recurrent product and a fused pointwise gate / cell-state update that handles
   variable lengths and direction per row.  BLAS parallelises the products; the
   compiled code runs on the calling thread (no ``prange``), so Numba's and BLAS's
   threads never run at the same time and no threading layer is involved.
2. ``cell_step``: two products and the fused update; allocation-free with
   caller-provided scratch.

Every kernel is ``cache=True``; the helpers live in this file (``cache=True``
does not notice edits of jitted functions in other files).  ``error_model="numpy"``
drops the zero-division branch from every division so the rational tanh
vectorises.  float32 uses a clamped rational tanh (max abs error 3.6e-7, far
inside the float32 tolerance); float64 uses ``math.tanh``/``math.exp``, exact to
float64 rounding.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, types
from numba.extending import overload

_JIT = {"cache": True, "error_model": "numpy", "nogil": True}

# Eigen's float tanh: odd rational 13/6 on [-7.905, 7.905], clamped outside.
_A1, _A3, _A5, _A7 = (np.float32(v) for v in (4.89352455891786e-03, 6.37261928875436e-04,
                                              1.48572235717979e-05, 5.12229709037114e-08))
_A9, _A11, _A13 = (np.float32(v) for v in (-8.60467152213735e-11, 2.00018790482477e-13, -2.76076847742355e-16))
_B0, _B2, _B4, _B6 = (np.float32(v) for v in (4.89352518554385e-03, 2.26843463243900e-03,
                                              1.18534705686654e-04, 1.19825839466702e-06))
_CLAMP = np.float32(7.90531110763549805)
_HALF32 = np.float32(0.5)
_ONE32 = np.float32(1.0)


def tanh_(x):  # pragma: no cover - typed through the overload below
    raise NotImplementedError


def sigmoid_(x):  # pragma: no cover
    raise NotImplementedError


@overload(tanh_, jit_options=_JIT, inline="always")
def _ov_tanh(x):
    if isinstance(x, types.Float) and x.bitwidth == 32:
        def impl(x):
            x = min(max(x, -_CLAMP), _CLAMP)
            x2 = x * x
            p = x2 * _A13 + _A11
            p = p * x2 + _A9
            p = p * x2 + _A7
            p = p * x2 + _A5
            p = p * x2 + _A3
            p = p * x2 + _A1
            p = p * x
            q = x2 * _B6 + _B4
            q = q * x2 + _B2
            q = q * x2 + _B0
            return p / q
        return impl

    def impl64(x):
        return math.tanh(x)
    return impl64


@overload(sigmoid_, jit_options=_JIT, inline="always")
def _ov_sigmoid(x):
    if isinstance(x, types.Float) and x.bitwidth == 32:
        def impl(x):
            # sigma(x) = (1 + tanh(x/2)) / 2: overflow-free, vectorisable
            return _HALF32 + _HALF32 * tanh_(_HALF32 * x)
        return impl

    def impl64(x):
        # stable both ways: exp of a non-positive number only
        if x >= 0.0:
            return 1.0 / (1.0 + math.exp(-x))
        e = math.exp(x)
        return e / (1.0 + e)
    return impl64


@njit(**_JIT)
def _update_row(gates, c_row, c_tmp, h_out, hidden):
    """Fused gate nonlinearities and state update of one batch row.

    gates : (4H,)  full pre-activations (input projection + bias + recurrent product)
    c_row : (H,)  cell state before the step; overwritten with the new one
    c_tmp : (H,)  scratch: the new cell state is computed here first, because writing
        c_row while reading it would alias and stop the loop from vectorising
    h_out : (H,)  new hidden state (must not alias gates, c_row or c_tmp)
    """
    for u in range(hidden):
        i = sigmoid_(gates[u])
        f = sigmoid_(gates[hidden + u])
        g = tanh_(gates[2 * hidden + u])
        o = sigmoid_(gates[3 * hidden + u])
        c_new = f * c_row[u] + i * g
        c_tmp[u] = c_new
        h_out[u] = o * tanh_(c_new)
    for u in range(hidden):  # an explicit loop: slice assignment may copy through a temporary
        c_row[u] = c_tmp[u]


@njit(**_JIT)
def _input_projection(x, w_ih, bias):
    """(T, B, 4H) = x @ W_ih.T + bias for every step, in one GEMM."""
    steps, batch, in_size = x.shape
    four_h = w_ih.shape[0]
    xp = np.dot(x.reshape(steps * batch, in_size), w_ih.T)
    for r in range(steps * batch):
        for j in range(four_h):
            xp[r, j] += bias[j]
    return xp.reshape(steps, batch, four_h)


@njit(**_JIT)
def _start(x, w_ih, bias, h0, c0, y, h_n, c_n):
    """Shared opening of the forward kernels: the input projection, and the state set to
    (h0, c0) in the outputs (which may be h0 and c0 themselves)."""
    h_n[:, :] = h0
    c_n[:, :] = c0
    return _input_projection(x, w_ih, bias)


@njit(**_JIT)
def forward_layer(x, w_ih, w_hh, bias, h0, c0, lengths, reverse, y, h_n, c_n):
    """One layer, one direction, whole sequence: a GEMM per step for all rows.

    x : (T, B, I)   w_ih : (4H, I)   w_hh : (4H, H)   bias : (4H,) = b_ih + b_hh
    h0, c0 : (B, H)   lengths : (B,) int64 in [0, T]   reverse : bool
    y : (T, B, H) written at valid steps only (the caller zeroes the rest)   h_n, c_n : (B, H) written
    """
    batch = x.shape[1]
    hidden = h0.shape[1]
    xp = _start(x, w_ih, bias, h0, c0, y, h_n, c_n)
    h = h_n  # the running state lives in the outputs
    c = c_n
    gates = np.empty((batch, 4 * hidden), dtype=x.dtype)
    c_tmp = np.empty(hidden, dtype=x.dtype)
    w_hh_t = w_hh.T  # a transposed view: BLAS reads it in place
    for s in range(lengths.max()):
        np.dot(h, w_hh_t, gates)  # (B, 4H) recurrent product for all rows
        for b in range(batch):
            if s >= lengths[b]:
                continue  # a finished row keeps its state
            t = lengths[b] - 1 - s if reverse else s
            row = gates[b]
            row += xp[t, b]
            _update_row(row, c[b], c_tmp, h[b], hidden)
            y[t, b, :] = h[b]


@njit(**_JIT)
def forward_layer_rowwise(x, w_ih, w_hh, bias, h0, c0, lengths, reverse, y, h_n, c_n):
    """Same contract as ``forward_layer``; for few rows: a compiled matrix-vector
    product per row and step over a transposed copy of W_hh (no BLAS call per step).

    The product accumulates ``gates += W_hh.T[k] * h[k]`` in order of k, four k at a
    time, so it vectorises over the 4H outputs without reassociating any sum.
    """
    batch = x.shape[1]
    hidden = h0.shape[1]
    four_h = 4 * hidden
    xp = _start(x, w_ih, bias, h0, c0, y, h_n, c_n)
    w_t = np.ascontiguousarray(w_hh.T)  # (H, 4H)
    gates = np.empty(four_h, dtype=x.dtype)
    c_tmp = np.empty(hidden, dtype=x.dtype)
    h_tmp = np.empty(hidden, dtype=x.dtype)
    k_main = hidden - hidden % 4
    for b in range(batch):
        h = h_n[b]
        c = c_n[b]
        for s in range(lengths[b]):
            t = lengths[b] - 1 - s if reverse else s
            gates[:] = xp[t, b]
            for k in range(0, k_main, 4):
                h0_, h1_, h2_, h3_ = h[k], h[k + 1], h[k + 2], h[k + 3]
                w0, w1, w2, w3 = w_t[k], w_t[k + 1], w_t[k + 2], w_t[k + 3]
                for j in range(four_h):
                    gates[j] = gates[j] + w0[j] * h0_ + w1[j] * h1_ + w2[j] * h2_ + w3[j] * h3_
            for k in range(k_main, hidden):
                hk = h[k]
                wk = w_t[k]
                for j in range(four_h):
                    gates[j] = gates[j] + wk[j] * hk
            _update_row(gates, c, c_tmp, h_tmp, hidden)
            h[:] = h_tmp
            y[t, b, :] = h_tmp


@njit(**_JIT)
def cell_step(x, h, c, w_ih, w_hh, bias, h_out, c_out, gates, xp, c_tmp):
    """One step.  x : (B, I); h, c : (B, H); h_out, c_out : (B, H) (may be h, c);
    gates, xp : (B, 4H) and c_tmp : (H,) scratch."""
    batch = x.shape[0]
    hidden = h.shape[1]
    if batch == 1:
        np.dot(w_ih, x[0], xp[0])
        np.dot(w_hh, h[0], gates[0])
    else:
        np.dot(x, w_ih.T, xp)
        np.dot(h, w_hh.T, gates)
    for b in range(batch):
        row = gates[b]
        for j in range(4 * hidden):
            row[j] += xp[b, j] + bias[j]
        for u in range(hidden):  # c_out may be c: copy element-wise, never through a temporary
            c_out[b, u] = c[b, u]
        _update_row(row, c_out[b], c_tmp, xp[b, :hidden], hidden)
        for u in range(hidden):
            h_out[b, u] = xp[b, u]


