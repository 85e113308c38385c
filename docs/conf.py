"""Sphinx configuration for lstm_backends."""

import sys
from importlib.metadata import version as _version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "_ext"))

project = "lstm_backends"
author = "lstm_backends developers"
copyright = "2026, lstm_backends developers"  # noqa: A001
release = _version("lstm-backends")
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.doctest",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
    "numpydoc",
    "matplotlib.sphinxext.plot_directive",
    "example_output",  # docs/_ext: embedding.rst runs examples/embed_*.py and shows what they print
]
# training.rst runs examples/train_numpy.py to draw its figure: one small PNG, source shown
plot_include_source = True
plot_html_show_source_link = False
plot_html_show_formats = False
plot_formats = [("png", 90)]
autosummary_generate = True
autodoc_typehints = "none"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_validation_checks: set[str] = set()
html_theme = "furo"
html_title = "lstm_backends"
html_static_path = ["_static"]
exclude_patterns = ["_build", "_*.rst"]  # _*.rst: fragments that pages include
intersphinx_mapping: dict[str, tuple[str, None]] = {}
# no doctest_global_setup: every page shows its own imports in its first example, and the
# doctest build (which would fail on a missing one) keeps it that way
nitpicky = False
