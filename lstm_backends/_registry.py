"""The backend registry: built-ins, user registrations and entry-point plugins.

Cheap to discover, lazy to load, helpful when it fails (after NetworkX's
dispatcher, xarray's engines and fsspec's registry):

* built-in backends are listed by dotted path; their modules import only NumPy,
  and their ``is_available`` checks optional packages with ``importlib.util.find_spec``,
  so neither ``import lstm_backends`` nor :func:`list_backends` imports Numba;
* plugins are read from the entry-point group ``lstm_backends.backends`` on first
  use of the registry, loaded one by one, and a plugin that fails to load gives a
  ``RuntimeWarning`` naming it (and is listed unavailable) instead of breaking anything;
* unknown names and unavailable backends raise errors that list the known names or
  say what to install.
"""

from __future__ import annotations

import importlib
import threading
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from types import MappingProxyType
from typing import Any, NamedTuple

from ._errors import BackendUnavailableError, UnknownBackendError

__all__ = [
    "ENTRY_POINT_GROUP",
    "BackendInfo",
    "registered_backends",
    "get_backend",
    "list_backends",
    "register_backend",
    "unregister_backend",
]

ENTRY_POINT_GROUP = "lstm_backends.backends"

_BUILTINS: dict[str, tuple[str, str]] = {
    # name: (dotted path, what to do when unavailable)
    "numpy": ("lstm_backends.backends.numpy_backend:NumpyBackend", ""),
    "numba": ("lstm_backends.backends.numba_backend:NumbaBackend", 'pip install "lstm-backends" (installs numba)'),
    "cuda": ("lstm_backends.backends.cuda_backend:CudaBackend", ""),
}


@dataclass
class _Entry:
    name: str
    target: Any  # a class, or "module:Class"
    origin: str  # "builtin", "plugin" or "registered"
    install_hint: str = ""
    cls: type | None = None
    load_error: str | None = None
    instance: Any = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def target_name(self) -> str:
        t = self.target
        return t if isinstance(t, str) else f"{t.__module__}:{t.__qualname__}"


class BackendInfo(NamedTuple):
    """One row of :func:`list_backends`.

    Attributes
    ----------
    name : str
    available : bool
    reason : str
        Why it is unavailable (or a note, e.g. "simulated"); empty when nothing to say.
    description : str
    dtypes : tuple of str
    version : str
    origin : str
        ``"builtin"``, ``"plugin"`` (entry point) or ``"registered"`` (:func:`register_backend`).
    target : str
        ``"module:Class"`` implementing it.
    install_hint : str
        What to do to make it available.
    """

    name: str
    available: bool
    reason: str
    description: str
    dtypes: tuple[str, ...]
    version: str
    origin: str
    target: str
    install_hint: str


_lock = threading.RLock()
_entries: dict[str, _Entry] = {
    name: _Entry(name, path, "builtin", hint) for name, (path, hint) in _BUILTINS.items()
}
_plugins_scanned = False


def _scan_plugins() -> None:
    """Add entry-point plugins to the registry (names only; nothing is imported)."""
    global _plugins_scanned
    with _lock:
        if _plugins_scanned:
            return
        _plugins_scanned = True
        try:
            eps = list(entry_points(group=ENTRY_POINT_GROUP))
        except Exception as exc:  # a broken metadata directory must not break us
            warnings.warn(
                f"lstm_backends: could not read the {ENTRY_POINT_GROUP!r} entry points: {exc!r}",
                RuntimeWarning,
                stacklevel=3,
            )
            return
        for ep in eps:
            if ep.name in _entries:
                if _entries[ep.name].origin == "builtin":
                    warnings.warn(
                        f"lstm_backends: plugin entry point {ep.name!r} = {ep.value!r} "
                        "shadows a built-in backend and is ignored; rename it",
                        RuntimeWarning,
                        stacklevel=3,
                    )
                continue
            dist = getattr(getattr(ep, "dist", None), "name", None)
            hint = f"reinstall or fix the package {dist!r}" if dist else ""
            _entries[ep.name] = _Entry(ep.name, ep.value, "plugin", hint)


def _entry(name: str) -> _Entry:
    _scan_plugins()
    with _lock:
        if name not in _entries:
            known = ", ".join(sorted(_entries))
            raise UnknownBackendError(
                f"unknown backend {name!r}; known backends: {known} (and 'auto'). Third-party "
                f"backends register through the entry-point group {ENTRY_POINT_GROUP!r} "
                "or lstm_backends.register_backend()"
            )
        return _entries[name]


def _load(entry: _Entry) -> type | None:
    """Import the class behind an entry once; warn (plugins) and return None on failure."""
    with entry.lock:
        if entry.cls is not None or entry.load_error is not None:
            return entry.cls
        try:
            target = entry.target
            if isinstance(target, str):
                module_name, _, attr = target.partition(":")
                obj: Any = importlib.import_module(module_name)
                for part in attr.split(".") if attr else []:
                    obj = getattr(obj, part)
                target = obj
            missing = [m for m in ("forward", "cell", "is_available") if not callable(getattr(target, m, None))]
            if not isinstance(target, type) or missing:
                raise TypeError(
                    f"{entry.target_name} is not a backend class"
                    + (f" (missing {', '.join(missing)})" if missing else "")
                )
            entry.cls = target
        except Exception as exc:
            entry.load_error = f"failed to load {entry.target_name}: {type(exc).__name__}: {exc}"
            if entry.origin != "builtin":
                warnings.warn(
                    f"lstm_backends: backend plugin {entry.name!r} {entry.load_error}",
                    RuntimeWarning,
                    stacklevel=4,
                )
        return entry.cls


def _availability(entry: _Entry) -> tuple[bool, str]:
    cls = _load(entry)
    if cls is None:
        return False, entry.load_error or "failed to load"
    try:
        avail = cls.is_available()
    except Exception as exc:
        return False, f"is_available() raised {type(exc).__name__}: {exc}"
    if isinstance(avail, tuple):
        return bool(avail[0]), str(avail[1]) if len(avail) > 1 else ""
    return bool(avail), ""


def _install_hint(entry: _Entry) -> str:
    cls = entry.cls
    return entry.install_hint or (getattr(cls, "install_hint", "") if cls is not None else "")


def list_backends() -> list[BackendInfo]:
    """Every known backend, built-in and plugin, with whether it can run here.

    Imports no optional heavy package (Numba, numba.cuda): availability is
    checked without importing them.  Plugins are imported to ask them.

    Returns
    -------
    list of BackendInfo
        In registration order: built-ins first, then plugins and registrations.

    Examples
    --------
    >>> import lstm_backends as lb
    >>> [b.name for b in lb.list_backends() if b.name == "numpy"]
    ['numpy']
    """
    _scan_plugins()
    with _lock:
        entries = list(_entries.values())
    rows = []
    for e in entries:
        available, reason = _availability(e)
        cls = e.cls
        version = ""
        if cls is not None:
            try:
                version = str(cls.version()) if callable(getattr(cls, "version", None)) else ""
            except Exception:
                version = ""
        rows.append(
            BackendInfo(
                name=e.name,
                available=available,
                reason=reason,
                description=getattr(cls, "description", "") or "",
                dtypes=tuple(str(d) for d in getattr(cls, "dtypes", ())),
                version=version,
                origin=e.origin,
                target=e.target_name,
                install_hint=_install_hint(e),
            )
        )
    return rows


def _auto() -> Any:
    _scan_plugins()
    with _lock:
        entries = list(_entries.values())
    best = None
    for e in entries:
        available, _ = _availability(e)
        if not available:
            continue
        priority = getattr(e.cls, "auto_priority", None)
        eligible = getattr(e.cls, "auto_eligible", None)
        if priority is None or (callable(eligible) and not eligible()):
            continue
        if best is None or priority > best[0]:
            best = (priority, e)
    if best is None:  # cannot happen while numpy is registered, but say so clearly
        raise BackendUnavailableError("no backend is available for 'auto'")
    return get_backend(best[1].name)


def get_backend(name: Any = "auto") -> Any:
    """Return a ready backend instance.

    Parameters
    ----------
    name : str or Backend
        A registered name, or ``"auto"`` for the fastest available built-in
        (``cuda`` on a real GPU, then ``numba``, then ``numpy``).  A backend
        instance is returned as is.

    Returns
    -------
    Backend
        One shared instance per name; backends keep no per-call state.

    Raises
    ------
    UnknownBackendError
        No backend of that name; the message lists the known ones.
    BackendUnavailableError
        Known but unavailable here; the message says why and how to fix it.
    """
    if not isinstance(name, str):
        if callable(getattr(name, "forward", None)):
            return name
        raise TypeError(f"backend must be a name or a backend instance; got {type(name).__name__}")
    if name == "auto":
        return _auto()
    entry = _entry(name)
    available, reason = _availability(entry)
    if not available:
        hint = _install_hint(entry)
        raise BackendUnavailableError(
            f"backend {name!r} is not available here: {reason}"
            + (f". To fix: {hint}" if hint else "")
        )
    with entry.lock:
        if entry.instance is None:
            assert entry.cls is not None
            entry.instance = entry.cls()
        return entry.instance


def register_backend(name: str, backend: type | str, *, replace: bool = False, install_hint: str = "") -> None:
    """Register a backend class under ``name``.

    Parameters
    ----------
    name : str
        Registry name.
    backend : type or str
        The class, or a ``"module:Class"`` path imported on first use.
    replace : bool
        Replace an existing registration of that name (built-ins included).
    install_hint : str
        What to tell users when the backend is unavailable.

    Raises
    ------
    ValueError
        ``name`` is taken and ``replace`` is false, or ``name`` is empty/``"auto"``.
    """
    if not isinstance(name, str) or not name or name == "auto":
        raise ValueError(f"backend name must be a non-empty string other than 'auto'; got {name!r}")
    if not isinstance(backend, (type, str)):
        raise TypeError(f"backend must be a class or a 'module:Class' string; got {type(backend).__name__}")
    _scan_plugins()
    with _lock:
        if name in _entries and not replace:
            raise ValueError(
                f"a backend named {name!r} is already registered ({_entries[name].target_name}); "
                "pass replace=True to replace it"
            )
        _entries[name] = _Entry(name, backend, "registered", install_hint)


def unregister_backend(name: str) -> None:
    """Remove a registration (built-in, plugin or user) by name.

    Raises
    ------
    UnknownBackendError
    """
    _entry(name)
    with _lock:
        del _entries[name]


def _restore_builtin(name: str) -> None:
    """Put a built-in back (tests use this after replacing one)."""
    with _lock:
        path, hint = _BUILTINS[name]
        _entries[name] = _Entry(name, path, "builtin", hint)


def registered_backends() -> Mapping[str, str]:
    """Read-only view ``{name: "module:Class"}`` of the registry (nothing is loaded).

    Returns
    -------
    Mapping of str to str
    """
    _scan_plugins()
    with _lock:
        return MappingProxyType({n: e.target_name for n, e in _entries.items()})
