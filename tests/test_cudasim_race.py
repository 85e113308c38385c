"""The CUDA simulator's shared-array race, and the test-only patch for it.

``FakeCUDAShared.array`` in numba-cuda's simulator gets, allocates and stores a block's
shared array in three steps, so two Python threads of one block can each make their own
"shared" tile (``docs/upstream/numba-cuda-shared-array-race.md``).  The test suite installs
``lstm_backends.testing._cudasim_patch`` in every simulator run; these tests show that it
closes the race and keeps the simulator's semantics.  Run with
``LSTM_BACKENDS_CUDASIM_UNPATCHED=1`` to see the unpatched simulator fail.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings
from types import ModuleType

import numpy as np
import pytest

from lstm_backends.testing import _cudasim_patch

pytest.importorskip("numba_cuda", reason='needs the cuda extra: pip install "lstm-backends[cuda]"')

RACE_CODE = """
import sys
import time

import numpy as np
from numba import cuda, float64
from numba.cuda.simulator import kernelapi

import lstm_backends.testing._cudasim_patch as patch

THREADS = 32
NATURAL, WIDENED = (int(arg) for arg in sys.argv[1:3])


@cuda.jit
def kernel(out):
    i = cuda.threadIdx.x
    n = cuda.blockDim.x
    cuda.syncthreads()  # the threads of the block reach the allocations together
    up = cuda.shared.array(THREADS, np.float64)
    down = cuda.shared.array(THREADS, float64)  # a Numba type, and a second call site
    dynamic = cuda.shared.array(0, float64)  # dynamic shared memory: not keyed by call site
    up[i] = i
    down[i] = -i
    dynamic[i] = 2 * i
    cuda.syncthreads()
    j = (i + 1) % n
    out[0, i] = up[j]
    out[1, i] = down[j]
    out[2, i] = dynamic[j]


def launches(count):
    expected = np.arange(1, THREADS + 1) % THREADS * np.array([[1.0], [-1.0], [2.0]])
    wrong = 0
    for _ in range(count):
        out = np.full((3, THREADS), np.nan)
        kernel[1, THREADS, 0, 8 * THREADS](out)
        wrong += not np.array_equal(out, expected)
    return wrong


class SlowMissDict(dict):
    # A thread that finds no array for its call site is descheduled right there: the race
    # window of the unpatched simulator held open, so the race shows on every launch.
    def get(self, key, default=None):
        value = dict.get(self, key, default)
        if value is None:
            time.sleep(0.002)
        return value


old_interval = sys.getswitchinterval()
sys.setswitchinterval(1e-6)  # switch threads as often as CPython can: the condition of the flake
try:
    natural = launches(NATURAL)
    init = kernelapi.FakeCUDAShared.__init__

    def slow_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self._allocations = SlowMissDict()

    kernelapi.FakeCUDAShared.__init__ = slow_init
    widened = launches(WIDENED)
finally:
    sys.setswitchinterval(old_interval)
print("PATCHED", patch.is_installed())
print("INTERVAL", old_interval)   # what the prelude left: the short one only where the patch is in
print("WRONG", natural, NATURAL, widened, WIDENED)
"""


def _run_race(natural: int, widened: int, **env_extra: str) -> tuple[bool, int, int, float]:
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", **env_extra)
    code = _cudasim_patch.SIMULATOR_PRELUDE + textwrap.dedent(RACE_CODE)
    res = subprocess.run([sys.executable, "-c", code, str(natural), str(widened)], capture_output=True, text=True,
                         env=env, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in res.stdout.strip().splitlines())
    wrong = [int(n) for n in lines["WRONG"].split()]
    return lines["PATCHED"] == "True", wrong[0], wrong[2], float(lines["INTERVAL"])


@pytest.mark.cudasim
def test_simulator_shared_array_is_shared_by_the_whole_block():
    """Every thread of a block sees one array per ``cuda.shared.array`` call site, at the
    shortest switch interval: with the patch, no launch is wrong; without it, every launch of
    the widened-window phase is (and now and then one of the plain phase)."""
    patched, natural, widened, interval = _run_race(natural=20, widened=5)
    assert (natural, widened) == (0, 0), (
        f"{natural} of 20 plain launches and {widened} of 5 widened-window launches gave a thread "
        f"its own copy of a shared array (patch installed: {patched})")
    assert patched, "the simulator subprocess did not install the shared-array patch"
    assert interval == pytest.approx(_cudasim_patch.SWITCH_INTERVAL)   # the prelude: short, with the patch


@pytest.mark.cudasim
def test_the_short_switch_interval_needs_the_patch():
    """Unpatched (``LSTM_BACKENDS_CUDASIM_UNPATCHED=1``), the prelude keeps CPython's interval."""
    patched, _, _, interval = _run_race(natural=0, widened=0, **{_cudasim_patch.DISABLE_ENV: "1"})
    assert not patched and interval == pytest.approx(0.005)


def test_install_does_nothing_without_the_simulator(monkeypatch):
    monkeypatch.delenv("NUMBA_ENABLE_CUDASIM", raising=False)
    assert not _cudasim_patch.simulator_enabled()
    assert _cudasim_patch.install() is False


def test_install_can_be_disabled(monkeypatch):
    monkeypatch.setenv("NUMBA_ENABLE_CUDASIM", "1")
    monkeypatch.setenv(_cudasim_patch.DISABLE_ENV, "1")
    assert _cudasim_patch.install() is False


def test_unexpected_simulator_code_is_left_alone_with_a_warning():
    """A simulator whose ``FakeCUDAShared.array`` is not the code the patch was written for
    (for instance one fixed upstream) is not patched; a warning says so."""

    class FixedShared:
        def __init__(self) -> None:
            self._allocations: dict = {}

        def array(self, shape, dtype, alignment=None):
            return self._allocations.setdefault(sys._getframe(1).f_lineno, np.empty(shape, dtype))

    fake = ModuleType("fake_kernelapi")
    fake.np, fake.types, fake.numpy_support = np, ModuleType("types"), ModuleType("numpy_support")
    original = FixedShared.array
    with pytest.warns(UserWarning, match="not installed.*not the expected code"):
        assert _cudasim_patch.patch_shared_class(FixedShared, fake) is False
    assert FixedShared.array is original and not _cudasim_patch.is_installed(FixedShared)

    del fake.numpy_support
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert _cudasim_patch.patch_shared_class(FixedShared, fake) is False
    assert "no 'numpy_support'" in str(caught[0].message)
