import json
import subprocess
import sys

import pytest

from lstm_backends.__main__ import main


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "lstm_backends", *args], capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("cmd", [[], ["info"], ["bench"], ["verify"], ["onnx"]])
def test_help_everywhere(cmd):
    out = _cli(*cmd, "--help")
    assert out.returncode == 0 and "usage:" in out.stdout


def test_info_lists_backends_blas_and_cuda():
    out = _cli("info")
    assert out.returncode == 0, out.stderr
    for word in ("numpy", "numba", "cuda", "threading layer", "BLAS", "CUDA:"):
        assert word in out.stdout


def test_bench_checks_times_and_writes(tmp_path):
    js, png = tmp_path / "r.json", tmp_path / "r.png"
    out = _cli("bench", "--size", "5,2,4,8", "--size", "B=1,T=3,I=3,H=4", "--backend", "numpy", "--backend", "numba",
               "--rounds", "1", "--budget", "0.05", "--no-peers", "--no-mkl", "--json", str(js), "--plot", str(png))
    assert out.returncode == 0, out.stderr
    rows = json.loads(js.read_text())["rows"]
    names = {r["name"] for r in rows}
    assert names == {"ours:numpy", "ours:numba", "ours-cell:numpy", "ours-cell:numba"}, names
    assert len(rows) == 6 and all(r["agrees"] and r["median_s"] > 0 and r["gflops"] > 0 for r in rows)
    assert {r["size"] for r in rows} >= {"T=5,B=2,I=4,H=8", "T=3,B=1,I=3,H=4"}
    assert png.stat().st_size > 1000
    assert "agrees with the float64 reference" in out.stdout and "fresh process" in out.stdout
    assert "[1/3]" in out.stderr  # progress


@pytest.mark.skipif(not __import__("lstm_backends._peers", fromlist=["x"]).available_peers(),
                    reason="no peer (torch, onnxruntime) installed")
def test_bench_against_peers_in_fresh_processes(tmp_path):
    from lstm_backends._peers import available_peers
    from lstm_backends.backends import _mkl

    js = tmp_path / "r.json"
    out = _cli("bench", "--size", "4,2,3,5", "--backend", "numba", "--rounds", "2", "--budget", "0.05",
               "--json", str(js))
    assert out.returncode == 0, out.stderr
    rows = json.loads(js.read_text())["rows"]
    forward = [r for r in rows if "cell" not in r["name"]]
    # with the mkl extra installed, the numba backend on MKL's packed GEMM is timed too
    mkl = {"ours:numba@mkl"} if _mkl.available() else set()
    assert {r["name"] for r in forward} == {"ours:numba", *mkl, *available_peers()}
    assert all(r["agrees"] and len(r["runs_s"]) == 2 for r in rows)
    ours = next(r for r in forward if r["name"] == "ours:numba")
    best = min(r["median_s"] for r in forward if not r["name"].startswith("ours"))
    assert ours["ratio_best_peer"] == pytest.approx(ours["median_s"] / best)


@pytest.mark.parametrize(
    "args, words",
    [
        (["bench", "--backend", "nope"], ["unknown backend 'nope'", "numpy"]),
        (["bench", "--size", "1,2,3"], ["four positive integers"]),
        (["bench", "--size", "a,b,c,d"], ["four positive integers"]),
        (["bench", "--rounds", "0"], ["--rounds"]),
        (["verify", "nope"], ["unknown backend"]),
        (["frobnicate"], ["invalid choice"]),
    ],
)
def test_bad_arguments_clear_message_no_traceback(args, words):
    out = _cli(*args)
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
    for w in words:
        assert w in out.stderr


def test_verify_one_backend(capsys):
    assert main(["verify", "numpy", "--check", "forward", "--check", "errors"]) == 0
    text = capsys.readouterr().out
    assert "pass  forward" in text and "all checks passed" in text


def test_verify_reports_failure(capsys, monkeypatch):
    from lstm_backends.testing import conformance

    def broken(backend):
        raise AssertionError("y: 3 of 10 elements differ")

    monkeypatch.setitem(conformance.CHECKS, "forward", broken)
    assert main(["verify", "numpy", "--check", "forward"]) == 1
    assert "FAIL  forward" in capsys.readouterr().out


def test_size_parser_is_t_first_or_keyed():
    from lstm_backends._bench import Size, parse_size

    assert parse_size("100,16,128,256") == Size(steps=100, batch=16, input_size=128, hidden_size=256)
    assert parse_size("B=16,T=100,I=128,H=256") == parse_size("100x16x128x256")
    assert str(parse_size("h=8, i=4, b=2, t=3")) == "T=3,B=2,I=4,H=8"
    for bad in ("1,2,3", "B=1,T=2,I=3", "B=1,B=2,I=3,H=4", "Q=1,T=2,I=3,H=4", "0,1,1,1", "a,b,c,d"):
        with pytest.raises(ValueError, match="T,B,I,H"):
            parse_size(bad)


def test_failure_inside_a_backend_is_not_a_usage_error(capsys, monkeypatch):
    """A backend that raises: exit 1 with the exception named (not 'error: ...', exit 2);
    --debug gives the traceback (the exception propagates)."""
    from lstm_backends import _peers

    def exploding(*args, **kwargs):
        raise ValueError("kernel exploded")

    monkeypatch.setattr(_peers, "compare", exploding)
    args = ["bench", "--size", "2,1,3,4", "--backend", "numpy", "--no-peers", "--rounds", "1", "--quiet"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "failed: ValueError: kernel exploded" in err and "--debug" in err and "error:" not in err
    with pytest.raises(ValueError, match="kernel exploded"):
        main(["--debug", *args])


def test_onnx_lists_nodes_and_checks_them_against_onnxruntime(tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    import onnx

    from tests.test_onnx import make_model, random_weights

    peep, plain = tmp_path / "peep.onnx", tmp_path / "plain.onnx"
    onnx.save(make_model(random_weights("bidirectional", peephole=True, seed=1), "bidirectional", clip=0.5,
                         activations=["HardSigmoid", "Tanh", "Tanh"] * 2), str(peep))
    onnx.save(make_model(random_weights("forward", seed=2), layout=1, name="enc"), str(plain))
    out = _cli("onnx", str(peep))
    assert out.returncode == 0, out.stderr
    for words in ("lstm: LSTM bidirectional, hidden_size=5, input_size=3, layout=0, float32",
                  "peepholes: yes, clip: 0.5", "f=HardSigmoid(alpha=0.2, beta=0.5)", "runs on: numpy",
                  "ONNX-only: peepholes", "onnxruntime: agrees"):
        assert words in out.stdout, out.stdout
    out = _cli("onnx", str(plain), "--backend", "numpy")
    assert out.returncode == 0 and "enc: LSTM forward" in out.stdout and "layout=1" in out.stdout
    assert "converts to lstm_backends.LSTM" in out.stdout and "onnxruntime: agrees" in out.stdout
    out = _cli("onnx", str(plain), "--no-check")
    assert out.returncode == 0 and "onnxruntime" not in out.stdout
    bogus = tmp_path / "bogus.onnx"
    bogus.write_bytes(b"\xff\xfe not a model")
    out = _cli("onnx", str(bogus))
    assert out.returncode == 1 and "is not an ONNX model" in out.stderr and "Traceback" not in out.stderr
    out = _cli("onnx", str(peep), "--backend", "nope")
    assert out.returncode == 2 and "unknown backend 'nope'" in out.stderr


def test_compare_checks_each_contender_against_its_own_dtype_problem():
    """A float64 contender (``@float64``) beside float32 ones is checked against the float64 problem's
    reference (not the float32 one, whose rounded inputs would make it disagree)."""
    from lstm_backends._bench import Size
    from lstm_backends._peers import compare

    _, rows = compare([Size(3, 2, 3, 4)], ["ours:numpy", "ours:numpy@float64"], rounds=1, budget=0.01)
    by_name = {r.name: r for r in rows}
    assert by_name["ours:numpy"].agrees and by_name["ours:numpy@float64"].agrees
    assert by_name["ours:numpy@float64"].worst_error < 1e-3  # float64 tolerance, float64 inputs: far inside
