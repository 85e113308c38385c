"""pytest plugin (entry point ``pytest11``): choose which backends the conformance tests run on.

``--lstm-backend NAME`` (repeatable) or the environment variable
``LSTM_BACKENDS_TEST_BACKEND=NAME[,NAME]`` narrows the run; by default every
known backend is parametrized and unavailable ones are reported as skipped with
their reason.  A backend whose ``test_variants()`` names internal paths it can force is
also run as ``NAME[label]`` for each (the parameter is then a backend instance, which
``get_backend`` and ``LSTM(backend=...)`` accept).  Tests ask for the ``lstm_backend_name``
and ``conformance_check`` parameters.  This module imports nothing heavy.
"""

from __future__ import annotations

import os

import pytest

ENV_VAR = "LSTM_BACKENDS_TEST_BACKEND"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("lstm_backends")
    group.addoption(
        "--lstm-backend",
        action="append",
        default=None,
        metavar="NAME",
        help=f"run lstm_backends conformance tests on this backend only (repeatable; env {ENV_VAR})",
    )


def selected_backends(config: pytest.Config) -> list[tuple[str, str | None]]:
    """``(name, skip_reason)`` pairs for the backends to test."""
    import lstm_backends as lb

    names = config.getoption("--lstm-backend", default=None)
    if not names and os.environ.get(ENV_VAR):
        names = [n.strip() for n in os.environ[ENV_VAR].split(",") if n.strip()]
    if names:
        # Explicitly requested: an unavailable one must fail loudly, not skip.
        return [(n, None) for n in names]
    return [(b.name, None if b.available else f"{b.name} unavailable: {b.reason}") for b in lb.list_backends()]


def _variants(name: str) -> list:
    """``(label, instance)`` for each path the backend's ``test_variants()`` can force."""
    import lstm_backends as lb

    backend = lb.get_backend(name)
    cls = type(backend)
    return [(label, cls(**kwargs)) for label, kwargs in cls.test_variants().items()]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "lstm_backend_name" in metafunc.fixturenames:
        params = []
        for name, reason in selected_backends(metafunc.config):
            params.append(pytest.param(name, id=name, marks=[pytest.mark.skip(reason=reason)] if reason else []))
            if reason is None:
                try:
                    variants = _variants(name)
                except Exception:  # noqa: BLE001 - unavailable: the plain parameter fails loudly
                    variants = []
                # a variant is a backend instance: get_backend() and LSTM(backend=...) take it as is
                params += [pytest.param(inst, id=f"{name}[{label}]") for label, inst in variants]
        metafunc.parametrize("lstm_backend_name", params)
    if "conformance_check" in metafunc.fixturenames:
        from lstm_backends.testing.conformance import CHECKS

        metafunc.parametrize("conformance_check", list(CHECKS))
