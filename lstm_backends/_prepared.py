"""Prepared weights: ``Backend.prepare(params, precision=None)``'s immutable, opaque result."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._params import LSTMParams

__all__ = ["ACCURACY", "PRECISIONS", "PreparedParams", "validate_precision"]

#: The precision modes of ``Backend.prepare`` (``None``: the dtype's own arithmetic)
PRECISIONS: tuple[str, ...] = ("bf16", "bf16x3")
#: each mode's stated accuracy: max abs error against float64 (T <= 20 steps, PyTorch-initialised
#: weights), what the conformance suite and the ONNX comparisons hold a backend to
ACCURACY: dict[str, float] = {"bf16": 8e-3, "bf16x3": 1e-5}


def validate_precision(precision: Any) -> str | None:
    """``None`` or one of :data:`PRECISIONS`; anything else is a ``ValueError`` listing them."""
    if precision is None or (isinstance(precision, str) and precision in PRECISIONS):
        return precision
    raise ValueError(f"precision must be None or one of {', '.join(repr(p) for p in PRECISIONS)}; got {precision!r}")


@dataclass(frozen=True, eq=False)
class PreparedParams:
    """One layer's weights (one direction) prepared by a backend: see :meth:`Backend.prepare`.

    Accepted wherever ``params`` are (``forward``, ``cell``, ``forward_train``, ``forward_layers``).
    It holds its own read-only copies of the weights, converted to the backend's placement and
    dtype, plus whatever the backend packed once (``_data``, opaque): editing the arrays it was made
    from changes nothing.  Another backend accepts it too when it can read the arrays (same
    placement) and has the precision mode; only the backend that prepared it uses ``_data``.

    Attributes
    ----------
    backend : str
        Name of the backend that prepared it.
    precision : str or None
        ``"bf16"``, ``"bf16x3"`` or ``None`` (the dtype's own arithmetic).
    params : LSTMParams
        The read-only copies (``w_ih`` (4H, I), ``w_hh`` (4H, S), ``b_ih``, ``b_hh`` (4H,),
        ``w_hr`` (P, H) or None, ``w_peep`` (3, H) or None).
    dtype : numpy.dtype
    input_size, hidden_size, proj_size : int
        ``I``, ``H``, ``P`` (0 without a projection).
    """

    backend: str
    precision: str | None
    params: LSTMParams
    dtype: np.dtype
    input_size: int
    hidden_size: int
    proj_size: int = 0
    _owner: Any = field(default=None, repr=False)
    _data: Any = field(default=None, repr=False)

    def data_for(self, backend: Any) -> Any:
        """The packed data when ``backend`` is (an instance of) the class and configuration that
        prepared it, else ``None`` (then the backend reads ``params``)."""
        return self._data if self._owner is not None and self._owner == _owner_key(backend) else None

    def __repr__(self) -> str:
        p = f", P={self.proj_size}" if self.proj_size else ""
        return (f"PreparedParams(backend={self.backend!r}, precision={self.precision!r}, dtype={self.dtype.name}, "
                f"I={self.input_size}, H={self.hidden_size}{p})")


def _owner_key(backend: Any) -> Any:
    """What must match for a backend to use another instance's packed data: its class and its
    ``prepare_key`` (e.g. the GEMM choice that decides the packed layout)."""
    return (type(backend), getattr(backend, "prepare_key", lambda: None)())
