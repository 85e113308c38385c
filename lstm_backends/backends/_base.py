"""The backend protocol: one class per backend, the same methods everywhere.

A backend subclasses :class:`Backend`, sets the class-level metadata, and
implements two kernels over validated, preallocated arrays:

* ``_forward(args)`` writes ``args.y``, ``args.h_n``, ``args.c_n`` for one layer and
  one direction (:class:`~lstm_backends._validation.ForwardArgs`);
* ``_cell(args)`` writes ``args.h_out``, ``args.c_out`` for one step
  (:class:`~lstm_backends._validation.CellArgs`).

Validation, allocation and the empty-problem edge cases happen here, once, so
kernels never see a bad input.  A backend may override ``forward``/``cell``
(e.g. to accept device arrays) or ``forward_layers`` (to fuse a whole stack).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, NamedTuple

import numpy as np

from .._params import LSTMParams
from .._validation import (
    DEFAULT_DTYPES,
    CellArgs,
    ForwardArgs,
    prepare_cell,
    prepare_forward,
)

__all__ = ["Availability", "Backend"]


class Availability(NamedTuple):
    """Whether a backend can run here, and if not, why.

    Truthy exactly when ``available`` is true, so ``if Backend.is_available():`` works.
    """

    available: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return bool(self.available)


class Backend:
    """Base class of every backend (built-in or plugin).

    Attributes
    ----------
    name : str
        Registry name (``"numpy"``, ``"numba"``, …).
    description : str
        One line saying what it is.
    dtypes : tuple of numpy.dtype
        Dtypes it computes in.
    install_hint : str
        What to do when unavailable (e.g. ``pip install "lstm-backends[cuda]"``).
    url : str
        Where to read more.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    dtypes: ClassVar[tuple[np.dtype, ...]] = DEFAULT_DTYPES
    install_hint: ClassVar[str] = ""
    url: ClassVar[str] = ""
    #: Rank for ``get_backend("auto")`` (higher wins); ``None`` never picked by auto.
    auto_priority: ClassVar[int | None] = None

    # ------------------------------------------------------------------ metadata
    @classmethod
    def is_available(cls) -> Availability:
        """Whether this backend can run here; never imports heavy modules or has side effects.

        Returns
        -------
        Availability
            ``(available, reason)``; ``reason`` explains an unavailable backend.
        """
        return Availability(True, "")

    @classmethod
    def auto_eligible(cls) -> bool:
        """Whether ``auto`` may pick this (available) backend, e.g. not a simulator."""
        return True

    @classmethod
    def version(cls) -> str:
        """Version of the library doing the work (e.g. Numba's); ``""`` when not applicable."""
        return ""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} backend {self.name!r}>"

    # ------------------------------------------------------------------ public API
    def forward(
        self,
        x: Any,
        params: LSTMParams | Sequence[Any],
        h0: Any = None,
        c0: Any = None,
        *,
        lengths: Any = None,
        reverse: bool = False,
        out: tuple[Any, Any, Any] | None = None,
    ) -> tuple[Any, Any, Any]:
        """Run one LSTM layer in one direction over a whole sequence.

        Parameters
        ----------
        x : array, shape (T, B, I)
            Time-major input.
        params : LSTMParams or 4-tuple
            ``w_ih`` (4H, I), ``w_hh`` (4H, H), ``b_ih`` (4H,), ``b_hh`` (4H,), gates i, f, g, o.
        h0, c0 : array, shape (B, H), optional
            Initial hidden and cell state; zeros when omitted.
        lengths : array_like of int, shape (B,), optional
            Valid steps per batch row, ``0 <= lengths[b] <= T``.  Row b runs steps
            ``t < lengths[b]`` only; ``y[t, b] = 0`` beyond; ``h_n[b], c_n[b]`` are the
            state after its last valid step (the initial state when the length is 0).
        reverse : bool
            Run each row backwards over its valid part, ``t = lengths[b]-1 … 0``.
        out : tuple (y, h_n, c_n), optional
            Preallocated C-contiguous outputs of shapes (T, B, H), (B, H), (B, H).

        Returns
        -------
        y : array, shape (T, B, H)
            Hidden state at every step.
        h_n, c_n : array, shape (B, H)
            Final hidden and cell state.
        """
        args = prepare_forward(
            x, params, h0, c0, lengths=lengths, reverse=reverse, out=out, dtypes=self.dtypes
        )
        if args.steps == 0 or args.batch == 0:
            args.y[...] = 0
            args.h_n[...] = args.h0
            args.c_n[...] = args.c0
        else:
            self._forward(args)
        return args.y, args.h_n, args.c_n

    def cell(
        self,
        x: Any,
        h: Any,
        c: Any,
        params: LSTMParams | Sequence[Any],
        *,
        out: tuple[Any, Any] | None = None,
    ) -> tuple[Any, Any]:
        """Advance the LSTM by one step (streaming inference).

        Parameters
        ----------
        x : array, shape (B, I)
            Input at this step.
        h, c : array, shape (B, H)
            Current hidden and cell state.
        params : LSTMParams or 4-tuple
            As for :meth:`forward`.
        out : tuple (h_out, c_out), optional
            Preallocated outputs of shape (B, H); may be ``(h, c)`` themselves to
            update the state in place.

        Returns
        -------
        h_new, c_new : array, shape (B, H)
        """
        args = prepare_cell(x, h, c, params, out=out, dtypes=self.dtypes)
        if args.batch:
            self._cell(args)
        return args.h_out, args.c_out

    def forward_layers(
        self,
        x: Any,
        layers: Sequence[Sequence[LSTMParams]],
        h0: Any = None,
        c0: Any = None,
        *,
        lengths: Any = None,
    ) -> tuple[Any, Any, Any]:
        """Run a stacked, optionally bidirectional LSTM, composed from :meth:`forward`.

        Parameters
        ----------
        x : array, shape (T, B, I)
        layers : sequence over layers of sequences over directions of LSTMParams
            ``layers[l][0]`` runs forward, ``layers[l][1]`` (if present) in reverse.
            Layer ``l > 0`` takes inputs of size ``H * num_directions``.
        h0, c0 : array, shape (L * D, B, H), optional
            Initial states, index ``l * D + d`` like PyTorch.
        lengths : array_like of int, shape (B,), optional

        Returns
        -------
        y : array, shape (T, B, D * H)
        h_n, c_n : array, shape (L * D, B, H)
        """
        num_dirs = len(layers[0])
        h_list, c_list = [], []
        layer_input = x
        for layer_index, layer in enumerate(layers):
            outputs = []
            for d, p in enumerate(layer):
                k = layer_index * num_dirs + d
                y, h_n, c_n = self.forward(
                    layer_input,
                    p,
                    None if h0 is None else h0[k],
                    None if c0 is None else c0[k],
                    lengths=lengths,
                    reverse=d == 1,
                )
                outputs.append(y)
                h_list.append(h_n)
                c_list.append(c_n)
            layer_input = outputs[0] if num_dirs == 1 else np.concatenate(outputs, axis=-1)
        return layer_input, np.stack(h_list), np.stack(c_list)

    # ------------------------------------------------------------------ kernels
    def _forward(self, args: ForwardArgs) -> None:
        """Write ``args.y``, ``args.h_n``, ``args.c_n`` (``T, B >= 1``); see :class:`ForwardArgs`."""
        raise NotImplementedError(f"backend {self.name!r} does not implement forward")

    def _cell(self, args: CellArgs) -> None:
        """Write ``args.h_out``, ``args.c_out`` (``B >= 1``); they may alias ``args.h``, ``args.c``."""
        raise NotImplementedError(f"backend {self.name!r} does not implement cell")
