"""The cache rule of the numba kernels (``lstm_backends/backends/_numba/_jit.py``), proven on a copy.

Numba's ``cache=True`` checks only the file of the cached function itself.  The kernels are
built from helpers in every file of the ``_numba`` package, so the package installs a cache
locator whose source stamp hashes the whole package.  Each test here copies the package to a
temporary directory, runs kernels in fresh processes with a persistent ``NUMBA_CACHE_DIR``,
edits a helper in a *different* file than the cached entry, and checks that the next fresh
process computes the new result (and that an unchanged package loads from the cache).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import lstm_backends as lb
from lstm_backends.testing import random_params, reference_cell

pytest.importorskip("numba")

_SRC = Path(lb.__file__).parent

# math64_apply (intrinsics.py) over the float64 tanh (IR generated in nonlinear.py)
MATH_CODE = """
import json, numpy as np
import lstm_backends.backends._numba as k
assert k.__file__.startswith({root!r}), k.__file__
x = np.linspace(-3.0, 3.0, 61)
out = np.empty_like(x)
k.math64_apply(0, x, out)
print(json.dumps({{"out": out.tolist(), "hits": sum(k.math64_apply.stats.cache_hits.values()),
                  "cache": k._jit.CACHE}}))
"""

# cell_entry (cell.py) over the bias helper _bias_panel (rows.py, an inlined @njit function)
CELL_CODE = """
import json, numpy as np
import lstm_backends as lb
import lstm_backends.backends._numba as k
assert k.__file__.startswith({root!r}), k.__file__
p = lb.testing.random_params(5, 20, rng=3)
rng = np.random.default_rng(4)
x = rng.standard_normal((2, 5)).astype(np.float32)
h = rng.standard_normal((2, 20)).astype(np.float32)
c = rng.standard_normal((2, 20)).astype(np.float32)
from lstm_backends.backends.numba_backend import NumbaBackend
h1, c1 = NumbaBackend(kind="serial").cell(x, h, c, p)
print(json.dumps({{"h": h1.tolist(), "c": c1.tolist(), "hits": sum(k.cell_entry.stats.cache_hits.values())}}))
"""


def _install(root: Path) -> Path:
    """A copy of the lstm_backends package under ``root`` (no caches), as pip would lay it out."""
    if root.exists():
        shutil.rmtree(root)
    shutil.copytree(_SRC, root / "lstm_backends", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return root


def _run(code: str, root: Path, cache: Path, **env: str) -> dict:
    full = {**os.environ, "PYTHONPATH": str(root), "NUMBA_CACHE_DIR": str(cache), **env}
    full.pop("NUMBA_DISABLE_JIT", None)
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code.format(root=str(root)))], capture_output=True,
                         text=True, env=full, timeout=600, cwd=str(root))
    assert out.returncode == 0, out.stderr[-4000:]
    return {**json.loads(out.stdout.strip().splitlines()[-1]), "stderr": out.stderr}


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} not found once in {path.name}: the test needs updating"
    path.write_text(text.replace(old, new))


_TANH_OLD = "def _ir_tanh64(vb, x):\n    b = vb.b\n    k = vb.const\n"
_TANH_NEW = _TANH_OLD + "    x = b.fadd(x, k(1.0))  # edited: tanh(x + 1)\n"


def test_edit_of_an_ir_helper_in_another_file_reaches_the_cache(tmp_path):
    root, cache = _install(tmp_path / "site"), tmp_path / "cache"
    x = np.linspace(-3.0, 3.0, 61)
    first = _run(MATH_CODE, root, cache)
    assert first["cache"] is True
    np.testing.assert_allclose(first["out"], np.tanh(x), rtol=1e-15, atol=0)
    again = _run(MATH_CODE, root, cache)
    assert again["hits"] == 1, "an unchanged package must load its kernels from the cache"
    assert again["out"] == first["out"]
    _edit(root / "lstm_backends/backends/_numba/nonlinear.py", _TANH_OLD, _TANH_NEW)   # not intrinsics.py
    edited = _run(MATH_CODE, root, cache)
    assert edited["hits"] == 0, "the edit must invalidate the cached entry"
    np.testing.assert_allclose(edited["out"], np.tanh(x + 1.0), rtol=1e-15, atol=0)
    assert _run(MATH_CODE, root, cache)["hits"] == 1  # and the new code is cached in turn


_BIAS_OLD = "_stf(proto, at, _ldf(proto, b_ih + src) + _ldf(proto, b_hh + src))"
_BIAS_NEW = "_stf(proto, at, _ldf(proto, b_ih + src) + _ldf(proto, b_hh + src) + _ldf(proto, b_hh + src))"


def test_upgrade_reusing_an_old_cache_dir_recompiles(tmp_path):
    """An upgrade that changes only an inlined @njit helper (rows.py), not the cached entry's file
    (cell.py): the new package at the same place, the old cache directory, the new results."""
    cache = tmp_path / "cache"
    root = _install(tmp_path / "site")
    p = random_params(5, 20, rng=3)
    rng = np.random.default_rng(4)
    x, h, c = (rng.standard_normal(s).astype(np.float32) for s in ((2, 5), (2, 20), (2, 20)))
    old = _run(CELL_CODE, root, cache)
    h_ref, c_ref = reference_cell(x, h, c, p)
    np.testing.assert_allclose(old["h"], h_ref, atol=2e-6)
    assert _run(CELL_CODE, root, cache)["hits"] == 1

    upgraded = _install(tmp_path / "site")   # a fresh copy of the package at the same path ...
    cell_py = upgraded / "lstm_backends/backends/_numba/cell.py"
    before = cell_py.read_bytes()
    _edit(upgraded / "lstm_backends/backends/_numba/rows.py", _BIAS_OLD, _BIAS_NEW)   # ... changed in rows.py only
    assert cell_py.read_bytes() == before
    new = _run(CELL_CODE, upgraded, cache)
    assert new["hits"] == 0
    h_new, c_new = reference_cell(x, h, c, p._replace(b_hh=2 * p.b_hh))
    np.testing.assert_allclose(new["h"], h_new, atol=2e-6)
    np.testing.assert_allclose(new["c"], c_new, atol=2e-6)
    assert np.abs(np.asarray(new["h"]) - h_ref).max() > 1e-3


def test_fails_closed_when_numba_would_ignore_the_rule(tmp_path):
    """With NUMBA_CACHE_LOCATOR_CLASSES set, Numba would not ask the package's locator: the kernels
    compile without a disk cache and say so (never stale code)."""
    root, cache = _install(tmp_path / "site"), tmp_path / "cache"
    env = {"NUMBA_CACHE_LOCATOR_CLASSES": "UserProvidedCacheLocator"}
    first = _run(MATH_CODE, root, cache, **env)
    assert first["cache"] is False
    assert "CacheDisabledWarning" in first["stderr"] and "NUMBA_CACHE_LOCATOR_CLASSES" in first["stderr"]
    assert _run(MATH_CODE, root, cache, **env)["hits"] == 0
    _edit(root / "lstm_backends/backends/_numba/nonlinear.py", _TANH_OLD, _TANH_NEW)
    edited = _run(MATH_CODE, root, cache, **env)
    np.testing.assert_allclose(edited["out"], np.tanh(np.linspace(-3.0, 3.0, 61) + 1.0), rtol=1e-15, atol=0)


def test_the_stamp_covers_every_file_of_the_package():
    from lstm_backends.backends._numba import _jit

    files = sorted(p.name for p in (_SRC / "backends/_numba").glob("*.py"))
    assert {"forward.py", "rows.py", "nonlinear.py", "_jit.py", "__init__.py"} <= set(files)
    assert len(_jit.package_stamp()) == 64
    from numba.core import caching

    assert caching.CacheImpl._locator_classes[0] is _jit.PackageStampLocator
    loc = _jit.PackageStampLocator.from_function(_jit.package_stamp.__wrapped__, _jit.__file__)
    assert loc is not None and loc.get_source_stamp() == ("lstm_backends._numba", _jit.package_stamp())
    assert _jit.PackageStampLocator.from_function(test_the_stamp_covers_every_file_of_the_package, __file__) is None
