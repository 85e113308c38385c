import os

import pytest


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", default=False, help="run tests marked slow")


def pytest_configure(config):
    # A pytest process run under the CUDA simulator (NUMBA_ENABLE_CUDASIM=1): close the race in its
    # shared arrays (docs/upstream/numba-cuda-shared-array-race.md).  Simulator subprocesses install
    # the same patch themselves (SIMULATOR_PRELUDE).  With the race closed, threads switch every
    # 0.1 ms (switch_fast: ~4x faster simulated kernels).  Does nothing otherwise.
    from lstm_backends.testing._cudasim_patch import install, simulator_enabled, switch_fast

    if simulator_enabled() and install():
        switch_fast()


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-slow") or os.environ.get("LSTM_BACKENDS_RUN_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow: opt in with --run-slow or LSTM_BACKENDS_RUN_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
