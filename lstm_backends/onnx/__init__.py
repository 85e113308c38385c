"""Run the ``LSTM`` nodes of ONNX models without onnxruntime, or whole models in one call.

Needs the ``onnx`` package (``pip install "lstm-backends[onnx]"``), imported only when
this module is; ``import lstm_backends`` never imports it.

>>> import lstm_backends.onnx as lbo                        # doctest: +SKIP
>>> m = lbo.load("model.onnx", backend="numpy")            # doctest: +SKIP
>>> Y, Y_h, Y_c = m(X, sequence_lens=lens)                 # doctest: +SKIP
>>> sess = lbo.load_model("model.onnx")                    # doctest: +SKIP
>>> outputs = sess.run(None, {"x": x})                     # doctest: +SKIP

:func:`load` / :func:`load_all` give one callable per ``LSTM`` node; :func:`load_model`
runs the whole model like ``onnxruntime.InferenceSession``: its ``LSTM`` nodes on our
backends, every other node through onnx's own :class:`onnx.reference.ReferenceEvaluator`.

Outputs have exactly the operator's shapes and values — onnxruntime is the oracle,
including its choices where the ONNX specification is silent:

* rows of ``Y`` past a row's ``sequence_lens`` are 0;
* a row of length 0 has ``Y_h = Y_c = 0`` (the backends' own ``forward`` keeps the initial
  state there, like PyTorch; the callable maps one convention to the other);
* ``clip`` bounds every gate pre-activation after the bias and the peephole term are
  added, not the cell state; the output gate's peephole reads the new cell state;
  ``input_forget`` sets ``f = 1 - i`` after the activation of ``i``;
* ``activation_alpha``/``activation_beta`` are consumed in the order of the activation
  functions, each only by the functions that take that parameter.

Where onnxruntime refuses, this module computes: ``layout = 1``, and float64 models.

Weights (``W``, ``R``, ``B``, ``P``) that are initializers or ``Constant`` outputs are
converted once, at load.  Weights that are not constants of the model (graph inputs, or
computed by other nodes) are given at call time — ``m(X, W=W, R=R)`` or, by tensor name,
``m.run(feeds)`` — and converted at every call.
"""

from __future__ import annotations

from ._models import DEFAULT_DIM, ModelInput, OnnxModel, load_model, random_feeds
from ._models import _cli_run as _cli_run  # (the command line's ``onnx --run``)
from ._nodes import KNOWN_ATTRIBUTES, OnnxLSTM, check_against_onnxruntime, load, load_all

__all__ = ["DEFAULT_DIM", "KNOWN_ATTRIBUTES", "ModelInput", "OnnxLSTM", "OnnxModel", "check_against_onnxruntime",
           "load", "load_all", "load_model", "random_feeds"]
