import json
import subprocess
import sys

import numpy as np
import pytest

import lstm_backends as lb
from lstm_backends.__main__ import main


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "lstm_backends", *args], capture_output=True, text=True, timeout=600)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """bench keeps its last summary and info reads it: in a directory of the test's own (the
    subprocesses inherit the variable), never the user's cache."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("LSTM_BACKENDS_CACHE_DIR", str(cache))
    return cache


@pytest.mark.parametrize("cmd", [[], ["info"], ["bench"], ["verify"], ["onnx"]])
def test_help_everywhere(cmd):
    out = _cli(*cmd, "--help")
    assert out.returncode == 0 and "usage:" in out.stdout


def test_info_lists_backends_blas_and_cuda():
    out = _cli("info")
    assert out.returncode == 0, out.stderr
    for word in ("numpy", "numba", "cuda", "threading layer", "BLAS", "CUDA:"):
        assert word in out.stdout
    pools = out.stdout.split("Thread pools (threadpoolctl")[1].split("\nCUDA:")[0]
    assert "  blas: openblas" in pools and "None" not in pools and "?" not in pools, pools   # (SciPy's OpenBLAS)


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
    # --no-peers says what it did, not that no peer is installed
    assert "peers skipped by --no-peers" in out.stdout and "no peer installed" not in out.stdout
    assert (tmp_path / "cache" / "last_bench.json").exists()  # kept for `info`


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
    # two rounds, plus the re-runs of a contender whose rounds spread (tiny problems on a shared machine)
    assert all(r["agrees"] and len(r["runs_s"]) == 2 + r["reruns"] for r in rows)
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
    assert "pass  forward" in text and "all checks that apply passed" in text and "skipped" not in text


def test_verify_a_precision_mode_says_what_it_skipped(capsys):
    assert main(["verify", "numpy", "--precision", "bf16x3"]) == 0
    text = capsys.readouterr().out
    assert "pass  prepared" in text and "pass  bf16x3" in text
    assert main(["verify", "numba", "--precision", "bf16"]) == 0
    text = capsys.readouterr().out
    assert "pass  bf16" in text and "skipped" not in text
    if "example" in {b.name for b in lb.list_backends() if b.available}:   # the plugin has no modes
        assert main(["verify", "example", "--precision", "bf16"]) == 0
        text = capsys.readouterr().out
        assert "skip  bf16" in text and "(1 skipped: not applicable)" in text


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


def test_onnx_run_runs_the_whole_model_and_compares_with_onnxruntime(tmp_path, capsys):
    """``onnx MODEL --run`` (in process: one interpreter for the seven calls)."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    import numpy as np
    import onnx
    from onnx import TensorProto, helper

    from tests.test_onnx_model import keras_style_model

    def cli(*args):
        code = main(["onnx", *args])
        out = capsys.readouterr()
        return code, out.out, out.err

    model, _ = keras_style_model(0)
    path, twin = tmp_path / "keras.onnx", tmp_path / "keras1.onnx"
    onnx.save(model, str(path))
    onnx.save(keras_style_model(1)[0], str(twin))
    code, out, err = cli(str(path), "--run", "--backend", "numpy", "--dim", "batch=4", "--dim", "2")
    assert code == 0, err
    for words in ("whole model: LSTM nodes: lstm on numpy; 7 other node(s) in onnx.reference",
                  "input  x: float32 (4, 2, 3) (random)", "input  lengths: int32 (4,) (random)",
                  "output probs: float32 (4, 2, 2)  max |ours - onnxruntime| = ", "output state: float32 (4, 5)"):
        assert words in out, out
    assert out.count("agrees") == 3  # the node check, then both outputs
    x = tmp_path / "x.npy"
    np.save(x, np.ones((2, 3, 3), np.float32))
    code, out, err = cli(str(path), "--input", f"x={x}", "--dim", "batch=2", "--no-check")
    assert code == 0, err
    assert f"input  x: float32 (2, 3, 3) ({x})" in out and "onnxruntime" not in out
    code, out, err = cli(str(twin), "--run")  # layout 1: onnxruntime refuses it, we run it
    assert code == 0, err
    assert "onnxruntime cannot run this model" in out and "output probs: float32 (3, 3, 2)" in out
    code, out, err = cli(str(path), "--input", f"nope={x}")
    assert code == 1 and "--input: the model has no input 'nope'; its inputs: 'x', 'lengths'" in err
    code, out, err = cli(str(path), "--dim", "batch")
    assert code == 1 and "--dim must look like NAME=VALUE" in err
    model.graph.input[1].type.tensor_type.ClearField("shape")   # 'lengths' of no declared shape: the user gives it
    loose, lens = tmp_path / "loose.onnx", tmp_path / "lens.npy"
    onnx.save(model, str(loose))
    code, out, err = cli(str(loose), "--run", "--no-check")
    assert code == 1 and "give its value: --input lengths=FILE.npy on the command line" in err, err
    np.save(lens, np.array([2, 1, 3], np.int32))
    code, out, err = cli(str(loose), "--input", f"lengths={lens}", "--dim", "batch=3", "--no-check")
    assert code == 0 and f"input  lengths: int32 (3,) ({lens})" in out, out + err
    plain = tmp_path / "relu.onnx"
    onnx.save(helper.make_model(helper.make_graph(
        [helper.make_node("Relu", ["a"], ["b"])], "g", [helper.make_tensor_value_info("a", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("b", TensorProto.FLOAT, None)])), str(plain))
    code, out, err = cli(str(plain), "--run")
    assert code == 0 and "no LSTM node" in out and "LSTM nodes: none; 1 other node(s)" in out, out + err
    assert "output b: float32 (2,)" in out and "agrees" in out


def test_compare_checks_each_contender_against_its_own_dtype_problem():
    """A float64 contender (``@float64``) beside float32 ones is checked against the float64 problem's
    reference (not the float32 one, whose rounded inputs would make it disagree)."""
    from lstm_backends._bench import Size
    from lstm_backends._peers import compare

    _, rows = compare([Size(3, 2, 3, 4)], ["ours:numpy", "ours:numpy@float64"], rounds=1, budget=0.01)
    by_name = {r.name: r for r in rows}
    assert by_name["ours:numpy"].agrees and by_name["ours:numpy@float64"].agrees
    assert by_name["ours:numpy@float64"].worst_error < 1e-3  # float64 tolerance, float64 inputs: far inside


def test_version_prints_the_version():
    from importlib.metadata import version

    out = _cli("--version")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"lstm-backends {version('lstm-backends')}"


def test_verify_aligns_columns_for_long_check_names(capsys, monkeypatch):
    from lstm_backends.testing import conformance

    long_name = "a_check_whose_name_is_much_longer_than_the_others"
    monkeypatch.setitem(conformance.CHECKS, long_name, lambda backend: 0.25)
    assert main(["verify", "numpy", "--check", "forward", "--check", long_name, "--check", "cell"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("  pass")]
    assert len(rows) == 3
    # every column starts at the same place on every row
    assert len({row.index("worst") for row in rows}) == 1, rows
    assert len({len(row) for row in rows}) == 1, rows  # the seconds, right-aligned, end together
    assert all(row.index("worst") > row.index(name) + len(name) for row, name in zip(rows, ["forward", long_name]))


@pytest.mark.parametrize(
    "flags, status, words",
    [
        ({"no_peers": True}, {"torch": "", "onnxruntime": ""}, ["peers skipped by --no-peers", "torch, onnxruntime"]),
        ({"no_torch": True}, {"torch": "", "onnxruntime": "not installed: pip install onnxruntime"},
         ["torch left out by --no-torch", "onnxruntime not installed"]),
        ({}, {"torch": "not installed: pip install torch", "onnxruntime": "no float64 LSTM"},
         ["torch not installed", "onnxruntime no float64 LSTM"]),
    ],
)
def test_bench_says_why_no_peer_ran(flags, status, words):
    import argparse

    from lstm_backends.__main__ import _peers_note

    note = _peers_note(argparse.Namespace(**{"no_peers": False, "no_torch": False, **flags}), status)
    for w in words:
        assert w in note, note
    assert "no peer installed" not in note


def test_peer_status_names_the_reason():
    from lstm_backends._peers import available_peers, peer_status

    for dtype in ("float32", "float64"):
        status = peer_status(dtype)
        assert set(status) == {"torch", "onnxruntime", "openvino"}
        assert [n for n, why in status.items() if not why] == available_peers(dtype)
    # never run float64: a reason, whether installed or not
    assert peer_status("float64")["onnxruntime"] and peer_status("float64")["openvino"]


def test_contender_options_reach_the_child_and_modes_are_checked_against_their_accuracy():
    """``@prepared`` and ``@bf16`` select what the child runs (they once stopped at the parent: a
    prepared contender ran plain params); a mode's outputs are checked against its stated accuracy."""
    from lstm_backends._bench import Size
    from lstm_backends._peers import compare
    from lstm_backends._prepared import ACCURACY

    _, rows = compare([Size(20, 3, 9, 16)], ["ours:numpy", "ours:numpy@prepared", "ours:numpy@bf16"], rounds=1,
                      budget=0.01)
    by_name = {r.name: r for r in rows}
    assert all(r.agrees for r in rows)
    assert by_name["ours:numpy@prepared"].info.get("prepared") is True
    assert "prepared" not in by_name["ours:numpy"].info
    bf16 = by_name["ours:numpy@bf16"]
    assert bf16.info["precision"] == "bf16"
    # it really ran bf16: farther from the float64 reference than float32 arithmetic gets (< 1e-6)
    assert 1e-5 < bf16.worst_error * ACCURACY["bf16"] <= ACCURACY["bf16"]


def test_bench_precision_adds_our_modes_and_the_peers_bf16(tmp_path):
    from lstm_backends._peers import _bf16_instructions, available_peers

    js = tmp_path / "r.json"
    out = _cli("bench", "--size", "4,2,3,5", "--backend", "numpy", "--precision", "bf16", "--rounds", "1",
               "--budget", "0.02", "--no-cell", "--json", str(js))
    assert out.returncode == 0, out.stderr
    rows = {r["name"]: r for r in json.loads(js.read_text())["rows"]}
    bf16_peers = {f"{p}@bf16" for p in ("torch", "openvino") if p in available_peers()}
    assert {"ours:numpy", "ours:numpy@bf16", *bf16_peers} <= set(rows)
    assert all(r["agrees"] for r in rows.values())
    assert rows["ours:numpy@bf16"]["info"]["precision"] == "bf16"
    if "torch" in available_peers() and _bf16_instructions():   # the bf16 rows' % peak: torch's bf16 matmul
        assert rows["ours:numpy@bf16"]["info"]["peak_gflops"] > 0 and "peak_gflops" not in rows["ours:numpy"]["info"]
        assert "bf16 GEMM 2048^3 (torch)" in out.stdout
    bad = _cli("bench", "--dtype", "float64", "--precision", "bf16", "--size", "4,2,3,5", "--no-peers")
    assert bad.returncode != 0 and "runs float32 problems" in bad.stderr


def test_the_cell_row_of_a_bf16_comparison_has_torchs_bf16_cell():
    pytest.importorskip("torch")
    from lstm_backends._bench import Size
    from lstm_backends._peers import compare

    _, rows = compare([Size(4, 2, 3, 5)], ["ours:numpy@bf16", "torch@bf16"], rounds=1, budget=0.01,
                      cell=Size(1, 2, 6, 10))
    cells = {r.name: r for r in rows if "cell" in r.name}
    assert set(cells) == {"ours-cell:numpy@bf16", "torch-cell@bf16"}
    assert all(r.agrees for r in cells.values()) and cells["torch-cell@bf16"].info["precision"] == "bf16"
    assert not np.isnan(cells["ours-cell:numpy@bf16"].ratio_best_peer)


def test_a_mode_contenders_path_names_the_cell_for_the_cell_row():
    """The path column of ``ours-cell:numba@bf16`` is the cell's (describe_path(..., cell=True)),
    not the forward's."""
    pytest.importorskip("numba")
    from lstm_backends._peers import _runner
    from lstm_backends.testing import random_problem

    p = random_problem(1, 2, 6, 10, seed=3)
    for kind, cell in (("ours-cell", True), ("ours", False)):
        info = _runner(f"{kind}:numba", p, 2, precision="bf16")[2]
        be = lb.get_backend("numba")
        assert info["path"] == type(be)(num_threads=2).describe_path(2, 10, precision="bf16", input_size=6, cell=cell)


@pytest.mark.parametrize("name", ["openvino", "openvino@bf16", "torch@bf16"])
def test_peer_contenders_run_and_agree_in_their_precision(tmp_path, name):
    """OpenVINO (f32; bf16 where the CPU has bfloat16 instructions, else it runs f32 and says so)
    and torch in bfloat16, each against the float64 reference at its precision's accuracy."""
    from lstm_backends._bench import Size
    from lstm_backends._peers import _error, _reference, contender_precision, run_contender

    pytest.importorskip(name.split("@")[0].split("-")[0])
    if name.startswith("openvino"):
        pytest.importorskip("onnx")
    size, save = Size(10, 3, 6, 20), tmp_path / "out.npz"
    record = run_contender(name, size, budget=0.01, save=str(save))
    assert record["median_s"] > 0
    ref = _reference(size, np.dtype(np.float32), 0, False, cell=False)
    with np.load(save) as got:
        err = _error(got, ref, np.dtype(np.float32), contender_precision(name))
    assert err <= 1.0, (name, err)
    if name.startswith("openvino"):
        assert record["precision"] in ("f32", "bf16")
        if name == "openvino":
            assert record["precision"] == "f32"
    else:
        assert record["precision"] == "bf16"


def _spread_compare(monkeypatch, slow: list[float]):
    """compare() where the n-th launch of ours:numpy after its first (real) one reports slow[n] times
    the first one's median (the sgemm launches are faked: no timing is needed here)."""
    from lstm_backends import _peers
    from lstm_backends._bench import Size

    real, first, calls = _peers._launch, {}, []

    def launch(name, size, *args, **kwargs):
        if name == "sgemm":
            return {"name": name, "gflops": 100.0}
        if not first:
            first.update(real(name, size, *args, **kwargs))  # saves the outputs the check reads
            return dict(first)
        calls.append(name)
        return {**first, "median_s": first["median_s"] * slow[len(calls) - 1]}

    monkeypatch.setattr(_peers, "_launch", launch)
    _, rows = _peers.compare([Size(3, 2, 3, 4)], ["ours:numpy"], rounds=2, budget=0.01)
    return rows[0], calls, first["median_s"]


def test_bench_reruns_a_contender_whose_rounds_spread(monkeypatch):
    """One slow process (a busy neighbour: 40x) among two rounds: re-run, median over all runs."""
    from lstm_backends._peers import format_results

    row, calls, fast = _spread_compare(monkeypatch, [40.0, 1.1, 1.0])
    assert len(calls) == 2 and row.reruns == 1 and not row.noisy  # one re-run settled it
    assert row.median_s == pytest.approx(1.1 * fast) and row.spread == pytest.approx(40.0)
    table = format_results(100.0, [row], 2)
    assert "40.00 re-run x1" in table and "spread by more than 1.5x" in table and "NOISY" not in table


def test_bench_flags_a_contender_still_spread_after_reruns(monkeypatch):
    from lstm_backends._peers import format_results

    row, calls, _ = _spread_compare(monkeypatch, [3.0, 3.0, 2.5, 1.0])
    assert len(calls) == 3 and row.reruns == 2 and row.noisy  # 2 re-runs at most, still spread
    table = format_results(100.0, [row], 2)
    assert "re-run x2 NOISY" in table and "do not trust" in table and "ours:numpy at T=3,B=2,I=3,H=4" in table


def test_bench_rounds_that_agree_are_not_rerun(monkeypatch):
    row, calls, _ = _spread_compare(monkeypatch, [1.2])
    assert len(calls) == 1 and row.reruns == 0 and not row.noisy and row.spread == pytest.approx(1.2)


def test_info_mkl_advice_comes_from_the_last_bench_on_this_cpu(_private_cache, monkeypatch):
    from lstm_backends import _probe
    from lstm_backends._bench import Size
    from lstm_backends._peers import Result

    def row(name, ms):
        return Result(Size(100, 16, 128, 256), name, ms / 1e3, [ms / 1e3], 1.0, 1.0, 0.1, True)

    monkeypatch.setattr(_probe, "probe_mkl_vs_own", lambda *a, **k: pytest.fail("probed despite a stored bench"))
    assert _probe.save_last_bench([row("ours:numba", 30.0), row("ours:numba@mkl", 10.0), row("ours:numpy", 99.0)],
                                  threads=2, dtype="float32") == _private_cache / "last_bench.json"
    advice = _probe.mkl_advice()
    assert _probe.cpu_name() in advice and "last `lstm-backends bench`" in advice
    assert "T=100,B=16,I=128,H=256: own 30 ms, mkl 10 ms (MKL 3x faster)" in advice
    assert advice.endswith("-- MKL faster at 1 of 1 sizes")


def test_info_mkl_advice_counts_a_pair_on_par_as_on_par(_private_cache):
    """The tally uses each pair's verdict: 300 against 292 ms is on par, not one more size MKL wins."""
    from lstm_backends import _probe
    from lstm_backends._bench import Size
    from lstm_backends._peers import Result

    def row(size, name, ms):
        return Result(size, name, ms / 1e3, [ms / 1e3], 1.0, 1.0, 0.1, True)

    big, mid = Size(100, 64, 256, 512), Size(100, 16, 128, 256)
    _probe.save_last_bench([row(big, "ours:numba", 300.0), row(big, "ours:numba@mkl", 292.0),
                            row(mid, "ours:numba", 20.0), row(mid, "ours:numba@mkl", 30.0)], threads=2,
                           dtype="float32")
    advice = _probe.mkl_advice(probe=False)
    assert "own 300 ms, mkl 292 ms (MKL on par)" in advice and "(MKL 1.5x slower)" in advice
    assert advice.endswith("-- MKL on par at 1, slower at 1 of 2 sizes")


def test_info_mkl_advice_ignores_a_toy_bench(_private_cache, monkeypatch):
    """A bench of toy sizes (a quarter of the probe's work or less) says nothing about the GEMMs: probe."""
    from lstm_backends import _probe
    from lstm_backends._bench import Size
    from lstm_backends._peers import Result

    def row(name, ms):
        return Result(Size(20, 4, 16, 32), name, ms / 1e3, [ms / 1e3], 1.0, 1.0, 0.1, True)

    monkeypatch.setattr(_probe, "probe_mkl_vs_own", lambda *a, **k: (0.004, 0.002, 2))
    _probe.save_last_bench([row("ours:numba", 0.1), row("ours:numba@mkl", 0.3)], threads=2, dtype="float32")
    advice = _probe.mkl_advice()
    assert "probed now" in advice and "MKL 2x faster here" in advice


def test_info_mkl_advice_probes_without_a_stored_bench(monkeypatch):
    from lstm_backends import _probe

    monkeypatch.setattr(_probe, "cpu_name", lambda: "Test CPU 9000")
    monkeypatch.setattr(_probe, "probe_mkl_vs_own", lambda *a, **k: (0.004, 0.010, 2))
    advice = _probe.mkl_advice()
    assert "Test CPU 9000, probed now" in advice and "own 4 ms, mkl 10 ms -> MKL 2.5x slower here" in advice
    # a stored bench of another CPU does not count, however good its rows
    from lstm_backends._bench import Size
    from lstm_backends._peers import Result

    rows = [Result(Size(100, 16, 128, 256), name, ms / 1e3, [ms / 1e3], 1.0, 1.0, 0.1, True)
            for name, ms in (("ours:numba", 30.0), ("ours:numba@mkl", 10.0))]
    monkeypatch.setattr(_probe, "cpu_name", lambda: "Other CPU 1")
    _probe.save_last_bench(rows, threads=2, dtype="float32")
    monkeypatch.setattr(_probe, "cpu_name", lambda: "Test CPU 9000")
    assert "probed now" in _probe.mkl_advice()
    monkeypatch.setattr(_probe, "cpu_name", lambda: "Other CPU 1")   # (and on that CPU it does)
    assert "from the last `lstm-backends bench`" in _probe.mkl_advice()
    # nor does one of other kernels (another version or checkout of the library, same CPU)
    monkeypatch.setattr(_probe, "kernels_stamp", lambda: "0123456789abcdef")
    assert "probed now" in _probe.mkl_advice()


def test_mkl_probe_measures_both():
    from lstm_backends.backends import _mkl

    if not _mkl.available():
        pytest.skip(f"MKL not usable here: {_mkl.info()}")
    from lstm_backends._probe import probe_mkl_vs_own

    own, mkl, threads = probe_mkl_vs_own()
    assert 0 < own < 1 and 0 < mkl < 1 and threads >= 1
