"""Problem sizes (one parser for the CLI, the scripts and asv), FLOP counts, and the plot
of ``lstm-backends bench``; the fair timing itself is :mod:`lstm_backends._peers`."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, NamedTuple

__all__ = ["Size", "flops", "parse_size", "plot", "print_progress"]


class Size(NamedTuple):
    """A problem size in the library's order: ``x`` is (T, B, I), the hidden size is H."""

    steps: int
    batch: int
    input_size: int
    hidden_size: int

    def __str__(self) -> str:
        return f"T={self.steps},B={self.batch},I={self.input_size},H={self.hidden_size}"

    @property
    def flops(self) -> float:
        """Floating-point operations of one forward (see :func:`flops`)."""
        return flops(self.batch, self.steps, self.input_size, self.hidden_size)


def flops(batch: int, steps: int, input_size: int, hidden_size: int) -> float:
    """Floating-point operations of one forward: ``2 * 4H * (I + H) * B * T`` (the two GEMMs)."""
    return 2.0 * 4 * hidden_size * (input_size + hidden_size) * batch * steps


_KEYS = {"T": 0, "B": 1, "I": 2, "H": 3}


def parse_size(text: str) -> Size:
    """Parse a problem size — the one parser of the CLI, the scripts and asv.

    Two spellings: four integers in the library's order ``"T,B,I,H"`` (``x`` is (T, B, I);
    ``x`` may separate them too: ``100x16x128x256``), or keyed in any order,
    ``"B=16,T=100,I=128,H=256"``.

    Parameters
    ----------
    text : str

    Returns
    -------
    Size

    Raises
    ------
    ValueError
        Not four positive integers, or a key missing, repeated or unknown.
    """
    parts = [p.strip() for p in text.replace("x", ",").split(",")]
    values: list[int | None] = [None] * 4
    try:
        if any("=" in p for p in parts):
            for part in parts:
                key, _, value = part.partition("=")
                k = _KEYS[key.strip().upper()]
                if values[k] is not None:
                    raise KeyError(key)
                values[k] = int(value)
        elif len(parts) == 4:
            values = [int(p) for p in parts]
    except (KeyError, ValueError):
        values = [None] * 4
    if any(v is None for v in values) or min(v for v in values if v is not None) < 1:
        raise ValueError(
            "size must be four positive integers T,B,I,H (the library's order: x is (T, B, I)), "
            f"e.g. 100,16,128,256, or keyed in any order, e.g. B=16,T=100,I=128,H=256; got {text!r}"
        )
    return Size(*values)  # type: ignore[arg-type]


def plot(rows: Sequence[Any], path: str, title: str = "lstm_backends forward") -> None:
    """Bar chart of median time per contender per size (log scale), saved to ``path``.

    ``rows`` are :class:`lstm_backends._peers.Result` (``size``, ``name``, ``median_s``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = list(dict.fromkeys(r.size for r in rows))
    names = list(dict.fromkeys(r.name for r in rows))
    fig, ax = plt.subplots(figsize=(max(6, 1.8 * len(sizes)), 4))
    width = 0.8 / max(1, len(names))
    for j, name in enumerate(names):
        xs, ys = [], []
        for k, s in enumerate(sizes):
            for r in rows:
                if r.size == s and r.name == name:
                    xs.append(k + j * width)
                    ys.append(r.median_s * 1e3)
        ax.bar(xs, ys, width, label=name)
    ax.set_xticks([k + width * (len(names) - 1) / 2 for k in range(len(sizes))])
    ax.set_xticklabels([f"T={t} B={b}\nI={i} H={h}" for t, b, i, h in sizes])
    ax.set_yscale("log")
    ax.set_ylabel("median time per call (ms, log)")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def print_progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
