"""Built-in backends and the base class plugins derive from."""

from ._base import Availability, Backend

__all__ = ["Availability", "Backend"]
