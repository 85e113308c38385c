"""``.. example-output:: ../examples/script.py``: run an example script while the page is built and
show what it printed.

The script runs in a fresh process (this Python, its directory as the working directory); a
non-zero exit or a timeout fails the build with its stderr.  Its standard output becomes a literal
block.  The page is read again, and the script rerun, whenever the script changes.  The doctest
builder skips the run (the HTML build has already executed every example once).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

logger = logging.getLogger(__name__)


class ExampleOutput(SphinxDirective):
    """Run the script named by the one argument (relative to this page) and show its stdout."""

    required_arguments = 1
    option_spec = {"timeout": directives.positive_int}

    def run(self) -> list[nodes.Node]:
        rel, path = self.env.relfn2path(self.arguments[0])
        self.env.note_dependency(rel)
        if self.env.app.builder.name == "doctest":
            return []
        script = Path(path)
        if not script.is_file():
            raise self.error(f"example-output: no such script {script}")
        timeout = self.options.get("timeout", 120)
        start = time.perf_counter()
        try:
            done = subprocess.run([sys.executable, str(script)], cwd=script.parent, capture_output=True, text=True,
                                  timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise self.error(f"example-output: {script.name} ran past {timeout} s") from None
        if done.returncode != 0:
            raise self.error(f"example-output: {script.name} exited with {done.returncode}:\n{done.stderr[-3000:]}")
        logger.info(f"example-output: ran {script.name} in {time.perf_counter() - start:.1f} s")
        text = done.stdout.rstrip("\n")
        block = nodes.literal_block(text, text)
        block["language"] = "none"
        return [block]


def setup(app: Any) -> dict[str, Any]:
    app.add_directive("example-output", ExampleOutput)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
