"""lstm_backends: fast LSTM layers outside PyTorch, one API over interchangeable backends.

>>> import numpy as np, lstm_backends as lb
>>> be = lb.get_backend("numpy")
>>> rng = np.random.default_rng(0)
>>> T, B, I, H = 4, 2, 3, 5
>>> params = lb.LSTMParams(*(rng.uniform(-0.5, 0.5, s).astype(np.float32)
...                          for s in [(4 * H, I), (4 * H, H), (4 * H,), (4 * H,)]))
>>> y, h_n, c_n = be.forward(rng.standard_normal((T, B, I), dtype=np.float32), params)
>>> y.shape, h_n.shape
((4, 2, 5), (2, 5))

Importing this package imports NumPy only; Numba and numba.cuda load when a
backend that needs them is first used, and the ``onnx`` package when
:mod:`lstm_backends.onnx` (ONNX models) is.  A backend plugin needs only the names
exported here: :class:`Backend`, :class:`Availability`, :class:`ForwardArgs`,
:class:`CellArgs`, :data:`CAPABILITIES` and, for training, :class:`TrainArgs`,
:class:`BackwardArgs`, :class:`Tape`, :class:`StackTape`, :class:`LSTMGrads` and
:data:`BACKWARD_FEATURES`.

The compiled backends compile each kernel on its first use and cache the machine code on disk:
:func:`warmup` (or ``lstm-backends warmup``) does it ahead of time.
"""

from __future__ import annotations

from . import layouts
from ._args import BACKWARD_FEATURES, CAPABILITIES, BackwardArgs, CellArgs, ForwardArgs, StackTape, Tape, TrainArgs
from ._errors import BackendUnavailableError, UnknownBackendError, UnsupportedFeatureError
from ._params import LSTMGrads, LSTMParams
from ._prepared import PRECISIONS, PreparedParams
from ._registry import (
    ENTRY_POINT_GROUP,
    BackendInfo,
    backends_with,
    get_backend,
    list_backends,
    register_backend,
    registered_backends,
    unregister_backend,
)
from ._warmup import warmup
from .backends._base import Availability, Backend
from .layer import LSTM

__all__ = [
    "BACKWARD_FEATURES",
    "CAPABILITIES",
    "ENTRY_POINT_GROUP",
    "LSTM",
    "Availability",
    "Backend",
    "BackendInfo",
    "BackendUnavailableError",
    "BackwardArgs",
    "CellArgs",
    "ForwardArgs",
    "LSTMGrads",
    "LSTMParams",
    "PRECISIONS",
    "PreparedParams",
    "StackTape",
    "Tape",
    "TrainArgs",
    "UnknownBackendError",
    "UnsupportedFeatureError",
    "__version__",
    "backends_with",
    "registered_backends",
    "get_backend",
    "layouts",
    "list_backends",
    "register_backend",
    "unregister_backend",
    "warmup",
]


def __getattr__(name: str):  # lazy: ``lb.testing``, ``lb.onnx``, ``__version__`` without their imports at start-up
    if name in ("testing", "onnx"):
        import importlib

        return importlib.import_module(f".{name}", __name__)
    if name == "__version__":  # importlib.metadata alone costs ~25 ms of import time
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("lstm-backends")
        except PackageNotFoundError:  # running from a source tree that is not installed
            return "0+unknown"
    raise AttributeError(f"module 'lstm_backends' has no attribute {name!r}")
