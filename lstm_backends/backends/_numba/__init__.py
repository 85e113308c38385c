"""Numba kernels of the ``numba`` backend (imported on first use only): the front door.

Versions, llm.c style (each checked against the NumPy reference; every one gives bitwise the
same results as the others):

1. **serial**: one thread.  Pack the weights, then per step the input product, the
   recurrent product and the fused gate update, panel by panel.
2. **team** (hidden split): ``n`` workers in one parallel region per call; worker ``w``
   owns a contiguous block of panels (its part of the packing, of every product and of
   the gate update: its W_hh panels stay in its own L2).  Per step: phase A (the input
   product and the half of h the worker's panels sum first), wait, phase B (the other
   half, the gate update), publish.  With two workers phase A needs no partner data, so
   the per-step barrier hides behind it.
3. **bulk** (team or serial with a bulk input projection): the input product of every
   step first, as one compute-bound GEMM per panel; then only the recurrent product per
   step.  Wins at small batches (W_ih is streamed once, not once per step).
4. **cell**: one step from the row-major weights, read in place (no packing: 16x16
   in-register transposes feed the same FMA chains); ``cell_team_entry`` splits its hidden
   panels over a team of cell workers in ``run_team``, the one parallel region of every kernel
   (each core keeps its block of the weights in its own cache from call to call; no worker waits
   for another, the last to finish copies h).
5. **mkl** (opt-in): the team structure on MKL's packed GEMM (sequential MKL); not
   bitwise equal to the others (MKL's own summation order).
6. **training**: ``forward_train`` is versions 1-3 with the gate update also storing the
   tape; **backward** a team worker of its own (``_bwd_worker``): per step the fused
   pointwise backward (``gate_bwd``, IR), a barrier, ``dh = dz W_hh`` on ``mk``; after the
   loop ``dx = dz W_ih`` and the weight gradients as products over the rows of all steps.
   Bitwise the same for every kind and team size (work split over outputs, never over a sum).

Layout.  The 4H gate rows are regrouped into *panels* of ``U`` hidden units (``U = 16``
float32, ``8`` float64: one 64-byte vector), the four gates side by side:
``Wp[p, k, q*U + u] = W[q*H + p*U + u, k]`` (zero past H), so a panel row is 4 vectors
and the gate update of a panel runs on the tile the product just wrote, in registers.

Summation order (the reason all kinds agree bit for bit).  Every gate pre-activation is
one FMA chain: the bias (``b_ih + b_hh``), then ``x_k W_ih[:, k]`` for ``k = 0..I-1``,
then ``h_k W_hh[:, k]`` in the *canonical two-half order* fixed by H (and the projection
size) alone: panels ``p < ceil(NP/2)`` sum ``h[0:ks]`` then ``h[ks:S]``, the others
``h[ks:S]`` then ``h[0:ks]``.  A projection output is one chain over ``k = 0..H-1``.
Nothing depends on the kind, the team size, the tile position or the thread count.

Micro-kernels are LLVM IR emitted by ``@intrinsic``\\ s as ``noinline`` functions
(``llvm.fma``: numba does not contract without fastmath, and contraction would make the
bits depend on the inlining context): ``mk`` (1..6 rows x 4 vectors, packed weights,
accumulators in registers over k), ``mkt`` (the same chains from row-major weights via
in-register transposes: the cell), ``pack`` (the transposes, storing), ``gate`` (the fused
update, 8 compile-time variants of peephole / clip / input_forget, masked for a partial
last panel).  float32 uses Eigen's clamped rational tanh (abs. error 3.6e-7) and
sigma(x) = (1 + tanh(x/2)) / 2; float64 the branch-free ``tanh64``/``sigmoid64``/``exp64``
below (<= 4e-16 relative, vectorised).

Compile time.  Nothing compiles at import; each kernel family compiles on its first call,
per dtype: the forward (``forward_entry``, the worker, ``run_team``; ``forward_train`` shares
them), the cell (``cell_entry`` or ``cell_team_entry``), the backward (``backward_entry``, its
worker), MKL's worker.  Each worker is a C callback (``cfunc``) reached by address, so the
parallel region (one for every kind and dtype) and the entry hold no copy of it.  The gate
update's 8 feature variants stay one IR function inside the worker, switched at run time:
measured, they cost ~0.2 s of a ~3.7 s worker compile, and a worker per variant would make
every further variant's first call pay a whole worker.  Numba's typing costs ~1-2 ms per
integer operation, so the argument blocks are read and written word by word through
``_ldw`` / ``_stw`` (one call each).  ``error_model="numpy"``.

Rooms (imports run one way, top to bottom)::

    _jit.py          jit options and the cache rule
    ir.py            llvmlite building blocks, the host's instruction set
    microkernels.py  mk (wide on AVX-512, narrow elsewhere), mkt, pack (IR)
    panels.py        the weights packed once by NumPy (prepared weights), 64-byte aligned
    bf16.py          mkbf: the bf16 mode's products on vdpbf16ps over bfloat16 pair panels (IR)
    amx.py           mkamx: the same panels on AMX tiles (IR), the OS's permission, the choice
    nonlinear.py     tanh / sigmoid / exp (IR)
    gates.py         the fused gate update, its backward, math64 (IR)
    blocks.py        the argument blocks between entries and workers (A_*, G_*, W_*, E_*)
    intrinsics.py    Numba's view of the IR, memory ops, atomics, math64_apply
    team.py          handshake, waits, barrier, run_team
    rows.py          row / panel helpers shared by the workers
    forward.py  backward.py  cell.py  mkl.py
    modes.py         the precision modes: splits for the float32 paths, the portable path (projections)
    jitstep.py       lstm_backends.jit's step on prepared weights: a C callback per kind, reached by address
    embed.py         prepared weights, cell and forward for the user's own @njit code (lstm_backends.jit)
    __init__.py      this page; loading the workers (worker(), bwd_worker())

The cache rule (for contributors).  Every kernel is ``cache=True`` through ``_jit._JIT``,
and Numba's own rule (a cached function is stale when *its* file changes) is not enough here:
a worker is built from helpers and IR in every file of this package.  ``_jit`` therefore
installs a cache locator whose source stamp is the sha256 of *all* the package's ``.py``
files: an edit anywhere here (or an upgrade) recompiles every kernel once.  So: keep every
jitted helper and IR generator of the kernels inside this package (a helper imported from
outside it would not be covered), never cache a function outside it with these options, and
if Numba's internals change, ``_jit`` turns caching off with a ``CacheDisabledWarning``
rather than risk stale code.  ``tests/test_numba_cache.py`` proves the rule by editing a
helper in a copy of the package.  A user's own ``cache=True`` function that calls
``lstm_backends.jit`` holds only the small wrappers of ``embed``: the step is reached through a
process-wide word named after the package stamp (``jitstep``), and the prepared weights' type
names the stamp too, so such a function recompiles after any change here.
"""

from __future__ import annotations

from ._jit import CACHE, callback
from .backward import _bwd_worker, backward_entry
from .blocks import GARGS, NARGS, SYNC_LEN, W_TEAM, WAIT_TICKS
from .cell import _cell_worker, cell_entry, cell_team_entry
from .forward import _worker, _worker_amx, _worker_pairs, forward_entry
from .gates import CLIP, IFORGET, PEEP, ROUNDH, SPLIT3
from .intrinsics import math64_apply
from .ir import _AVX512
from .team import run_team

__all__ = ["CACHE", "CLIP", "GARGS", "IFORGET", "NARGS", "PEEP", "ROUNDH", "SPLIT3", "SYNC_LEN", "WAIT_TICKS", "W_TEAM",
           "backward_entry", "bwd_worker", "cell_entry", "cell_team_entry", "cell_worker", "forward_entry",
           "has_avx512", "math64_apply", "run_team", "worker"]


def has_avx512() -> bool:
    """Whether the host has AVX-512 (the kernels' 64-byte vectors are one register each)."""
    return bool(_AVX512)


def bwd_worker(dtype):
    """The backward worker C callback of ``dtype`` (``void(dtype zero, int64 p, int64 argp)``),
    compiled or loaded from Numba's cache on first use."""
    return callback(dtype, "backward", _bwd_worker)


def cell_worker(dtype):
    """The cell team's worker C callback of ``dtype`` (``void(dtype zero, int64 p, int64 argp)``; see
    ``cell_team_entry``), compiled or loaded from Numba's cache on first use."""
    return callback(dtype, "cell", _cell_worker)


def worker(dtype, gemm="own"):
    """The forward worker C callback of ``dtype`` (``gemm="mkl"``: on MKL's packed GEMM, MKL
    registered first; ``"pairs"``: the bf16 mode's products on bfloat16 pair panels; ``"amx"``: the
    same on AMX tiles), compiled or
    loaded from Numba's cache on first use.  Its signature is ``void(dtype zero, int64 p, int64
    argp)``."""
    if gemm == "mkl":
        from .mkl import _mkl_worker

        return callback(dtype, gemm, _mkl_worker)
    if gemm == "pairs":   # the bf16 mode on bfloat16 pair panels (float32)
        return callback(dtype, gemm, _worker_pairs)
    if gemm == "amx":     # the same panels on AMX tiles
        return callback(dtype, gemm, _worker_amx)
    return callback(dtype, gemm, _worker)
