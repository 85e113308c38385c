import os

import pytest


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", default=False, help="run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-slow") or os.environ.get("LSTM_BACKENDS_RUN_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow: opt in with --run-slow or LSTM_BACKENDS_RUN_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
