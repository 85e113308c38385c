"""A particle filter whose 1,000 particles each carry their own LSTM state, stepped in ``numba.prange``.

The hidden process is a position ``z`` whose drift comes from a recurrent model: per step the LSTM
reads ``[z, noise]`` and the position moves by ``0.3 tanh(head . h)`` plus a little noise.  The
LSTM's weights are fixed random numbers (they stand in for a trained dynamics model).  We see
``z`` only through noisy observations, and a bootstrap particle filter estimates it: every
particle is a guess of ``z`` *and* of the LSTM's state ``(h, c)``, propagated by the same model.

Each filter step runs one ``prange`` loop over the particles, each iteration calling ``lj.cell`` on
its own rows (``h[i:i+1]``, ``c[i:i+1]``: nothing written is shared between iterations), then
resamples serially.  The noise is drawn up front, so the parallel run is checked to equal a serial
run (the same loop on one thread) bitwise, and one step is checked against ``Backend.cell``; then
the step is timed against the same loop in Python.
"""

import time

import numba
import numpy as np

import lstm_backends as lb
from lstm_backends import jit as lj

PARTICLES, HIDDEN, STEPS = 1000, 64, 60
MOVE_NOISE, OBS_NOISE = 0.05, 0.5


# ---------------------------------------------------------------- one particle, one step

@numba.njit(cache=True)
def move(i, w, head, noise, obs, z, x, h, c, log_weight):
    """Advance particle ``i`` (its position ``z[i]``, its rows of ``x``, ``h``, ``c``) by one step and
    weigh it by the observation ``obs``.  Writes only row ``i`` of every array."""
    xi, hi, ci = x[i:i + 1], h[i:i + 1], c[i:i + 1]  # (1, 2), (1, H), (1, H): this particle's rows
    xi[0, 0] = z[i]
    xi[0, 1] = noise[i]
    lj.cell(xi, hi, ci, w, hi, ci)  # in place, on the calling thread
    drift = 0.0
    for k in range(hi.shape[1]):
        drift += head[k] * hi[0, k]
    z[i] += 0.3 * np.tanh(drift) + MOVE_NOISE * noise[i]
    log_weight[i] = -0.5 * ((obs - z[i]) / OBS_NOISE) ** 2


@numba.njit(cache=True, parallel=True)
def move_all_parallel(w, head, noise, obs, z, x, h, c, log_weight):
    for i in numba.prange(z.shape[0]):  # each iteration owns particle i's rows
        move(i, w, head, noise, obs, z, x, h, c, log_weight)


@numba.njit(cache=True)
def estimate_and_resample(u, z, h, c, log_weight, z_new, h_new, c_new):
    """The weighted mean of ``z``, then systematic resampling (offset ``u`` in [0, 1)) of the
    particles into ``z_new``, ``h_new``, ``c_new``.  Serial: sums in a fixed order."""
    n = z.shape[0]
    top = log_weight[0]
    for i in range(1, n):
        top = max(top, log_weight[i])
    total = 0.0
    mean = 0.0
    for i in range(n):
        log_weight[i] = np.exp(log_weight[i] - top)  # now the unnormalised weight
        total += log_weight[i]
        mean += log_weight[i] * z[i]
    src = 0
    cumulative = log_weight[0] / total
    for j in range(n):
        target = (j + u) / n
        while cumulative < target and src < n - 1:
            src += 1
            cumulative += log_weight[src] / total
        z_new[j] = z[src]
        for k in range(h.shape[1]):
            h_new[j, k] = h[src, k]
        for k in range(c.shape[1]):
            c_new[j, k] = c[src, k]
    return mean / total


@numba.njit(cache=True)
def particle_filter(w, head, observations, noise, offsets, estimates):
    """Filter ``observations`` (T,) with ``noise`` (T, N) and resampling ``offsets`` (T,) drawn up
    front; ``estimates`` (T,) receives the posterior mean of ``z`` after each observation."""
    n = noise.shape[1]
    H = head.shape[0]
    z, x = np.zeros(n), np.zeros((n, 2), np.float32)
    h, c = np.zeros((n, H), np.float32), np.zeros((n, H), np.float32)
    z2, h2, c2 = np.zeros(n), np.zeros((n, H), np.float32), np.zeros((n, H), np.float32)
    log_weight = np.empty(n)
    for t in range(observations.shape[0]):
        move_all_parallel(w, head, noise[t], observations[t], z, x, h, c, log_weight)
        estimates[t] = estimate_and_resample(offsets[t], z, h, c, log_weight, z2, h2, c2)
        z, z2, h, h2, c, c2 = z2, z, h2, h, c2, c


# ---------------------------------------------------------------- the same in Python

def move_all_python(be, params, head, noise, obs, z, x, h, c, log_weight):
    """``move_all_parallel`` in Python: ``Backend.cell`` per particle."""
    for i in range(len(z)):
        xi, hi, ci = x[i:i + 1], h[i:i + 1], c[i:i + 1]
        xi[0] = z[i], noise[i]
        be.cell(xi, hi, ci, params, out=(hi, ci))
        z[i] += 0.3 * np.tanh(float(head @ hi[0])) + MOVE_NOISE * noise[i]
        log_weight[i] = -0.5 * ((obs - z[i]) / OBS_NOISE) ** 2


def move_all_vectorised(be, params, head, noise, obs, z, x, h, c, log_weight):
    """The same step as one ``Backend.cell`` call over all the particles' rows."""
    x[:, 0], x[:, 1] = z, noise
    be.cell(x, h, c, params, out=(h, c))
    z += 0.3 * np.tanh(h @ head) + MOVE_NOISE * noise
    log_weight[:] = -0.5 * ((obs - z) / OBS_NOISE) ** 2


def estimate_and_resample_python(u, z, h, c, log_weight):
    weight = np.exp(log_weight - log_weight.max())
    weight /= weight.sum()
    src = np.minimum(np.searchsorted(np.cumsum(weight), (np.arange(len(z)) + u) / len(z)), len(z) - 1)
    return float(weight @ z), z[src], h[src], c[src]


def new_particles():
    """``z``, ``x``, ``h``, ``c``, ``log_weight`` of every particle before the first step."""
    return (np.zeros(PARTICLES), np.zeros((PARTICLES, 2), np.float32), np.zeros((PARTICLES, HIDDEN), np.float32),
            np.zeros((PARTICLES, HIDDEN), np.float32), np.zeros(PARTICLES))


def best_time(fn, repeat=3):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main():
    rng = np.random.default_rng(0)
    params = lb.testing.random_params(2, HIDDEN, rng=rng)  # fixed random weights (float32)
    head = rng.uniform(-1, 1, HIDDEN) / np.sqrt(HIDDEN)
    w = lj.prepare(params)
    be = lb.get_backend("numba")
    all_threads = numba.get_num_threads()

    # the true path, stepped with Backend.cell, and its noisy observations
    truth = np.zeros(STEPS)
    z, h, c = 0.0, np.zeros((1, HIDDEN), np.float32), np.zeros((1, HIDDEN), np.float32)
    for t, e in enumerate(rng.standard_normal(STEPS)):
        be.cell(np.array([[z, e]], np.float32), h, c, params, out=(h, c))
        z += 0.3 * np.tanh(float(head @ h[0])) + MOVE_NOISE * e
        truth[t] = z
    observations = truth + OBS_NOISE * rng.standard_normal(STEPS)
    noise = rng.standard_normal((STEPS, PARTICLES))  # all the filter's randomness, drawn up front
    offsets = rng.random(STEPS)

    def run_filter(threads, estimates):
        numba.set_num_threads(threads)  # 1: a serial run of the same loop
        try:
            particle_filter(w, head, observations, noise, offsets, estimates)
        finally:
            numba.set_num_threads(all_threads)

    # check before timing: prange equals a serial run, bitwise; one step equals Backend.cell's
    t0 = time.perf_counter()
    parallel, serial = np.empty(STEPS), np.empty(STEPS)
    run_filter(all_threads, parallel)
    first_call = time.perf_counter() - t0
    run_filter(1, serial)
    assert np.array_equal(parallel, serial), "the prange run must equal the serial run"
    compiled, python = new_particles(), new_particles()
    move_all_parallel(w, head, noise[0], observations[0], *compiled)
    move_all_python(be, params, head, noise[0], observations[0], *python)
    assert np.array_equal(compiled[2], python[2]) and np.array_equal(compiled[3], python[3])  # h, c: bitwise
    np.testing.assert_allclose(compiled[0], python[0], rtol=1e-12)  # z: the head's sums in another order

    print(f"{PARTICLES} particles, LSTM H={HIDDEN}, {STEPS} steps, {all_threads} threads "
          f"(first call: {first_call:.1f} s, compiling or loading from the cache)")
    print(f"prange run on {all_threads} threads == run on 1 thread, bitwise: {np.array_equal(parallel, serial)}")
    print(f"RMSE of the observations {np.sqrt(np.mean((observations - truth) ** 2)):.3f}, "
          f"of the filter's estimate {np.sqrt(np.mean((parallel - truth) ** 2)):.3f}")
    print("   t    truth  observed  filtered")
    for t in range(0, STEPS, 10):
        print(f"{t:4d} {truth[t]:8.3f} {observations[t]:9.3f} {parallel[t]:9.3f}")

    estimates = np.empty(STEPS)
    t_parallel = best_time(lambda: run_filter(all_threads, estimates)) / STEPS
    t_serial = best_time(lambda: run_filter(1, estimates)) / STEPS

    def python_filter(move_all, steps=3):
        z, x, h, c, log_weight = new_particles()
        for t in range(steps):
            move_all(be, params, head, noise[t], observations[t], z, x, h, c, log_weight)
            _, z, h, c = estimate_and_resample_python(offsets[t], z, h, c, log_weight)

    t_python = best_time(lambda: python_filter(move_all_python), repeat=1) / 3
    t_vectorised = best_time(lambda: python_filter(move_all_vectorised, STEPS)) / STEPS
    print(f"\ntime per filter step ({PARTICLES} particles moved and weighed, then resampled):")
    for label, seconds, note in (
        (f"@njit, prange over the particles ({all_threads} threads)", t_parallel, ""),
        ("@njit, the same, on 1 thread", t_serial, ""),
        ("Python, the same loop (Backend.cell)", t_python, f"({t_python / t_parallel:.0f}x the prange loop)"),
        ("Python, one Backend.cell of all the rows", t_vectorised, "(possible here: all take the same step)"),
    ):
        print(f"  {label:<46}{seconds * 1e3:8.3f} ms  {note}".rstrip())


if __name__ == "__main__":
    main()
