"""The first-use notice of the numba backend's kernels: when a call (a backend call, or
``lstm_backends.jit.prepare``) makes this process compile kernels rather than load them from the
cache, the ``lstm_backends`` logger says so once per kernel family and dtype; the first notice also
says where the cache lives and how to warm it up.  ``quietly`` runs ``warmup``'s steps without it."""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np

__all__ = ["cache_dir", "quietly", "watched"]

_log = logging.getLogger("lstm_backends")
_FIRST_USE: set = set()   # (kernels, dtype) whose first call started in this process (not dtype.name: slow)
_TOLD: set = set()        # (kernels, dtype name) whose compilation the user was told of
_quiet = threading.local()   # .on while warmup() runs: it says what it compiles itself


def cache_dir() -> str | None:
    """Where Numba keeps the numba backend's compiled kernels (``None``: caching is off).

    Imports the kernels (compiling nothing).  ``NUMBA_CACHE_DIR`` moves it; by default it is the
    ``__pycache__`` folder beside the kernel sources, or Numba's user-wide cache folder when that
    one is not writable.
    """
    from . import _numba as k

    cache = getattr(k.forward_entry, "_cache", None)
    return getattr(cache, "cache_path", None) if k.CACHE else None


def _tell_compiling(what: str, dtype: str) -> None:
    """As kernels start compiling in this process: which; the first time also where they are cached
    and how to avoid it (one line each)."""
    key = (what, dtype)
    if key in _TOLD or getattr(_quiet, "on", False):
        return
    _TOLD.add(key)
    if len(_TOLD) > 1:
        _log.warning("lstm_backends: compiling the numba backend's %s kernels for %s (first use only)", what, dtype)
        return
    where = cache_dir()
    _log.warning(
        "lstm_backends: compiling the numba backend's %s kernels for %s (first use only: %s). Compile them all "
        "ahead of time with `lstm-backends warmup --training`; silence this with "
        "logging.getLogger('lstm_backends').setLevel(logging.ERROR)", what, dtype,
        f"cached in {where}" if where else "caching is off, every process compiles again")


def watched(key: tuple[str, np.dtype], run: Any, *args: Any) -> Any:
    """``run(*args)``; on the first call of the kernels ``key = (what, dtype)`` in this process, watching
    Numba's compiler events: when this thread compiles one of the package's kernels (rather than
    loading it from the cache), the user is told (see :func:`_tell_compiling`)."""
    if key in _FIRST_USE:
        return run(*args)
    _FIRST_USE.add(key)
    import numba  # noqa: F401 -- the whole package first (see _numba/_jit.py: submodules while another thread initialises it)
    from numba.core import event

    what, dtype = key
    me = threading.get_ident()

    class _Watch(event.Listener):
        def on_start(self, ev: Any) -> None:
            if threading.get_ident() == me and str(ev.data.get("module", "")).startswith(_KERNEL_MODULES):
                _tell_compiling(what, dtype.name)

        def on_end(self, ev: Any) -> None:
            pass

    with event.install_listener("numba:run_pass", _Watch()):
        return run(*args)


_KERNEL_MODULES = "lstm_backends.backends._numba"


def quietly(run: Any) -> None:
    """``run()`` without the first-use notice (warmup says what it compiles itself)."""
    _quiet.on = True
    try:
        run()
    finally:
        _quiet.on = False
