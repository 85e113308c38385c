"""LSTM steps as ``numba.cuda`` device functions, for the user's own ``@cuda.jit`` kernels.

A decoder, a simulation or a filter that steps an LSTM on the GPU calls these functions
from inside its own kernel, so a whole loop of steps, and whatever the user computes
between them, runs in one launch: no Python and no launch per step.

* :func:`prepare` checks an :class:`~lstm_backends.LSTMParams` and copies it once to the
  device, transposed for coalesced reads: a :class:`DeviceLSTMWeights` (an immutable
  namedtuple of device arrays and scalars that a kernel takes as one argument);
* :func:`step_function` returns the device function compiled for the weights' features
  (projection, peepholes, ``clip``, ``input_forget``): ``step`` (one batch row per
  thread block) or, with ``rows=True``, ``step_rows`` (``R`` rows per block);
* :func:`threads_per_block` suggests a block size.

Shapes (``S`` is ``P`` with a projection, else ``H``; ``R`` rows for ``step_rows``)::

    step(x, h, c, w, h_out, c_out, m=None)
        x (I,)  h (S,)  c (H,)  h_out (S,)  c_out (H,)  m (H,)     one batch row
    step_rows(x, h, c, w, h_out, c_out, m=None)
        x (R, I)  h (R, S)  c (R, H)  h_out (R, S)  c_out (R, H)  m (R, H)

``m`` (scratch) is required with a projection and unused without.

Math of one step of one row, gates stacked ``i, f, g, o`` as everywhere in the package
(``p = w_peep`` only with peepholes; ``clip`` bounds each pre-activation ``z`` to
``[-clip, clip]`` before its nonlinearity, NaN stays NaN; ``input_forget`` sets
``f = 1 - i``)::

    z = W_ih x + W_hh h + b_ih + b_hh                              # (4H,)
    i = σ(z_i + p_i ⊙ c)    f = σ(z_f + p_f ⊙ c)    g = tanh(z_g)
    c_out = f ⊙ c + i ⊙ g
    o = σ(z_o + p_o ⊙ c_out)
    m = o ⊙ tanh(c_out)
    h_out = W_hr m  (projection)    or    h_out = m

This is the package's cell (``Backend.cell``), checked against the float64 NumPy reference.

See Also
--------
lstm_backends.backends.cuda_backend.CudaBackend : whole sequences and streaming cells,
    called from Python.

Notes
-----
The cooperative contract, in the manner of cuDNN's and CUTLASS's device-level APIs:

**Who calls.**  All threads of one thread block cooperate on one batch row (``step``)
or on ``R`` rows (``step_rows``).  *Every* thread of the block calls the function, with
the same arguments, from uniform control flow: no thread may skip the call or leave
before it (a variant with a projection executes ``cuda.syncthreads()``).  Any block
shape (1-, 2- or 3-D; threads are ranked ``x`` fastest) and any size from 1 up works;
:func:`threads_per_block` gives a good one (one thread per hidden unit, a multiple of
32, at most 512 for ``step`` and 256 for ``step_rows``: a kernel calling ``step`` uses
about 70-110 registers per thread, one calling ``step_rows`` 140-175).  Blocks are
independent: different blocks step different rows (their own ``h_out``, ``c_out``,
``m``); nothing is communicated between blocks.

**Work split.**  The thread of rank ``r`` in a block of ``n`` threads computes the four
gates of the hidden units ``u = r, r + n, r + 2n, …`` (``step_rows``: the items
``j = r, r + n, …`` of ``R * H``, row ``j // H``, unit ``j % H``) and owns ``c[u]``,
``c_out[u]`` and ``m[u]`` (and ``h_out[u]`` without a projection); with a projection it
then computes ``h_out[q]`` for ``q = r, r + n, …``.  Every thread reads all of ``x``
and ``h``.

**Memory.**  The function allocates nothing (no shared, local or global memory;
registers only): the block's shared memory is all the caller's.  ``x``, ``h``, ``c``,
``h_out``, ``c_out`` and ``m`` are the caller's arrays, in global or shared memory, any
strides (typically row views such as ``xs[t, b]``).  The weights are the device arrays
of :func:`prepare` (global memory), only read.

**Aliasing.**  ``h_out`` must not overlap ``h``: other threads still read ``h`` while a
thread writes its part of ``h_out``, so keep two buffers and swap them every step
(double buffering).  ``c_out`` may be ``c`` itself (the same array: each ``c[u]`` is read
and then written by the one thread that owns it), so ``c`` is updated in place.  No other
overlap is allowed between the outputs (``h_out``, ``c_out``, ``m``), the inputs and the
weights.  ``x`` may overlap ``h`` (both are only read): a decoder with ``I == S`` may
feed ``h`` back as ``x``.

**Synchronisation the caller owes.**  (1) Before a call, what it reads must be complete:
a ``cuda.syncthreads()`` after the caller's own writes to ``x``, ``h`` or ``c`` (loading
``x`` into shared memory, writing ``h0``).  (2) After a call, ``h_out``, ``c_out`` and
``m`` are complete only after a ``cuda.syncthreads()``, owed before any thread reads
them and before the next step: in a loop of steps, one ``cuda.syncthreads()`` after
each step, which also covers the reuse of ``m`` and of the other buffer.

**Synchronisation done inside.**  Without a projection: none.  With a projection:
exactly one ``cuda.syncthreads()``, after every thread has written its units of ``m``
and before ``h_out = W_hr m`` reads them.  No barrier on entry or on return.

**Precision.**  float32 or float64, the dtype of the prepared weights; every array
passed has that dtype.  All arithmetic is in that dtype (constants are typed from the
arrays: a float32 kernel has no float64 instruction, which the tests check in the PTX).

**Features.**  Projection, peepholes, ``clip`` and ``input_forget`` are compile-time
variants: :func:`step_function` returns the device function of one combination, in whose
machine code a feature that is off does not exist (with ``input_forget`` the forget
gate's weights are not even read).  A step called with weights of other features, with
arrays of the wrong shapes or of another dtype computes nothing and writes NaN into
``h_out`` and ``c_out`` (as far as they reach): a loud result instead of a wrong one or
an out-of-bounds access (one uniform check per call, outside the loops).

**Lengths, direction.**  The caller's loop decides.  With one row per block,
``if t < lengths[b]:`` around the step is uniform across the block; count the steps
taken (``s``) and index the double buffer by ``s``, not ``t``, so the last state is in
``hbuf[s % 2]``.  A reverse direction runs ``t`` backwards.

**Cost.**  A step reads each weight once per row (``4H (I + S) + P H`` values, the
forget gate's ``H (I + S)`` fewer with ``input_forget``), from L2 when the weights fit
there; one block runs on one SM, so a row's step takes about the weight bytes over one
SM's bandwidth from L2.  For many rows at once the ``cuda`` backend's ``forward`` and
``cell`` (tiled GEMMs over all rows) read each weight once per tile of rows instead.

**Layout** (:class:`DeviceLSTMWeights`).  The matrices are stored transposed, so that
the threads of consecutive hidden units read consecutive addresses:
``w_ih_t[k, g * H + u] = w_ih[g * H + u, k]``, likewise ``w_hh_t``, and
``w_hr_t[u, q] = w_hr[q, u]``; ``bias = b_ih + b_hh``.

Examples
--------
A user kernel: one block per batch row, ``T`` steps in one launch, ``h`` double
buffered in global memory, ``c`` updated in place (not run here: it needs a GPU or the
CUDA simulator)::

    import numpy as np
    from numba import cuda
    from lstm_backends import cuda_device as lcd

    w = lcd.prepare(params)            # LSTMParams -> DeviceLSTMWeights on the GPU
    step = lcd.step_function(w)        # compiled for w's features

    @cuda.jit
    def run(xs, w, hbuf, c, ys):       # xs (T, B, I), hbuf (2, B, S), c (B, H), ys (T, B, S)
        b = cuda.blockIdx.x
        for t in range(xs.shape[0]):
            h_out = hbuf[(t + 1) % 2, b]
            step(xs[t, b], hbuf[t % 2, b], c[b], w, h_out, c[b])   # every thread calls it
            cuda.syncthreads()         # h_out complete: readable by all, next step may run
            for j in range(cuda.threadIdx.x, h_out.shape[0], cuda.blockDim.x):
                ys[t, b, j] = h_out[j]

    run[B, lcd.threads_per_block(w)](xs, w, hbuf, c, ys)   # hbuf[0] holds h0 on entry
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import numpy as np

from ._validation import DEFAULT_DTYPES, is_device_array, validate_options, validate_params

try:
    from numba import cuda
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        f'lstm_backends.cuda_device needs numba-cuda ({exc}): pip install "lstm-backends[cuda]"'
    ) from exc

__all__ = ["DeviceLSTMWeights", "Variant", "prepare", "step_function", "threads_per_block"]


class Variant(NamedTuple):
    """The features a step device function is compiled for (see :func:`step_function`).

    Attributes
    ----------
    projection : bool
        ``w_hr`` (LSTMP): ``h_out = W_hr (o ⊙ tanh c)``; needs the scratch argument ``m``.
    peephole : bool
        ``w_peep`` (3, H): peepholes of gates i, f, o.
    clip : bool
        Pre-activations bounded by ``DeviceLSTMWeights.clip``.
    input_forget : bool
        Coupled gates, ``f = 1 - i``.
    """

    projection: bool = False
    peephole: bool = False
    clip: bool = False
    input_forget: bool = False

    def name(self) -> str:
        """``"plain"`` or the features joined by ``+`` (e.g. ``"projection+clip"``)."""
        on = [f for f, v in zip(self._fields, self) if v]
        return "+".join(on) if on else "plain"


class DeviceLSTMWeights(NamedTuple):
    """Prepared weights of one LSTM layer and direction, for the device functions.

    Immutable (a namedtuple of its own device copies: later changes to the ``params``
    given to :func:`prepare` do not reach it; the device functions never write to it).
    Pass it whole to your ``@cuda.jit`` kernel, as one argument: Numba passes a namedtuple
    of device arrays and scalars to a kernel.  ``S`` is ``P`` with a projection, else ``H``.

    Attributes
    ----------
    w_ih_t : device array, shape (I, 4H)
        ``w_ih.T``, C-contiguous: ``w_ih_t[k, g * H + u]`` is gate ``g`` (i, f, g, o) of unit
        ``u`` for input ``k``, so the threads of consecutive units read consecutive addresses.
    w_hh_t : device array, shape (S, 4H)
        ``w_hh.T``, C-contiguous.
    bias : device array, shape (4H,)
        ``b_ih + b_hh`` (summed in float64, then rounded once to the dtype).
    w_hr_t : device array, shape (H, P), or (0, 0) without a projection
        ``w_hr.T``, C-contiguous.
    w_peep : device array, shape (3, H), or (0, 0) without peepholes
        Peepholes of gates i, f, o (rows in that order).
    clip : numpy scalar of the dtype
        The bound of every pre-activation; ``0`` means no clipping.
    input_forget : bool
        ``f = 1 - i``.
    input_size, hidden_size, state_size, proj_size : int
        ``I``, ``H``, ``S`` (the width of ``h``) and ``P`` (0 without a projection).
    """

    w_ih_t: Any
    w_hh_t: Any
    bias: Any
    w_hr_t: Any
    w_peep: Any
    clip: Any
    input_forget: bool
    input_size: int
    hidden_size: int
    state_size: int
    proj_size: int

    @property
    def dtype(self) -> np.dtype:
        """The dtype every array passed to the step must have (float32 or float64)."""
        return np.dtype(self.bias.dtype)

    @property
    def variant(self) -> Variant:
        """The features of these weights: what :func:`step_function` compiles for."""
        return Variant(projection=self.proj_size > 0, peephole=self.w_peep.shape[0] > 0,
                       clip=bool(self.clip > 0), input_forget=bool(self.input_forget))


def _to_host(a: Any) -> np.ndarray:
    """A NumPy copy of a device array (Numba, CuPy, PyTorch CUDA), or the array itself."""
    if a is None or not is_device_array(a):
        return a
    for method in ("copy_to_host", "get"):
        if callable(getattr(a, method, None)):
            return np.asarray(getattr(a, method)())
    if callable(getattr(a, "cpu", None)):
        return a.detach().cpu().numpy() if callable(getattr(a, "detach", None)) else a.cpu().numpy()
    raise TypeError(f"cannot copy {type(a).__name__} to the host; pass NumPy arrays")


def prepare(
    params: Any,
    *,
    dtype: Any = None,
    clip: float | None = None,
    input_forget: bool = False,
    precision: str | None = None,
    stream: Any = 0,
    to_device: bool = True,
) -> DeviceLSTMWeights:
    """Check ``params`` and copy them to the device in the layout the device functions read.

    Done once per set of weights (a copy, a transpose and a sum on the host), never per step.

    Parameters
    ----------
    params : LSTMParams or tuple of 4 to 6 arrays
        ``w_ih`` (4H, I), ``w_hh`` (4H, S), ``b_ih`` (4H,) or None, ``b_hh`` (4H,) or None,
        ``w_hr`` (P, H) or None, ``w_peep`` (3, H) or None; host arrays, or device arrays
        (``__cuda_array_interface__``, copied through the host once).  All of one dtype,
        float32 or float64.
    dtype : numpy dtype, optional
        The dtype the device functions compute in (float32 or float64).  Default: that of
        ``params``.  Given explicitly, ``params`` are converted to it (the only conversion:
        nothing is converted without asking).
    clip : positive float, optional
        Bound of every gate pre-activation (ONNX ``clip``).
    input_forget : bool
        Couple the gates: ``f = 1 - i`` (ONNX ``input_forget``).
    precision : None
        Only ``None`` (the dtype's own arithmetic).  The reduced-precision products of the
        backends' ``prepare`` (``"bf16"``, ``"bf16x3"``) are not available in the device
        functions: such a ``precision``, or ``params`` prepared with one, is refused.
    stream : numba.cuda stream, optional
        Stream the copies are queued on (``0``: the default stream).  Kernels on another
        stream must wait for it.
    to_device : bool
        ``False``: the same tuple with NumPy arrays, not copied to a GPU (to inspect the
        layout, or to type a kernel signature with ``numba.typeof`` for
        ``numba.cuda.compile_ptx`` without a GPU).

    Returns
    -------
    DeviceLSTMWeights
        Immutable; pass it to your kernel, and to :func:`step_function`.

    Raises
    ------
    ValueError
        A parameter of the wrong shape (named, with the shape received and expected), a
        ``clip`` that is not a positive number, an ``input_forget`` that is not a bool, or a
        ``precision`` other than None (asked for, or of prepared ``params``).
    TypeError
        Parameters that are not floating point, of mixed dtypes, or of a dtype other than
        float32/float64; an unsupported ``dtype``.
    """
    if precision is not None:
        raise ValueError(
            f"precision={precision!r} is not available in lstm_backends.cuda_device: the device functions "
            "compute in the dtype's own arithmetic (float32 or float64), without the 'bf16'/'bf16x3' products "
            "of Backend.prepare; pass precision=None"
        )
    prepared = None if isinstance(params, tuple) else getattr(params, "precision", None)
    if prepared is not None:  # weights a backend prepared for reduced-precision products
        raise ValueError(
            f"params were prepared with precision={prepared!r}, which lstm_backends.cuda_device does not have "
            "(the device functions compute in the dtype's own arithmetic); pass the LSTMParams themselves"
        )
    spec = validate_params(params, dtypes=DEFAULT_DTYPES, device_ok=True)
    options = validate_options(clip, input_forget)
    if dtype is None:
        target = spec.dtype
    else:
        try:
            target = np.dtype(dtype)
        except TypeError:
            target = None
        if target is None or target not in DEFAULT_DTYPES:
            raise TypeError(f"dtype must be np.float32 or np.float64 (the dtypes the device functions compute in); "
                            f"got {dtype!r}")
    hidden, proj = spec.hidden_size, spec.proj_size

    def own(a: Any) -> np.ndarray:  # a C-ordered copy of our own in the target dtype
        return np.array(a, dtype=target, order="C", copy=True)

    def t(a: Any) -> np.ndarray:
        return own(np.asarray(_to_host(a)).T)

    bias = np.zeros(4 * hidden, np.float64)
    for b in (spec.b_ih, spec.b_hh):
        if b is not None:
            bias += np.asarray(_to_host(b), np.float64)
    empty = np.zeros((0, 0), target)
    host = DeviceLSTMWeights(
        w_ih_t=t(spec.w_ih),
        w_hh_t=t(spec.w_hh),
        bias=bias.astype(target),
        w_hr_t=t(spec.w_hr) if proj else empty,
        w_peep=own(_to_host(spec.w_peep)) if spec.w_peep is not None else empty,
        clip=target.type(options.clip if options.clip is not None else 0),
        input_forget=options.input_forget,
        input_size=int(spec.input_size),
        hidden_size=int(hidden),
        state_size=int(spec.state_size),
        proj_size=int(proj),
    )
    if not to_device:
        return host
    arrays = {k: cuda.to_device(getattr(host, k), stream=stream)
              for k in ("w_ih_t", "w_hh_t", "bias", "w_hr_t", "w_peep")}
    return host._replace(**arrays)


def threads_per_block(w: DeviceLSTMWeights, rows: int = 1) -> int:
    """A good block size for ``step`` (``rows=1``) or ``step_rows`` (``rows=R``).

    One thread per work item (each hidden unit of each row, or each projected unit), rounded
    up to a multiple of 32, at most 512 for ``step`` and 256 for ``step_rows``.  The caps come
    from registers: a kernel that calls ``step`` uses about 70-110 registers per thread, one
    that calls ``step_rows`` 140-175 (ptxas for sm_90, the test suite's user kernels), and a
    block may use at most 65536.  Larger layers run with each thread taking several units.

    Parameters
    ----------
    w : DeviceLSTMWeights
        The prepared weights (their ``H`` and ``P``).
    rows : int
        Batch rows per block: 1 for ``step``, ``R`` for ``step_rows``.

    Returns
    -------
    int
        Threads per block (use it as the kernel's block size).
    """
    items = rows * max(w.hidden_size, w.proj_size)
    cap = 512 if rows == 1 else 256
    return int(min(cap, max(32, -(-items // 32) * 32)))


def step_function(
    w: DeviceLSTMWeights | Variant | None = None,
    *,
    rows: bool = False,
    projection: bool = False,
    peephole: bool = False,
    clip: bool = False,
    input_forget: bool = False,
) -> Any:
    """The step device function compiled for one combination of features.

    Parameters
    ----------
    w : DeviceLSTMWeights or Variant, optional
        Prepared weights (their features are used) or a :class:`Variant`.  Omitted: the
        features given as keywords.
    rows : bool
        ``False``: ``step`` (one batch row per call, 1-D arrays).  ``True``: ``step_rows``
        (``R`` rows per call, 2-D arrays whose first axis is the row).
    projection, peephole, clip, input_forget : bool
        The features, when ``w`` is omitted.

    Returns
    -------
    numba.cuda device function
        ``step(x, h, c, w, h_out, c_out, m=None)`` (``m`` is required with a projection)
        with the arrays (all of the weights' dtype)

        * ``x`` : (I,) — or (R, I) for ``rows=True``
        * ``h`` : (S,) — (R, S); the state before the step
        * ``c`` : (H,) — (R, H)
        * ``w`` : :class:`DeviceLSTMWeights` of this variant
        * ``h_out`` : (S,) — (R, S); written, must not overlap ``h``
        * ``c_out`` : (H,) — (R, H); written, may be ``c`` (in place)
        * ``m`` : (H,) — (R, H); scratch of a projection: ``o ⊙ tanh(c_out)`` on return

        Called by every thread of the block (see the module's contract).  The same object
        for the same variant (cached), so kernels that use it are compiled once.

    Raises
    ------
    TypeError
        ``w`` is neither prepared weights nor a Variant, or ``w`` and feature keywords are
        both given.
    """
    if w is None:
        variant = Variant(bool(projection), bool(peephole), bool(clip), bool(input_forget))
    else:
        if projection or peephole or clip or input_forget:
            raise TypeError("pass either w (prepared weights or a Variant) or feature keywords, not both")
        if isinstance(w, DeviceLSTMWeights):
            variant = w.variant
        elif isinstance(w, Variant):
            variant = w
        else:
            raise TypeError(f"w must be DeviceLSTMWeights (from prepare) or a Variant; got {type(w).__name__}")
    return _build(*(bool(v) for v in variant), bool(rows))


# ---------------------------------------------------------------------------- device code
def _device(fn: Any) -> Any:
    # IR-inlined into the caller: no call overhead, and numba.cuda.compile_ptx needs no GPU.
    return cuda.jit(device=True, inline="always")(fn)


@_device
def _rank():
    """(rank of this thread in its block, x fastest; threads in the block)."""
    nx = cuda.blockDim.x
    ny = cuda.blockDim.y
    r = cuda.threadIdx.x + nx * (cuda.threadIdx.y + ny * cuda.threadIdx.z)
    return r, nx * ny * cuda.blockDim.z


@_device
def _bound(z, limit):
    """z limited to [-limit, limit]; NaN stays NaN (both comparisons are false)."""
    if z > limit:
        return limit
    if z < -limit:
        return -limit
    return z


@functools.cache
def _build(projection: bool, peephole: bool, clip: bool, input_forget: bool, rows: bool) -> Any:
    # The features are closure constants: numba freezes them into the compiled code, and a
    # branch on a feature that is off is removed by the compiler.
    PROJECT, PEEPHOLE, CLIP, COUPLED = projection, peephole, clip, input_forget  # noqa: N806
    variant = Variant(projection, peephole, clip, input_forget)

    def features_match(w):
        """Whether the weights have exactly this variant's features (uniform across the block)."""
        ok = (w.proj_size > 0) == PROJECT and (w.clip > 0) == CLIP and w.input_forget == COUPLED
        if PEEPHOLE:
            return ok and w.w_peep.shape[0] == 3 and w.w_peep.shape[1] == w.hidden_size
        return ok and w.w_peep.shape[0] == 0

    features_match = _device(features_match)

    def same_dtype(x, h, c, h_out, c_out, m, w):
        """Whether every array has the weights' dtype (float32 and float64 differ in itemsize)."""
        size = w.bias.itemsize
        ok = x.itemsize == size and h.itemsize == size and c.itemsize == size
        return ok and h_out.itemsize == size and c_out.itemsize == size and m.itemsize == size

    same_dtype = _device(same_dtype)

    def unit(x, h, c_prev, w, u, half):
        """(m_u, c_new) of hidden unit u: o * tanh(c_new) and the new cell state."""
        hidden = w.hidden_size
        bias = w.bias
        gi = bias[u]
        gf = bias[hidden + u]
        gg = bias[2 * hidden + u]
        go = bias[3 * hidden + u]
        w_ih = w.w_ih_t
        for k in range(w.input_size):
            xk = x[k]
            gi += xk * w_ih[k, u]
            if not COUPLED:  # coupled gates: the forget gate's weights are never read
                gf += xk * w_ih[k, hidden + u]
            gg += xk * w_ih[k, 2 * hidden + u]
            go += xk * w_ih[k, 3 * hidden + u]
        w_hh = w.w_hh_t
        for k in range(w.state_size):
            hk = h[k]
            gi += hk * w_hh[k, u]
            if not COUPLED:
                gf += hk * w_hh[k, hidden + u]
            gg += hk * w_hh[k, 2 * hidden + u]
            go += hk * w_hh[k, 3 * hidden + u]
        if PEEPHOLE:
            gi += w.w_peep[0, u] * c_prev
            gf += w.w_peep[1, u] * c_prev
        if CLIP:
            gi = _bound(gi, w.clip)
            gg = _bound(gg, w.clip)
        # sigmoid(z) = (1 + tanh(z / 2)) / 2: no exp to overflow at any input
        i = half + half * math.tanh(half * gi)
        if COUPLED:
            f = (half + half) - i
        else:
            if CLIP:
                gf = _bound(gf, w.clip)
            f = half + half * math.tanh(half * gf)
        g = math.tanh(gg)
        c_new = f * c_prev + i * g
        if PEEPHOLE:
            go += w.w_peep[2, u] * c_new
        if CLIP:
            go = _bound(go, w.clip)
        o = half + half * math.tanh(half * go)
        return o * math.tanh(c_new), c_new

    unit = _device(unit)

    def project(m, w, q):
        """sum_u w_hr[q, u] * m[u]: unit q of the projected h."""
        w_hr = w.w_hr_t
        acc = w_hr[0, q] * m[0]
        for u in range(1, w.hidden_size):
            acc += w_hr[u, q] * m[u]
        return acc

    project = _device(project)

    if not rows:
        def core(x, h, c, w, h_out, c_out, m):
            r, n = _rank()
            hidden = w.hidden_size
            ok = features_match(w) and same_dtype(x, h, c, h_out, c_out, m, w)
            ok = ok and x.shape[0] == w.input_size and h.shape[0] == w.state_size
            ok = ok and c.shape[0] == hidden and h_out.shape[0] == w.state_size and c_out.shape[0] == hidden
            if PROJECT:
                ok = ok and m.shape[0] == hidden
            if not ok:  # uniform: every thread of the block sees the same weights and shapes
                nan = c_out.dtype.type(math.nan)
                for j in range(r, h_out.shape[0], n):
                    h_out[j] = nan
                for j in range(r, c_out.shape[0], n):
                    c_out[j] = nan
                return
            half = c_out.dtype.type(0.5)  # typed constants: float32 stays float32
            for u in range(r, hidden, n):
                out, c_new = unit(x, h, c[u], w, u, half)
                c_out[u] = c_new
                if PROJECT:
                    m[u] = out
                else:
                    h_out[u] = out
            if PROJECT:
                cuda.syncthreads()  # every m[u] written before any thread reads all of m
                for q in range(r, w.proj_size, n):
                    h_out[q] = project(m, w, q)
    else:
        def core(x, h, c, w, h_out, c_out, m):
            r, n = _rank()
            hidden = w.hidden_size
            nrows = c.shape[0]
            ok = features_match(w) and same_dtype(x, h, c, h_out, c_out, m, w)
            ok = ok and x.shape[0] == nrows and h.shape[0] == nrows
            ok = ok and h_out.shape[0] == nrows and c_out.shape[0] == nrows
            ok = ok and x.shape[1] == w.input_size and h.shape[1] == w.state_size and c.shape[1] == hidden
            ok = ok and h_out.shape[1] == w.state_size and c_out.shape[1] == hidden
            if PROJECT:
                ok = ok and m.shape[0] == nrows and m.shape[1] == hidden
            if not ok:  # uniform: every thread of the block sees the same weights and shapes
                nan = c_out.dtype.type(math.nan)
                for j in range(r, h_out.shape[0] * h_out.shape[1], n):
                    h_out[j // h_out.shape[1], j % h_out.shape[1]] = nan
                for j in range(r, c_out.shape[0] * c_out.shape[1], n):
                    c_out[j // c_out.shape[1], j % c_out.shape[1]] = nan
                return
            half = c_out.dtype.type(0.5)
            # items j = r, r + n, ... of nrows * hidden as (row b, unit u), stepped without a division per item
            b, u = r // hidden, r % hidden
            db, du = n // hidden, n % hidden
            while b < nrows:
                out, c_new = unit(x[b], h[b], c[b, u], w, u, half)
                c_out[b, u] = c_new
                if PROJECT:
                    m[b, u] = out
                else:
                    h_out[b, u] = out
                b += db
                u += du
                if u >= hidden:
                    u -= hidden
                    b += 1
            if PROJECT:
                cuda.syncthreads()  # every m[b, u] written before any thread reads a whole row of m
                proj = w.proj_size
                b, q = r // proj, r % proj
                db, dq = n // proj, n % proj
                while b < nrows:
                    h_out[b, q] = project(m[b], w, q)
                    b += db
                    q += dq
                    if q >= proj:
                        q -= proj
                        b += 1

    core = _device(core)
    if PROJECT:
        def step(x, h, c, w, h_out, c_out, m):  # m required: omitting it is a typing error naming m
            core(x, h, c, w, h_out, c_out, m)
    else:
        def step(x, h, c, w, h_out, c_out, m=None):  # m unused (c_out only stands in for its type)
            core(x, h, c, w, h_out, c_out, c_out)

    name = ("lstm_step_rows_" if rows else "lstm_step_") + variant.name().replace("+", "_")
    step.__name__ = step.__qualname__ = name
    step.__doc__ = (f"One LSTM step ({variant.name()}) of {'R rows' if rows else 'one batch row'}, called by "
                    "every thread of the block: see lstm_backends.cuda_device.")
    return _device(step)
