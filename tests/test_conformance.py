"""The shared conformance suite over every known backend.

Unavailable backends show as skipped with their reason; ``--lstm-backend NAME`` or
``LSTM_BACKENDS_TEST_BACKEND=NAME`` narrows the run to one backend (and fails if it
is unavailable).
"""

from lstm_backends.testing.test_conformance import test_conformance  # noqa: F401
