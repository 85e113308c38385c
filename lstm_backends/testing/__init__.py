"""Testing tools for backend authors: random problems, the float64 reference, tolerances,
and the conformance suite every backend must pass.

>>> import lstm_backends.testing as lt
>>> [r.passed for r in lt.run_conformance("numpy", ["forward"])]
[True]

Under pytest: ``pytest --pyargs lstm_backends.testing --lstm-backend NAME``.
"""

from ._compare import TOLERANCES, assert_close, to_host, worst_error
from ._problems import Problem, random_params, random_problem, reference_backward, reference_cell, reference_forward
from .conformance import CHECKS, CheckResult, ConformanceError, requirements, run_conformance

__all__ = [
    "CHECKS",
    "TOLERANCES",
    "CheckResult",
    "ConformanceError",
    "Problem",
    "assert_close",
    "random_params",
    "random_problem",
    "reference_backward",
    "reference_cell",
    "reference_forward",
    "requirements",
    "run_conformance",
    "to_host",
    "worst_error",
]
