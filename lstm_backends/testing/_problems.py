"""Random LSTM problems and the float64 reference computation."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .._params import LSTMParams

__all__ = ["Problem", "random_params", "random_problem", "reference_backward", "reference_cell", "reference_forward"]


def _new_seed() -> int:
    return int(np.random.SeedSequence().entropy % (2**32))


def random_params(
    input_size: int,
    hidden_size: int,
    *,
    dtype: Any = np.float32,
    rng: np.random.Generator | int | None = None,
    scale: float = 1.0,
    proj_size: int = 0,
    peephole: bool = False,
) -> LSTMParams:
    """Random weights and biases, uniform in ``±scale/sqrt(H)`` (PyTorch's init when scale=1).

    Every entry differs, so a swapped gate or transposed matrix changes the result.

    Parameters
    ----------
    input_size, hidden_size : int
        ``I`` and ``H``.
    dtype : numpy dtype
    rng : numpy.random.Generator or int, optional
    scale : float
    proj_size : int
        ``P > 0``: a projection ``w_hr`` (P, H), and ``w_hh`` is (4H, P).
    peephole : bool
        Random peepholes ``w_peep`` (3, H), uniform in ``±scale`` (large enough to matter).

    Returns
    -------
    LSTMParams
        ``w_ih`` (4H, I), ``w_hh`` (4H, S), ``b_ih`` (4H,), ``b_hh`` (4H,), and ``w_hr``,
        ``w_peep`` when asked for (else ``None``); ``S = P`` with a projection, else ``H``.
    """
    rng = np.random.default_rng(rng)
    bound = scale / np.sqrt(hidden_size)
    width = proj_size or hidden_size
    shapes = [(4 * hidden_size, input_size), (4 * hidden_size, width), (4 * hidden_size,), (4 * hidden_size,)]
    core = [rng.uniform(-bound, bound, s).astype(dtype) for s in shapes]
    w_hr = rng.uniform(-bound, bound, (proj_size, hidden_size)).astype(dtype) if proj_size else None
    w_peep = rng.uniform(-scale, scale, (3, hidden_size)).astype(dtype) if peephole else None
    return LSTMParams(*core, w_hr, w_peep)


@dataclass
class Problem:
    """One random ``forward`` problem; ``seed`` reproduces it.

    Attributes
    ----------
    x : ndarray, shape (T, B, I)
    params : LSTMParams
    h0 : ndarray, shape (B, S), or None
    c0 : ndarray, shape (B, H), or None
    lengths : ndarray of int64, shape (B,), or None
    reverse : bool
    seed : int
    options : dict
        Cell options passed to ``forward`` (``clip``, ``input_forget``, ``activations``).
    precision : str or None
        A precision mode: the params are prepared with it (``backend.prepare(params, precision)``).
    """

    x: np.ndarray
    params: LSTMParams
    h0: np.ndarray | None
    c0: np.ndarray | None
    lengths: np.ndarray | None
    reverse: bool
    seed: int
    options: dict = field(default_factory=dict)
    precision: str | None = None

    @property
    def dtype(self) -> np.dtype:
        return self.x.dtype

    def describe(self) -> str:
        """One line with sizes, dtype, direction, lengths and seed, for failure messages."""
        t, b, i = self.x.shape
        h = self.params.w_hh.shape[0] // 4
        lens = "full" if self.lengths is None else list(map(int, self.lengths))
        state = "given" if self.h0 is not None else "zeros"
        extras = ""
        if self.params.w_hr is not None:
            extras += f" P={self.params.w_hr.shape[0]}"
        if self.params.w_peep is not None:
            extras += " peepholes"
        extras += "".join(f" {k}={v}" for k, v in self.options.items() if v not in (None, False))
        if self.precision is not None:
            extras += f" precision={self.precision}"
        return (
            f"T={t} B={b} I={i} H={h}{extras} {self.x.dtype.name} reverse={self.reverse} "
            f"lengths={lens} h0/c0={state} seed={self.seed}"
        )

    def astype(self, dtype: Any) -> Problem:
        """The same problem with every float array cast to ``dtype``."""
        def cast(a: Any) -> Any:
            return None if a is None else np.asarray(a).astype(dtype)

        return replace(
            self,
            x=cast(self.x),
            params=LSTMParams(*(cast(p) for p in self.params)),
            h0=cast(self.h0),
            c0=cast(self.c0),
        )

    def forward(self, backend: Any) -> tuple[Any, Any, Any]:
        """Run ``backend.forward`` on this problem (on params prepared with its precision, if any)."""
        params = self.params if self.precision is None else backend.prepare(self.params, self.precision)
        return backend.forward(
            self.x, params, self.h0, self.c0, lengths=self.lengths, reverse=self.reverse, **self.options
        )

    def forward_train(self, backend: Any) -> tuple[Any, Any, Any, Any]:
        """Run ``backend.forward_train`` on this problem: ``(y, h_n, c_n, tape)``."""
        return backend.forward_train(
            self.x, self.params, self.h0, self.c0, lengths=self.lengths, reverse=self.reverse, **self.options
        )

    def output_grads(self, seed: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Random gradients of a loss with respect to the outputs, N(0, 1) in the problem's dtype.

        Parameters
        ----------
        seed : int, optional
            Defaults to the problem's seed.

        Returns
        -------
        dy : ndarray, shape (T, B, S)
        dh_n : ndarray, shape (B, S)
        dc_n : ndarray, shape (B, H)
        """
        t, b, _ = self.x.shape
        h = self.params.w_hh.shape[0] // 4
        s = h if self.params.w_hr is None else self.params.w_hr.shape[0]
        rng = np.random.default_rng(self.seed + 1 if seed is None else seed)
        return tuple(rng.standard_normal(shape).astype(self.dtype) for shape in ((t, b, s), (b, s), (b, h)))


def random_problem(
    steps: int,
    batch: int,
    input_size: int,
    hidden_size: int,
    *,
    dtype: Any = np.float32,
    seed: int | None = None,
    lengths: Any = None,
    state: bool = True,
    reverse: bool = False,
    scale: float = 1.0,
    proj_size: int = 0,
    peephole: bool = False,
    **options: Any,
) -> Problem:
    """A random problem: inputs N(0, 1), random weights, optional random state and lengths.

    Parameters
    ----------
    steps, batch, input_size, hidden_size : int
        ``T, B, I, H``.
    dtype : numpy dtype
    seed : int, optional
        Drawn fresh (and recorded in the problem) when omitted.
    lengths : None, "random", or array_like of int, shape (B,)
        ``"random"`` draws lengths in ``[0, T]`` including 0 and T when ``B >= 2``.
    state : bool
        Random ``h0``/``c0`` (else None, meaning zeros).
    reverse : bool
    scale : float
        Weight scale (see :func:`random_params`).
    proj_size, peephole
        Optional projection and peepholes (see :func:`random_params`).
    **options
        Cell options for ``forward`` (``clip=``, ``input_forget=``, ``activations=``).

    Returns
    -------
    Problem
    """
    seed = _new_seed() if seed is None else int(seed)
    rng = np.random.default_rng(seed)
    params = random_params(input_size, hidden_size, dtype=dtype, rng=rng, scale=scale)
    x = rng.standard_normal((steps, batch, input_size)).astype(dtype)
    h0 = c0 = None
    if state:
        h0 = rng.uniform(-1, 1, (batch, hidden_size)).astype(dtype)
        c0 = rng.standard_normal((batch, hidden_size)).astype(dtype)
    if proj_size or peephole:  # drawn after everything else: the plain problem of a seed is unchanged
        extra = random_params(input_size, hidden_size, dtype=dtype, rng=rng, scale=scale, proj_size=proj_size,
                              peephole=peephole)
        params = extra if proj_size else params._replace(w_peep=extra.w_peep)
        if state and proj_size:
            h0 = rng.uniform(-1, 1, (batch, proj_size)).astype(dtype)
    if isinstance(lengths, str):
        if lengths != "random":
            raise ValueError("lengths must be None, 'random' or an array")
        lens = rng.integers(0, steps + 1, batch)
        if batch >= 2:
            lens[0], lens[1] = steps, 0
        lengths = lens
    elif lengths is not None:
        lengths = np.asarray(lengths, dtype=np.int64)
    return Problem(x, params, h0, c0, lengths, bool(reverse), seed, dict(options))


def reference_forward(problem: Problem) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The spec's answer: the ``numpy`` backend run in float64 on the problem.

    Returns
    -------
    y : ndarray, shape (T, B, S), float64
    h_n : ndarray, shape (B, S), float64
    c_n : ndarray, shape (B, H), float64
    """
    from ..backends.numpy_backend import NumpyBackend

    return problem.astype(np.float64).forward(NumpyBackend())


def reference_cell(x: Any, h: Any, c: Any, params: Any, **options: Any) -> tuple[np.ndarray, np.ndarray]:
    """One step of the ``numpy`` backend in float64.

    Parameters
    ----------
    x, h, c, params
        As for ``Backend.cell``.
    **options
        Cell options (``clip=``, ``input_forget=``, ``activations=``).

    Returns
    -------
    h_new : ndarray, shape (B, S), float64
    c_new : ndarray, shape (B, H), float64
    """
    from ..backends.numpy_backend import NumpyBackend

    f64 = [np.asarray(a, dtype=np.float64) for a in (x, h, c)]
    params = LSTMParams(*(None if p is None else np.asarray(p, np.float64) for p in params))
    return NumpyBackend().cell(*f64, params, **options)


def reference_backward(problem: Problem, dy: Any = None, dh_n: Any = None, dc_n: Any = None) -> Any:
    """The spec's gradients: ``forward_train`` and ``backward`` of the ``numpy`` backend in float64.

    Parameters
    ----------
    problem : Problem
    dy, dh_n, dc_n : arrays or None
        Output gradients (cast to float64); ``None``: zeros.

    Returns
    -------
    LSTMGrads
        ``(dx, dh0, dc0, dparams)`` in float64; ``dparams`` has ``None`` where the problem's
        params do.
    """
    from ..backends.numpy_backend import NumpyBackend

    be = NumpyBackend()
    tape = problem.astype(np.float64).forward_train(be)[3]
    f64 = (None if a is None else np.asarray(a, dtype=np.float64) for a in (dy, dh_n, dc_n))
    return be.backward(tape, *f64)
