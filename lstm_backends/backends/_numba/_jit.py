"""The jit options of every kernel, and the cache rule that makes many files safe.

Numba's ``cache=True`` keys a cached function on the source stamp of its *own* file (a sha256
of that file, ``numba.core.caching._SourceFileBackedLocatorMixin``) and the bytecode of the
function itself.  A kernel here is built from jitted helpers and IR generators in several files
of this package, so an edit of, say, ``nonlinear.py`` changes the machine code of
``forward._worker`` without changing ``forward.py``: Numba would load stale code (numba issue
1833).

The rule: every cached function of this package is located by :class:`PackageStampLocator`,
whose source stamp is the sha256 of *all* the ``.py`` files of the package (names and
contents).  Any edit anywhere in the package, or an upgrade, changes the stamp of every kernel,
Numba finds the old index stale and recompiles.  The cache files themselves stay where Numba
would put them (``NUMBA_CACHE_DIR``, ``__pycache__`` beside the sources, or the user-wide
cache).

The locator uses Numba internals (``numba.core.caching.CacheImpl._locator_classes``).  It
fails *closed*: when those internals are missing, or the user set
``NUMBA_CACHE_LOCATOR_CLASSES`` (then Numba ignores the list this rule is installed in), the
kernels compile without an on-disk cache and a :class:`CacheDisabledWarning` says why.
"""

from __future__ import annotations

import functools
import hashlib
import os
import threading
import warnings
from typing import Any

import numpy as np

__all__ = ["CACHE", "CacheDisabledWarning", "PackageStampLocator", "callback", "package_stamp"]

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


class CacheDisabledWarning(UserWarning):
    """The numba backend's kernels compile without Numba's on-disk cache (the reason is given)."""


@functools.cache
def package_stamp() -> str:
    """The sha256 (hex) of every ``.py`` file of this package, names and contents, in name order.

    Returns
    -------
    str
        Computed once per process (an edit during a process changes nothing in it: its kernels
        are already compiled).
    """
    digest = hashlib.sha256()
    for name in sorted(os.listdir(_PACKAGE_DIR)):
        if name.endswith(".py"):
            digest.update(name.encode() + b"\0")
            with open(os.path.join(_PACKAGE_DIR, name), "rb") as f:
                digest.update(f.read())
            digest.update(b"\0")
    return digest.hexdigest()


def _in_package(py_file: str) -> bool:
    return os.path.dirname(os.path.abspath(py_file)) == _PACKAGE_DIR


try:
    # the whole package first: a thread that imports numba.core.* while another thread initialises
    # numba can be handed half-initialised modules (Python's import locks do not wait for a parent)
    import numba  # noqa: F401
    from numba.core import caching as _caching
    from numba.core import config as _config
except ImportError:  # pragma: no cover - numba without its caching module
    _caching = _config = None

_LocatorBase: Any = getattr(_caching, "_CacheLocator", object)
_asking = threading.local()   # .on while PackageStampLocator asks the other locators


class PackageStampLocator(_LocatorBase):
    """Numba's own choice of locator for a function of this package (``NUMBA_CACHE_DIR``,
    ``__pycache__``, user-wide, ...), with :func:`package_stamp` as its source stamp."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    @classmethod
    def from_function(cls, py_func: Any, py_file: str) -> Any:
        if not _in_package(py_file) or getattr(_asking, "on", False):
            return None   # (also when another wrapping locator asks the list again: no endless recursion)
        _asking.on = True
        try:
            for other in _caching.CacheImpl._locator_classes:
                if other is not cls:
                    inner = other.from_function(py_func, py_file)
                    if inner is not None:
                        return cls(inner)
            return None
        finally:
            _asking.on = False

    def ensure_cache_path(self) -> None:
        self._inner.ensure_cache_path()

    def get_cache_path(self) -> str:
        return self._inner.get_cache_path()

    def get_disambiguator(self) -> str:
        return self._inner.get_disambiguator()

    def get_source_stamp(self) -> Any:
        return ("lstm_backends._numba", package_stamp())


def _install() -> tuple[bool, str]:
    """Put :class:`PackageStampLocator` first in Numba's locator list: (installed, why not)."""
    if _caching is None:  # pragma: no cover
        return False, "numba.core.caching cannot be imported"
    if os.environ.get("NUMBA_CACHE_LOCATOR_CLASSES") or getattr(_config, "CACHE_LOCATOR_CLASSES", ""):
        return False, ("NUMBA_CACHE_LOCATOR_CLASSES is set, so Numba would not use the package-wide source stamp "
                       "that keeps these kernels' cache fresh")
    classes = getattr(getattr(_caching, "CacheImpl", None), "_locator_classes", None)
    if (_LocatorBase is object or not isinstance(classes, list)
            or not all(hasattr(c, "from_function") for c in classes)):
        return False, ("this Numba version's cache internals (CacheImpl._locator_classes, _CacheLocator) differ "
                       "from what the package-wide source stamp needs")
    if PackageStampLocator not in classes:
        classes.insert(0, PackageStampLocator)
    return True, ""


CACHE, _WHY_NOT = _install()
if not CACHE:
    warnings.warn(f"lstm_backends: the numba kernels compile without an on-disk cache: {_WHY_NOT}",
                  CacheDisabledWarning, stacklevel=2)

#: the options of every jitted kernel function
_JIT = {"cache": CACHE, "error_model": "numpy", "nogil": True}


_CALLBACKS: dict = {}
_CALLBACKS_LOCK = threading.Lock()


def callback(dtype: Any, kind: str, fn: Any) -> Any:
    """``fn`` as a C callback ``void(dtype zero, int64 p, int64 argp)`` (a worker, or a step of
    ``lstm_backends.jit``), compiled or loaded from Numba's cache on first use (once, whatever the
    threads asking), kept under ``(dtype, kind)`` (the dtype itself: numpy's ``dtype.name`` costs
    microseconds on a streaming call).  Its ``.address`` is what the entries call."""
    key = (np.dtype(dtype), kind)
    cf = _CALLBACKS.get(key)
    if cf is None:
        with _CALLBACKS_LOCK:
            cf = _CALLBACKS.get(key)
            if cf is None:
                from numba import cfunc, types

                ft = types.float32 if key[0] == np.float32 else types.float64
                cf = cfunc(types.void(ft, types.int64, types.int64), cache=CACHE, error_model="numpy")(fn)
                _CALLBACKS[key] = cf
    return cf
