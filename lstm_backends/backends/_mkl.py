"""Load MKL's packed GEMM (``cblas_?gemm_pack`` / ``cblas_?gemm_compute``) with the SEQUENTIAL
threading layer, for the ``numba`` backend's opt-in ``gemm="mkl"`` path (extra ``mkl``).

Recipe:

1. ``dlopen`` ``libmkl_rt`` with ``RTLD_LOCAL``, so none of MKL's BLAS symbols enter the global
   scope and interpose on another library's BLAS;
2. ``MKL_Set_Threading_Layer(MKL_THREADING_SEQUENTIAL)`` before any other MKL call, then check
   ``MKL_Get_Max_Threads() == 1``: if someone else loaded this same ``libmkl_rt`` first with
   another layer, the call cannot change it, and MKL is refused rather than running MKL threads
   inside our parallel regions (more busy threads than the budget);
3. register the functions under prefixed names with ``llvmlite.binding.add_symbol``; the
   kernels declare them as ``numba.types.ExternalFunction`` (resolved by name when the machine
   code is linked, also when it comes from Numba's cache, unlike a ctypes function object,
   which makes a function uncacheable).

Nothing here imports Numba until :func:`register` is called.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
from typing import Any

MKL_THREADING_SEQUENTIAL = 1

__all__ = ["available", "info", "load", "register"]

_lock = threading.Lock()
_state: dict[str, Any] = {}


def _candidates() -> list[str]:
    names = ("libmkl_rt.so.3", "libmkl_rt.so.2", "libmkl_rt.so", "mkl_rt.2.dll", "mkl_rt.dll", "libmkl_rt.dylib")
    found = []
    env = os.environ.get("LSTM_BACKENDS_MKL_RT")
    if env:
        found.append(env)
    for prefix in dict.fromkeys((sys.prefix, os.path.dirname(os.path.dirname(sys.executable)))):
        for sub in ("lib", os.path.join("Library", "bin")):
            for name in names:
                path = os.path.join(prefix, sub, name)
                if os.path.exists(path):
                    found.append(path)
    found.extend(names)  # the loader's search path
    return found


def load() -> Any:
    """The loaded MKL (a namespace of ctypes functions), or None; :func:`info` says why not."""
    with _lock:
        if "lib" in _state:
            return _state["lib"]
        lib, errors = None, []
        for path in _candidates():
            try:
                handle = ctypes.CDLL(path, mode=getattr(os, "RTLD_LOCAL", 0))
            except OSError as exc:
                errors.append(str(exc))
                continue
            try:
                set_layer = handle.MKL_Set_Threading_Layer
                set_layer.argtypes = [ctypes.c_int]
                set_layer.restype = ctypes.c_int
                got = set_layer(MKL_THREADING_SEQUENTIAL)
                get_max = handle.MKL_Get_Max_Threads
                get_max.restype = ctypes.c_int
                if got != MKL_THREADING_SEQUENTIAL or get_max() != 1:
                    errors.insert(0, f"{path}: MKL was already initialised with a threaded layer by another library "
                                     f"(layer {got}, {get_max()} threads); refusing to run MKL threads inside our "
                                     "parallel regions")
                    break
                lib = _bind(handle, path)
            except AttributeError as exc:
                errors.insert(0, f"{path}: {exc}")
                continue
            break
        _state["lib"] = lib
        _state["error"] = "" if lib else (errors[0] if errors else "libmkl_rt not found (pip install mkl)")
        return lib


def available() -> bool:
    return load() is not None


def info() -> str:
    """One line: the MKL version in use, or why MKL cannot be used."""
    lib = load()
    if lib is None:
        return str(_state["error"])
    import re

    found = re.search(r"Version (\S+)", lib.version)
    return f"MKL {found.group(1) if found else lib.version} (sequential) from {lib.path}"


class _Mkl:
    path: str
    version: str


def _bind(handle: Any, path: str) -> _Mkl:
    c_int, vp = ctypes.c_int, ctypes.c_void_p
    ns = _Mkl()
    ns.path = path
    ns.functions = {}
    for p, real in (("s", ctypes.c_float), ("d", ctypes.c_double)):
        size = getattr(handle, f"cblas_{p}gemm_pack_get_size")
        size.argtypes = [c_int, c_int, c_int, c_int]
        size.restype = ctypes.c_size_t
        pack = getattr(handle, f"cblas_{p}gemm_pack")
        pack.argtypes = [c_int, c_int, c_int, c_int, c_int, c_int, real, vp, c_int, vp]
        pack.restype = None
        compute = getattr(handle, f"cblas_{p}gemm_compute")
        compute.argtypes = [c_int, c_int, c_int, c_int, c_int, c_int, vp, c_int, vp, c_int, real, vp, c_int]
        compute.restype = None
        ns.functions[f"{p}pack_get_size"] = size
        ns.functions[f"{p}pack"] = pack
        ns.functions[f"{p}compute"] = compute
    version = handle.MKL_Get_Version_String
    version.argtypes = [ctypes.c_char_p, ctypes.c_int]
    buf = ctypes.create_string_buffer(256)
    version(buf, 256)
    ns.version = buf.value.decode(errors="replace").strip()
    return ns


def register() -> bool:
    """Register MKL's functions for the kernels (``lstmb_<name>`` symbols); False when unavailable."""
    lib = load()
    if lib is None:
        return False
    with _lock:
        if not _state.get("registered"):
            import llvmlite.binding as llb

            for name, fn in lib.functions.items():
                llb.add_symbol(f"lstmb_{name}", ctypes.cast(fn, ctypes.c_void_p).value)
            _state["registered"] = True
    return True
