"""The backend registry: built-ins, user registrations and entry-point plugins.

Cheap to discover, lazy to load, helpful when it fails (after NetworkX's
dispatcher, xarray's engines and fsspec's registry):

* built-in backends are listed by dotted path; their modules import only NumPy and
  SciPy (the ``numpy`` reference uses ``scipy.special.expit``), and their
  ``is_available`` checks optional packages with ``importlib.util.find_spec``, so
  neither ``import lstm_backends`` nor :func:`list_backends` imports Numba;
* plugins are read from the entry-point group ``lstm_backends.backends`` on first
  use of the registry, loaded one by one, and a plugin that fails to load gives a
  ``RuntimeWarning`` naming it (and is listed unavailable) instead of breaking anything;
* only :class:`~lstm_backends.Backend` subclasses (or instances) are registered: anything
  else is a ``TypeError`` at registration, or, for a dotted path, when it is loaded;
* two plugins claiming one name give a ``RuntimeWarning`` naming both distributions
  (the first found is kept);
* unknown names and unavailable backends raise errors that list the known names or
  say what to install (the backend class's ``install_hint``: one hint per backend).
"""

from __future__ import annotations

import importlib
import threading
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple

from ._errors import BackendUnavailableError, UnknownBackendError
from .backends._base import Backend, set_backends_with

__all__ = [
    "ENTRY_POINT_GROUP",
    "BackendInfo",
    "backends_with",
    "registered_backends",
    "get_backend",
    "list_backends",
    "register_backend",
    "unregister_backend",
]

ENTRY_POINT_GROUP = "lstm_backends.backends"

_BUILTINS: dict[str, str] = {
    "numpy": "lstm_backends.backends.numpy_backend:NumpyBackend",
    "numba": "lstm_backends.backends.numba_backend:NumbaBackend",
    "cuda": "lstm_backends.backends.cuda_backend:CudaBackend",
}


@dataclass
class _Entry:
    name: str
    target: Any  # a Backend subclass, a Backend instance, or "module:Class"
    origin: str  # "builtin", "plugin" or "registered"
    install_hint: str = ""  # overrides the class's (register_backend), or says how to fix a broken plugin
    distribution: str = ""  # the package providing a plugin
    cls: type | None = None
    load_error: str | None = None
    instance: Any = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def target_name(self) -> str:
        t = self.target
        if isinstance(t, str):
            return t
        if not isinstance(t, type):
            t = type(t)
        return f"{t.__module__}:{t.__qualname__}"


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
    capabilities : tuple of str
        What it can do (sorted; see :data:`lstm_backends.CAPABILITIES`).
    url : str
        Where to read more.
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
    capabilities: tuple[str, ...] = ()
    url: str = ""


_lock = threading.RLock()
_entries: dict[str, _Entry] = {name: _Entry(name, path, "builtin") for name, path in _BUILTINS.items()}
_plugins_scanned = False


def entry_points(group: str) -> Any:
    """``importlib.metadata.entry_points(group=group)``, imported when first needed (~25 ms)."""
    from importlib.metadata import entry_points as _entry_points

    return _entry_points(group=group)


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
            dist = getattr(getattr(ep, "dist", None), "name", None) or ""
            if ep.name in _entries:
                other = _entries[ep.name]
                if other.origin == "builtin":
                    problem = "shadows a built-in backend and is ignored; rename it"
                elif other.origin == "plugin":
                    problem = (f"is also provided by the distribution {other.distribution or '?'!r} "
                               f"({other.target_name}), which is kept; uninstall one of the two or rename it")
                else:
                    continue  # a registration made before the first scan wins silently
                warnings.warn(
                    f"lstm_backends: plugin entry point {ep.name!r} = {ep.value!r} from the distribution "
                    f"{dist or '?'!r} {problem}",
                    RuntimeWarning,
                    stacklevel=3,
                )
                continue
            hint = f"reinstall or fix the package {dist!r}" if dist else ""
            _entries[ep.name] = _Entry(ep.name, ep.value, "plugin", hint, dist)


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


def _check_backend(obj: Any, what: str) -> None:
    """``TypeError`` unless ``obj`` is a Backend subclass or instance."""
    if isinstance(obj, Backend) or (isinstance(obj, type) and issubclass(obj, Backend)):
        return
    raise TypeError(
        f"{what} is not a backend: expected a subclass (or an instance) of lstm_backends.Backend, "
        f"got {obj!r} of type {type(obj).__name__}"
    )


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
            _check_backend(target, entry.target_name)
            if isinstance(target, type):
                entry.cls = target
            else:
                entry.cls = type(target)
                entry.instance = target
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


def backends_with(feature: str, *, training: bool = False) -> list[str]:
    """Names of the registered backends that declare ``feature`` in their capabilities.

    Plugins that fail to load are left out silently (listing them warns elsewhere).

    Parameters
    ----------
    feature : str
        One of :data:`lstm_backends.CAPABILITIES`.
    training : bool
        Only backends that can also train with it: capability ``backward`` and ``feature``
        in their ``backward_features`` (see :attr:`lstm_backends.Backend.backward_features`).

    Returns
    -------
    list of str
    """
    _scan_plugins()
    with _lock:
        entries = list(_entries.values())
    names = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for e in entries:
            cls = _load(e)
            if cls is None or feature not in getattr(cls, "capabilities", ()):
                continue
            if training and not ("backward" in cls.capabilities and feature in getattr(cls, "backward_features", ())):
                continue
            names.append(e.name)
    return names


set_backends_with(backends_with)  # the base class names alternatives through it, without importing this module


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
                capabilities=tuple(sorted(getattr(cls, "capabilities", ()))),
                url=getattr(cls, "url", "") or "",
            )
        )
    return rows


def _auto(requires: frozenset[str] = frozenset()) -> Any:
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
        if not requires <= set(getattr(e.cls, "capabilities", ())):
            continue
        if best is None or priority > best[0]:
            best = (priority, e)
    if best is None:  # cannot happen while numpy is registered, but say so clearly
        needs = f" with the capabilities {', '.join(sorted(requires))}" if requires else ""
        raise BackendUnavailableError(f"no backend{needs} is available for 'auto'")
    return get_backend(best[1].name)


def get_backend(name: Any = "auto", *, requires: Any = ()) -> Any:
    """Return a ready backend instance.

    Parameters
    ----------
    name : str or Backend
        A registered name, or ``"auto"`` for the available backend with the highest
        ``auto_priority`` — plugins included; among the built-ins ``cuda`` on a real GPU,
        then ``numba``, then ``numpy``.  A backend instance is returned as is.
    requires : iterable of str
        Capabilities the caller needs (see :data:`lstm_backends.CAPABILITIES`): ``auto``
        picks the fastest available backend that has them all; a named backend that
        lacks one raises :class:`~lstm_backends.UnsupportedFeatureError`.

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
    UnsupportedFeatureError
        The backend lacks a capability of ``requires``.
    """
    requires = frozenset(requires)
    if not isinstance(name, str):
        if isinstance(name, Backend):
            for feature in sorted(requires):
                name._require(feature)
            return name
        raise TypeError(f"backend must be a name or a Backend instance; got {type(name).__name__}")
    if name == "auto":
        return _auto(requires)
    instance = _named(name)
    for feature in sorted(requires):
        instance._require(feature)
    return instance


def _named(name: str) -> Any:
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


def register_backend(name: str, backend: Any, *, replace: bool = False, install_hint: str = "") -> None:
    """Register a backend under ``name``.

    Parameters
    ----------
    name : str
        Registry name.
    backend : Backend subclass, Backend instance, or str
        The class; an instance (then ``get_backend(name)`` returns that very instance); or a
        ``"module:Class"`` path imported on first use (and checked then).
    replace : bool
        Replace an existing registration of that name (built-ins included).
    install_hint : str
        What to tell users when the backend is unavailable, instead of the class's own
        ``install_hint``.

    Raises
    ------
    ValueError
        ``name`` is taken and ``replace`` is false, or ``name`` is empty/``"auto"``.
    TypeError
        ``backend`` is neither a :class:`~lstm_backends.Backend` subclass or instance nor a
        ``"module:Class"`` string.
    """
    if not isinstance(name, str) or not name or name == "auto":
        raise ValueError(f"backend name must be a non-empty string other than 'auto'; got {name!r}")
    if isinstance(backend, str):
        if ":" not in backend:
            raise ValueError(f"a dotted backend path must look like 'package.module:Class'; got {backend!r}")
    else:
        _check_backend(backend, f"register_backend({name!r}, ...)")
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


def registered_backends() -> Mapping[str, str]:
    """Read-only view ``{name: "module:Class"}`` of the registry (nothing is loaded).

    Returns
    -------
    Mapping of str to str
    """
    _scan_plugins()
    with _lock:
        return MappingProxyType({n: e.target_name for n, e in _entries.items()})
