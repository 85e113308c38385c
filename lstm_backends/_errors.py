"""Exceptions of the registry and of the backend protocol."""

from __future__ import annotations

__all__ = ["BackendUnavailableError", "UnknownBackendError", "UnsupportedFeatureError"]


class UnknownBackendError(KeyError, ValueError):
    """No backend of that name is known (neither built in, registered, nor a plugin)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class BackendUnavailableError(RuntimeError):
    """The backend is known but cannot run here; the message says why and how to fix it."""


class UnsupportedFeatureError(NotImplementedError):
    """The backend lacks a capability the call needs (see ``Backend.capabilities``); the
    message names the feature, the backend, and the backends that have it."""
