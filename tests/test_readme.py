"""The README's "## Example" runs as written, in a fresh process, after the install it names."""

import importlib.util
import json
import pathlib
import re
import subprocess
import sys

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
#: the module each extra the example may name brings (what the example imports from it)
EXTRA_MODULES = {"torch": "torch", "onnx": "onnx"}


def _section(text: str, title: str) -> str:
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:] if end < 0 else text[start:end]


def example() -> tuple[str, list[str]]:
    """(the python code of the README's Example section, the extras its prose says to install)."""
    section = _section(README.read_text(encoding="utf-8"), "Example")
    blocks = re.findall(r"^```python\n(.*?)^```", section, flags=re.DOTALL | re.MULTILINE)
    installs = re.findall(r'pip install -e "\.\[([a-z0-9,_-]+)\]"', section.split("```python")[0])
    extras = sorted({e for found in installs for e in found.split(",")})
    return "\n".join(blocks), extras


# shapes the example's comments state, and the ONNX node (layer 0 of torch_lstm, exported)
# against the loaded layer's own first-layer weights, both directions, with the lengths
CHECKS = """
import json as _json
_y0, _h0, _c0 = lstm.backend.forward(x, lstm.params[0][0], lengths=lens)
_y1, _h1, _c1 = lstm.backend.forward(x, lstm.params[0][1], lengths=lens, reverse=True)
_y, (_h_n, _c_n) = lstm(x, lengths=lens)
print(_json.dumps({
    "y": list(_y.shape), "h_n": list(_h_n.shape),
    "Y": list(Y.shape), "grads": sorted(grads), "dx": list(dx.shape),
    "lstmp": list(lstmp.state_dict()["weight_hr_l0"].shape),
    "onnx_vs_layer": max(float(np.abs(Y[:, 0] - _y0).max()), float(np.abs(Y[:, 1] - _y1).max()),
                         float(np.abs(Y_h[0] - _h0).max()), float(np.abs(Y_c[1] - _c1).max())),
}))
"""


def test_example_block_found_with_its_install_line():
    code, extras = example()
    assert "import lstm_backends as lb" in code and "import numpy as np" in code
    assert extras, "the Example section must say which extras to install (pip install -e \".[...]\")"
    assert set(extras) <= set(EXTRA_MODULES), extras


def test_readme_example_runs_as_written(tmp_path):
    code, extras = example()
    for extra in extras:
        module = EXTRA_MODULES[extra]
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"the README example needs the {extra!r} extra ({module} is not installed): "
                        f'pip install -e ".[{",".join(extras)}]"')
    script = tmp_path / "example.py"
    script.write_text(code + CHECKS, encoding="utf-8")
    # a fresh process in an empty directory: nothing the test suite imported or defined leaks in
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr[-4000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["y"] == [100, 16, 256] and got["h_n"] == [4, 16, 128]
    assert got["Y"] == [100, 2, 16, 128] and got["dx"] == [100, 16, 64]
    assert "weight_ih_l0" in got["grads"] and got["lstmp"] == [256, 512]
    assert got["onnx_vs_layer"] < 1e-4  # the exported node runs the same weights as the loaded layer
    said = [line for line in out.stdout.splitlines() if line.startswith("max |ours - torch| = ")]
    assert len(said) == 1 and float(said[0].rsplit("=", 1)[1]) < 1e-5, out.stdout  # what the user reads
