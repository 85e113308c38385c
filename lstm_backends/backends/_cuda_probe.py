"""Find out whether a CUDA GPU can be used, without importing Numba or numba.cuda.

The driver library is asked directly through ``ctypes`` (``cuInit``,
``cuDeviceGetCount``, ``cuDeviceGetName``), so ``list_backends()`` can report the
real reason a GPU is unusable while staying cheap and import-free.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os

__all__ = ["cuda_device_report", "cuda_driver_status", "simulator_enabled"]


def simulator_enabled() -> bool:
    """Whether Numba's CUDA simulator is switched on (``NUMBA_ENABLE_CUDASIM=1``)."""
    return os.environ.get("NUMBA_ENABLE_CUDASIM", "0").strip() not in ("", "0")


def _load_driver() -> ctypes.CDLL:
    names = ["libcuda.so.1", "libcuda.so", ctypes.util.find_library("cuda"), "nvcuda.dll"]
    errors = []
    for name in names:
        if not name:
            continue
        try:
            return ctypes.CDLL(name)
        except OSError as exc:
            errors.append(str(exc))
    raise OSError("; ".join(errors) or "libcuda not found")


@functools.lru_cache(maxsize=1)
def cuda_driver_status() -> tuple[bool, str]:
    """``(usable, description)`` of the first CUDA device, or why there is none.

    Returns
    -------
    usable : bool
    description : str
        Device name and compute capability, or the driver's reason.
    """
    try:
        lib = _load_driver()
    except OSError as exc:
        return False, f"no NVIDIA driver found (could not load libcuda: {exc.__class__.__name__})"

    def err_name(code: int) -> str:
        name = ctypes.c_char_p()
        try:
            lib.cuGetErrorName(code, ctypes.byref(name))
            return (name.value or b"").decode() or str(code)
        except Exception:  # noqa: BLE001
            return str(code)

    rc = lib.cuInit(0)
    if rc != 0:
        return False, f"the CUDA driver failed to initialise: cuInit returned {err_name(rc)} ({rc})"
    count = ctypes.c_int(0)
    rc = lib.cuDeviceGetCount(ctypes.byref(count))
    if rc != 0 or count.value == 0:
        return False, f"no CUDA device visible (cuDeviceGetCount: {err_name(rc)}, count {count.value})"
    dev = ctypes.c_int(0)
    lib.cuDeviceGet(ctypes.byref(dev), 0)
    buf = ctypes.create_string_buffer(256)
    lib.cuDeviceGetName(buf, 256, dev)
    major, minor = ctypes.c_int(0), ctypes.c_int(0)
    lib.cuDeviceGetAttribute(ctypes.byref(major), 75, dev)  # COMPUTE_CAPABILITY_MAJOR
    lib.cuDeviceGetAttribute(ctypes.byref(minor), 76, dev)  # COMPUTE_CAPABILITY_MINOR
    version = ctypes.c_int(0)
    lib.cuDriverGetVersion(ctypes.byref(version))
    v = version.value
    return True, (
        f"{buf.value.decode(errors='replace')} (sm_{major.value}{minor.value}), "
        f"{count.value} device(s), driver CUDA {v // 1000}.{(v % 1000) // 10}"
    )


def cuda_device_report() -> str:
    """One line on the CUDA situation for ``lstm-backends info``."""
    if simulator_enabled():
        return "Numba CUDA simulator enabled (NUMBA_ENABLE_CUDASIM=1): no real GPU is used"
    ok, text = cuda_driver_status()
    return text if ok else f"none: {text}"
