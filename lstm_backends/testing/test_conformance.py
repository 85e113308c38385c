"""The conformance suite as pytest tests (``pytest --pyargs lstm_backends.testing``)."""

from __future__ import annotations

import pytest

import lstm_backends as lb
from lstm_backends.testing.conformance import CHECKS, requirements


def test_conformance(lstm_backend_name: str, conformance_check: str) -> None:
    backend = lb.get_backend(lstm_backend_name)
    check = CHECKS[conformance_check]
    missing = sorted(requirements(check) - set(backend.capabilities))
    if missing:
        pytest.skip(f"{lstm_backend_name} lacks {', '.join(missing)}: check {conformance_check!r} does not apply")
    worst = check(backend)
    assert worst <= 1.0
