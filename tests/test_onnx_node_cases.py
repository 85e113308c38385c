"""ONNX's own ``LSTM`` node tests (``onnx.backend.test.case.node.lstm``) on every backend.

The ``onnx`` package ships the operator's reference cases: a model with one LSTM node,
inputs (``W``, ``R``, ``B``, ``P`` among them, all *graph inputs*) and the expected outputs,
with the tolerances its backend test runner uses (``rtol``/``atol`` of each case; 1e-3 and
1e-7 today).  Each case runs here per node (:meth:`OnnxLSTM.run`, weights fed by name) and
as a whole model (:func:`lstm_backends.onnx.load_model`), on every known backend; a backend
that cannot run a case is reported as skipped with the reason, never passed.
"""

from __future__ import annotations

import importlib
import warnings

import numpy as np
import pytest

import lstm_backends as lb

onnx = pytest.importorskip("onnx", reason='needs the onnx extra: pip install "lstm-backends[onnx]"')

import lstm_backends.onnx as lbo  # noqa: E402
from tests.test_onnx import backend_or_skip  # noqa: E402

# The cases onnx 1.23 ships; more may come with later versions (they run too).
KNOWN_CASES = {"test_lstm_defaults", "test_lstm_with_initial_bias", "test_lstm_with_peepholes",
               "test_lstm_batchwise", "test_lstm_reverse", "test_lstm_bidirectional"}


def _collect_cases() -> list:
    """The LSTM node test cases of the installed onnx.

    Importing only ``onnx.backend.test.case.node.lstm`` registers its cases (about 1 s);
    the public ``collect_testcases("LSTM")`` imports every operator's module (about 10 s),
    so it is the fallback when the quick way finds nothing.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # other operators' case generators warn about their own overflows
        node_cases = importlib.import_module("onnx.backend.test.case.node")
        importlib.import_module("onnx.backend.test.case.node.lstm")
        cases = [c for c in getattr(node_cases, "_NodeTestCases", ()) if _is_lstm_case(c)]
        if not cases:
            cases = [c for c in node_cases.collect_testcases("LSTM") if _is_lstm_case(c)]
    return sorted({c.name: c for c in cases}.values(), key=lambda c: c.name)


def _is_lstm_case(case) -> bool:
    return case.kind == "node" and any(n.op_type == "LSTM" for n in case.model.graph.node)


CASES = _collect_cases()
BACKENDS = [b.name for b in lb.list_backends()]


def test_the_cases_are_collected():
    """A collection that silently found nothing would pass every parametrized test below."""
    assert KNOWN_CASES <= {c.name for c in CASES}, sorted(c.name for c in CASES)
    assert all(len(c.data_sets) >= 1 for c in CASES)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_onnx_lstm_node_case(case, backend):
    """Outputs equal the case's expected ones at the case's own tolerances, per node and whole-model."""
    backend_or_skip(backend, set(lbo.load(case.model, backend="numpy").requires))
    graph = case.model.graph
    input_names = [i.name for i in graph.input]
    output_names = [o.name for o in graph.output]
    node = lbo.load(case.model, backend=backend)
    assert node.call_time, "the cases feed their weights as graph inputs"
    session = lbo.load_model(case.model, backend=backend)
    assert session.lstm_nodes[node.name].backend.name == backend
    for k, (inputs, expected) in enumerate(case.data_sets):
        feeds = dict(zip(input_names, inputs))
        per_node = node.run(feeds)
        whole = dict(zip(output_names, session.run(None, feeds)))
        for name, want in zip(output_names, expected):
            want = np.asarray(want)
            for how, got in (("node.run", per_node[name]), ("load_model", whole[name])):
                assert got.shape == want.shape and got.dtype == want.dtype, (how, name, got.shape, want.shape)
                np.testing.assert_allclose(got, want, rtol=case.rtol, atol=case.atol,
                                           err_msg=f"{case.name} data set {k}, output {name}, {how}, {backend}")
