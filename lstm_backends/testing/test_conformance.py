"""The conformance suite as pytest tests (``pytest --pyargs lstm_backends.testing``)."""

from __future__ import annotations

import lstm_backends as lb
from lstm_backends.testing.conformance import CHECKS


def test_conformance(lstm_backend_name: str, conformance_check: str) -> None:
    backend = lb.get_backend(lstm_backend_name)
    worst = CHECKS[conformance_check](backend)
    assert worst <= 1.0
