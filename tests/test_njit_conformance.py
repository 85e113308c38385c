"""The conformance kit's ``njit_*`` checks hold for a plugin's own njit-callable kernels and fail
on broken ones: a plain-Numba plugin (written here as a third party would, with public names only)
passes them; each mutant with one classic bug fails."""

from __future__ import annotations

import types

import numpy as np
import pytest

numba = pytest.importorskip("numba")

from lstm_backends.backends.numpy_backend import NumpyBackend  # noqa: E402
from lstm_backends.testing import run_conformance  # noqa: E402


def _jit_module(bug: str = "") -> types.SimpleNamespace:
    """A plugin's ``jit``: weights as a plain tuple, ``cell`` / ``forward`` plain @njit functions."""
    swap = bug == "swapped-gates"
    no_lengths = bug == "ignores-lengths"

    def prepare(params, *, clip=None, input_forget=False):
        w_ih, w_hh, b_ih, b_hh = (np.ascontiguousarray(a) for a in params[:4])
        return (w_ih.copy(), w_hh.copy(), (b_ih + b_hh).astype(w_ih.dtype))

    @numba.njit
    def cell(x, h, c, w, h_out, c_out):
        w_ih, w_hh, b = w
        if x.shape[1] != w_ih.shape[1] or h.shape[1] != w_hh.shape[1] or h.shape[0] != x.shape[0]:
            raise ValueError("plugin cell: wrong shape")
        H = w_hh.shape[1]
        z = x @ w_ih.T + h @ w_hh.T + b
        for r in range(x.shape[0]):
            for u in range(H):
                i = 1 / (1 + np.exp(-z[r, u]))
                f = 1 / (1 + np.exp(-z[r, H + u]))
                g = np.tanh(z[r, 2 * H + u])
                if swap:
                    f, g = 1 / (1 + np.exp(-z[r, 2 * H + u])), np.tanh(z[r, H + u])
                o = 1 / (1 + np.exp(-z[r, 3 * H + u]))
                c_out[r, u] = f * c[r, u] + i * g
                h_out[r, u] = o * np.tanh(c_out[r, u])

    @numba.njit
    def forward(x, w, h0, c0, y, h_n, c_n, lengths=None, reverse=False):
        T, B = x.shape[0], x.shape[1]
        if y.shape[0] != T or y.shape[1] != B:
            raise ValueError("plugin forward: wrong shape")
        h_n[:] = h0
        c_n[:] = c0
        y[:] = 0
        for b in range(B):
            n = T
            if lengths is not None and not no_lengths:
                n = lengths[b]
            for s in range(n):
                t = n - 1 - s if reverse else s
                cell(x[t, b:b + 1], h_n[b:b + 1], c_n[b:b + 1], w, h_n[b:b + 1], c_n[b:b + 1])
                y[t, b] = h_n[b]

    return types.SimpleNamespace(prepare=prepare, cell=cell, forward=forward)


def _plugin(bug: str = "") -> NumpyBackend:
    class NjitPlugin(NumpyBackend):
        name = f"njit-plugin{'-' + bug if bug else ''}"
        capabilities = frozenset({"forward", "cell", "njit"})
        dtypes = (np.dtype(np.float64),)
        jit = _jit_module(bug)

    return NjitPlugin()


CHECKS = ["njit_cell", "njit_forward", "njit_prange"]


def test_a_plain_numba_plugin_passes_the_njit_checks():
    results = run_conformance(_plugin(), CHECKS)
    assert [r.name for r in results if r.passed] == CHECKS


@pytest.mark.parametrize(("bug", "check"), [("swapped-gates", "njit_cell"), ("ignores-lengths", "njit_forward")])
def test_an_njit_mutant_fails_its_check(bug, check):
    (result,) = run_conformance(_plugin(bug), [check], raise_on_failure=False)
    assert not result.passed and not result.skipped, result
    assert "njit" in result.message or "jit" in result.message, result.message


def test_njit_checks_are_skipped_without_the_capability():
    results = run_conformance(NumpyBackend(), CHECKS + ["njit_errors"])
    assert all(r.skipped and not r.passed and "njit" in r.message for r in results)
