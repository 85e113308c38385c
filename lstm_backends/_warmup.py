"""Compile the compiled backends' kernels ahead of time: :func:`lstm_backends.warmup`."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["warmup"]


def _default_backends() -> list[str]:
    from ._registry import list_backends

    return [b.name for b in list_backends() if b.name in ("numba", "cuda") and b.available]


def warmup(backends: str | Sequence[str] | None = None, dtypes: Any = (np.float32, np.float64), *,
           training: bool = False, precision: str | Sequence[str] | None = None,
           progress: Callable[[int, int, str], None] | None = None) -> list[tuple[str, float]]:
    """Compile (or load from the on-disk cache) the kernels of the compiled backends.

    The numba backend compiles each kernel family on its first call (a few seconds each: the forward
    pass, the cell, the backward pass, per dtype) and caches the machine code on disk; every later
    process loads it in a fraction of a second.  Call this once after installing (or run
    ``lstm-backends warmup`` in a shell) so that no real call pays for compilation.

    Parameters
    ----------
    backends : str or sequence of str, optional
        Backend names; default: ``numba`` and, where it can run, ``cuda``.
    dtypes : numpy dtype or sequence of them
        ``float32`` and/or ``float64`` (default both).
    training : bool
        Also the training kernels (``forward_train`` and ``backward``).
    precision : {"bf16", "bf16x3"} or a sequence of them, optional
        Also the kernels of these precision modes (forward and cell on prepared weights; see
        :doc:`/precision`), on the backends that have them.
    progress : callable, optional
        ``progress(index, total, label)`` before each step (``index`` from 1).

    Returns
    -------
    list of (str, float)
        Each step's label and its seconds.

    Examples
    --------
    >>> import lstm_backends as lb
    >>> steps = lb.warmup(["numpy"], dtypes="float32")   # the reference has nothing to compile
    >>> [label for label, seconds in steps]
    ['numpy float32 forward', 'numpy float32 cell']
    """
    from ._prepared import validate_precision
    from ._registry import get_backend
    from .testing import random_problem

    names = _default_backends() if backends is None else [backends] if isinstance(backends, str) else list(backends)
    if isinstance(dtypes, (str, np.dtype, type)):
        dtypes = (dtypes,)
    dtypes = [np.dtype(d) for d in dtypes]
    modes = [] if precision is None else [precision] if isinstance(precision, str) else list(precision)
    for mode in modes:
        validate_precision(mode)
    steps: list[tuple[str, Callable[[], Any]]] = []
    for name in names:
        be = get_backend(name)  # an unknown or unavailable backend raises its own helpful error
        if be.name == "numba":
            from .backends.numba_backend import warmup_steps

            steps += warmup_steps(dtypes, training=training, precision=modes)
            continue
        for mode in (m for m in modes if m in be.capabilities):
            p = random_problem(3, 2, 3, 20, dtype=np.float32, seed=0)
            steps.append((f"{be.name} {mode} forward + cell", lambda be=be, p=p, mode=mode: _mode_calls(be, p, mode)))
        for dtype in dtypes:
            if dtype not in be.dtypes:
                continue
            p = random_problem(3, 2, 3, 20, dtype=dtype, seed=0)
            steps.append((f"{be.name} {dtype.name} forward", lambda be=be, p=p: p.forward(be)))
            if "cell" in be.capabilities:
                steps.append((f"{be.name} {dtype.name} cell",
                              lambda be=be, p=p: be.cell(p.x[0], p.h0, p.c0, p.params)))
            if training and "backward" in be.capabilities:
                steps.append((f"{be.name} {dtype.name} forward_train + backward",
                              lambda be=be, p=p: be.backward(p.forward_train(be)[3], *p.output_grads(seed=0))))
    done: list[tuple[str, float]] = []
    for i, (label, run) in enumerate(steps, 1):
        if progress is not None:
            progress(i, len(steps), label)
        t0 = time.perf_counter()
        run()
        done.append((label, time.perf_counter() - t0))
    return done


def _mode_calls(be: Any, p: Any, mode: str) -> None:
    """A forward and a cell on weights prepared in ``mode``."""
    w = be.prepare(p.params, mode)
    be.forward(p.x, w, p.h0, p.c0)
    if "cell" in be.capabilities:
        be.cell(p.x[0], p.h0, p.c0, w)
