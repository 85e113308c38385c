"""Test-only fix for a race in the Numba CUDA simulator's shared arrays.

The simulator runs every CUDA thread of a block as a Python thread.  Its
``FakeCUDAShared.array`` (numba-cuda 0.30) looks the block's array up by call site,
allocates one when there is none and stores it, in three separate steps::

    res = self._allocations.get(caller)
    if res is None:
        res = np.empty(shape, dtype)
        self._allocations[caller] = res

Two threads that both find no array each make their own, so one thread (or more) works
on a private "shared" tile that the others never see: results that are wrong but finite,
rarely, more often at a short ``sys.setswitchinterval``.  :func:`install` replaces the
method with one that keys the array exactly as the original does (the caller's file and
line) and stores it with one atomic ``dict.setdefault``, so every thread of the block gets
the same array.  See ``docs/upstream/numba-cuda-shared-array-race.md`` for the upstream
report.

The test suite installs it in every simulator run (``tests/conftest.py`` for the pytest
process, the ``SIMULATOR_PRELUDE`` line for the simulator subprocesses of the tests).

With the race closed, the same runs also switch threads every 0.1 ms instead of CPython's
5 ms (:func:`switch_fast`): the simulated threads of a block meet at every
``syncthreads``, and each hand-over of the GIL there waited out the interval.  A tiny forward
(T 7, B 3, I 5, H 19) took 18.4 s, and 4.4 s with the short interval, with the same bits.
Before the patch a short interval was what made the race show (it still does without the
patch: ``tests/test_cudasim_race.py``), so the interval is shortened only where the patch
is in place.
It touches nothing unless ``NUMBA_ENABLE_CUDASIM`` is set, and patches nothing (with a
warning) when the simulator's code is not the version it was written for.  Setting
``LSTM_BACKENDS_CUDASIM_UNPATCHED=1`` leaves the simulator as it is (to show the race).
This module imports nothing heavy until :func:`install` is called.
"""

from __future__ import annotations

import inspect
import os
import sys
import warnings
from types import ModuleType
from typing import Any

__all__ = ["DISABLE_ENV", "SIMULATOR_PRELUDE", "SWITCH_INTERVAL", "install", "is_installed", "simulator_enabled",
           "switch_fast"]

#: set to ``1`` to leave the simulator unpatched (e.g. to reproduce the race)
DISABLE_ENV = "LSTM_BACKENDS_CUDASIM_UNPATCHED"

#: one line of Python that installs the patch and, where it is in place, the short switch interval;
#: prepended to code run in a simulator subprocess
SIMULATOR_PRELUDE = ("import lstm_backends.testing._cudasim_patch as _cudasim_patch; "
                     "_cudasim_patch.install() and _cudasim_patch.switch_fast()\n")

#: seconds between GIL hand-overs in a patched simulator run (CPython's default: 0.005)
SWITCH_INTERVAL = 1e-4

#: fragments of the original ``FakeCUDAShared.array`` this patch was written against
_EXPECTED_SOURCE = (
    "stack = traceback.extract_stack(sys._getframe())",
    "caller = stack[-2][0:2]",
    "res = self._allocations.get(caller)",
    "self._allocations[caller] = res",
)
_EXPECTED_PARAMETERS = ("self", "shape", "dtype", "alignment")
_MARK = "_lstm_backends_atomic_shared_array"


def simulator_enabled() -> bool:
    """Whether ``NUMBA_ENABLE_CUDASIM`` asks for the simulator (any value but empty or ``0``)."""
    return os.environ.get("NUMBA_ENABLE_CUDASIM", "0").strip() not in ("", "0")


def is_installed(shared_cls: type | None = None) -> bool:
    """Whether ``shared_cls`` (default: the simulator's ``FakeCUDAShared``) has the patched method."""
    if shared_cls is None:
        from numba.cuda.simulator import kernelapi

        shared_cls = kernelapi.FakeCUDAShared
    return getattr(shared_cls.__dict__.get("array"), _MARK, False)


def install(*, force: bool = False) -> bool:
    """Replace the simulator's ``FakeCUDAShared.array`` with a race-free version.

    Parameters
    ----------
    force : bool
        Patch even when ``NUMBA_ENABLE_CUDASIM`` is not set (the simulator's modules import
        without it).  ``LSTM_BACKENDS_CUDASIM_UNPATCHED=1`` still wins.

    Returns
    -------
    bool
        True when the patched method is in place (now or from an earlier call), False when
        nothing was patched: the simulator is off, the patch is disabled, or the simulator's
        code differs from what the patch expects (then a ``UserWarning`` says why).
    """
    if os.environ.get(DISABLE_ENV, "0").strip() not in ("", "0"):
        return False
    if not force and not simulator_enabled():
        return False
    try:
        from numba.cuda.simulator import kernelapi
    except ImportError as exc:
        warnings.warn(f"CUDA simulator shared-array patch not installed: {exc}", UserWarning, stacklevel=2)
        return False
    return patch_shared_class(kernelapi.FakeCUDAShared, kernelapi)


def switch_fast() -> bool:
    """Shorten the interpreter's thread-switch interval to :data:`SWITCH_INTERVAL` (the simulated
    threads of a block then meet at ``syncthreads`` without waiting out CPython's 5 ms), but only
    where the shared-array patch is installed: without it a short interval makes its race likely.

    Returns
    -------
    bool
        True when the interval was shortened.
    """
    if not is_installed():
        return False
    sys.setswitchinterval(SWITCH_INTERVAL)
    return True


def patch_shared_class(shared_cls: type, kernelapi: ModuleType) -> bool:
    """Install the race-free ``array`` on ``shared_cls`` after checking the original's code.

    Parameters
    ----------
    shared_cls : type
        The simulator's ``FakeCUDAShared`` (or a stand-in, in tests).
    kernelapi : module
        The module that defines it: provides ``np``, ``types`` and ``numpy_support``.

    Returns
    -------
    bool
        True when patched (or already patched); False, with a ``UserWarning``, when the
        original is not the code this patch was written against.
    """
    original = shared_cls.__dict__.get("array")
    if getattr(original, _MARK, False):
        return True
    problem = _mismatch(original, kernelapi)
    if problem:
        warnings.warn(
            f"CUDA simulator shared-array patch not installed: {problem}.  The simulator may race when "
            "two threads of a block allocate the same cuda.shared.array (see "
            "docs/upstream/numba-cuda-shared-array-race.md); if upstream fixed it, drop this patch.",
            UserWarning,
            stacklevel=3,
        )
        return False
    np = kernelapi.np
    type_class = kernelapi.types.Type
    as_dtype = kernelapi.numpy_support.as_dtype

    def array(self: Any, shape: Any, dtype: Any, alignment: Any = None) -> Any:
        # Alignment (refused) and dynamic shared memory (one buffer) are not keyed: as before.
        if alignment is not None or shape == 0:
            return original(self, shape, dtype, alignment)
        # The same key as the original: the calling frame's (file name, line number).
        caller = sys._getframe(1)
        key = (caller.f_code.co_filename, caller.f_lineno)
        del caller
        res = self._allocations.get(key)
        if res is None:
            if isinstance(dtype, type_class):
                dtype = as_dtype(dtype)
            # setdefault is one atomic step: the first thread's array wins, later ones get it.
            res = self._allocations.setdefault(key, np.empty(shape, dtype))
        return res

    array.__name__ = original.__name__
    array.__qualname__ = original.__qualname__
    array.__doc__ = original.__doc__
    array.__module__ = __name__
    setattr(array, _MARK, True)
    array.original = original  # type: ignore[attr-defined]
    shared_cls.array = array
    return True


def _mismatch(original: Any, kernelapi: ModuleType) -> str | None:
    """Why the patch does not fit ``original`` (None when it does)."""
    if not callable(original):
        return "FakeCUDAShared has no array method"
    for name in ("np", "types", "numpy_support"):
        if not hasattr(kernelapi, name):
            return f"{kernelapi.__name__} has no {name!r}"
    try:
        parameters = tuple(inspect.signature(original).parameters)
        source = inspect.getsource(original)
    except (TypeError, ValueError, OSError) as exc:
        return f"cannot read FakeCUDAShared.array ({exc})"
    if parameters != _EXPECTED_PARAMETERS:
        return f"FakeCUDAShared.array takes {parameters}, expected {_EXPECTED_PARAMETERS}"
    missing = [fragment for fragment in _EXPECTED_SOURCE if fragment not in source]
    if missing:
        return f"FakeCUDAShared.array is not the expected code (no {missing[0]!r})"
    return None
