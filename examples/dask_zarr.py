"""Batch inference over a chunked zarr array with Dask: zarr in, LSTM, zarr out.

Makes a data set of sequences on disk (a zarr group with ``x``, (N, T, I) float32,
chunked along N, and ``lengths``, (N,)), runs a stacked LSTM over it with
:func:`lstm_backends.dask.forward` (one task per chunk of sequences), and writes
``y`` (N, T, H) and ``h_n`` (L, N, H) back into the group, with Dask's own progress
bar.  Needs ``pip install "lstm-backends[dask,examples]"``.

Usage::

    python examples/dask_zarr.py --store data.zarr                         # threaded scheduler
    python examples/dask_zarr.py --store data.zarr --workers 2             # LocalCluster, 2 x 1 thread
    python examples/dask_zarr.py --store s3://bucket/data.zarr --address tcp://scheduler:8786
    python examples/dask_zarr.py --store data.zarr --workers 2 --compare-local

``--address`` uses an existing ``distributed`` cluster (every worker needs
lstm-backends installed, and the store must be reachable from every worker: a
shared file system or object storage).  ``--compare-local`` also times the same
LSTM on the same data held in memory: ``forward`` over the data persisted in (cluster)
memory, against plain ``lstm(x)`` calls in this process with as many threads as the Dask
run has (one call, and one call per chunk), and prints the overhead of Dask.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from typing import Any

import dask
import dask.array as da
import numpy as np
import zarr

import lstm_backends as lb
import lstm_backends.dask


def make_dataset(store: str, sequences: int, steps: int, features: int, chunk: int, seed: int = 0) -> list[Any]:
    """Lazy writes of ``x`` (N, T, I) float32 and ``lengths`` (N,) int32 into the zarr group ``store``."""
    rng = da.random.default_rng(seed)
    x = rng.standard_normal((sequences, steps, features), chunks=(chunk, steps, features), dtype=np.float32)
    lengths = rng.integers(1, steps + 1, sequences, chunks=chunk, dtype=np.int32)
    return [x.to_zarr(store, component="x", overwrite=True, compute=False),
            lengths.to_zarr(store, component="lengths", overwrite=True, compute=False)]


def dataset_matches(store: str, sequences: int, steps: int, features: int, chunk: int) -> bool:
    try:
        x = zarr.open_array(store, path="x", mode="r")
    except Exception:  # missing or unreadable: make it again
        return False
    return x.shape == (sequences, steps, features) and x.chunks[0] == chunk


def lstm_outputs(lstm: lb.LSTM, store: str) -> list[Any]:
    """Lazy writes of ``y`` and ``h_n`` computed from the ``x`` and ``lengths`` in ``store``."""
    x = da.from_zarr(store, component="x")
    lengths = da.from_zarr(store, component="lengths")
    y, (h_n, _) = lstm_backends.dask.forward(lstm, x, lengths)
    return [y.to_zarr(store, component="y", overwrite=True, compute=False),
            h_n.to_zarr(store, component="h_n", overwrite=True, compute=False)]


def run(graphs: list[Any], client: Any) -> None:
    """Compute with Dask's own progress bar: distributed.progress with a client, else ProgressBar."""
    if client is None:
        from dask.diagnostics import ProgressBar

        with ProgressBar():
            dask.compute(*graphs)
    else:
        from distributed import progress

        futures = client.compute(graphs)
        with client.as_current():  # progress follows the current client
            progress(futures, notebook=False)
        client.gather(futures)  # waits, and raises a worker's error here
        print()


def compare_local(lstm: lb.LSTM, store: str, client: Any, threads: int, repeat: int) -> dict[str, float]:
    """Median seconds for the same LSTM on the same in-memory data, in interleaved rounds.

    ``dask``: :func:`lstm_backends.dask.forward` over ``x`` persisted in memory, the outputs
    persisted (kept chunk by chunk where they were computed); ``local``: one ``lstm(x)`` call
    in this process; ``local_chunks``: ``lstm(x)`` over the same chunks one after another,
    the outputs kept.  The local calls use as many threads as the Dask run has.
    """
    from dask.graph_manipulation import clone

    x = da.from_zarr(store, component="x")
    lengths = da.from_zarr(store, component="lengths")
    if client is None:
        x_mem, lengths_mem = dask.persist(x, lengths)
    else:
        from distributed import wait

        x_mem, lengths_mem = client.persist([x, lengths])
        with client.as_current():
            wait([x_mem, lengths_mem])

    def dask_run() -> Any:
        y, (h_n, _) = lstm_backends.dask.forward(lstm, x_mem, lengths_mem)
        # New keys every run: a cluster may still hold the previous run's results.
        outputs = clone(y, h_n, omit=(x_mem, lengths_mem))
        if client is None:
            return dask.persist(*outputs)
        persisted = client.persist(list(outputs))
        with client.as_current():
            wait(persisted)
        return persisted

    x_np, lengths_np = np.asarray(x), np.asarray(lengths)  # into this process's memory
    local = lb.LSTM(lstm.input_size, lstm.hidden_size, num_layers=lstm.num_layers, batch_first=True,
                    backend=lstm.backend.name)
    local.load_state_dict(lstm.state_dict())
    if lstm.backend.name == "numba":  # the same number of threads as the Dask run
        from lstm_backends.backends.numba_backend import NumbaBackend

        local.backend = NumbaBackend(num_threads=threads)
    starts = np.cumsum((0, *x.chunks[0]))

    def local_chunks() -> list[Any]:  # the same work as the Dask tasks, one after another, without Dask
        return [local(x_np[a:b], lengths=lengths_np[a:b]) for a, b in zip(starts[:-1], starts[1:])]

    runs = {"dask": dask_run, "local": lambda: local(x_np, lengths=lengths_np), "local_chunks": local_chunks}
    local(x_np[:64], lengths=lengths_np[:64])  # compile (or load from Numba's cache) outside the timing
    dask_run()
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(repeat):  # interleaved, so that noise on a shared machine hits all three alike
        for key, fn in runs.items():
            t0 = time.perf_counter()
            result = fn()
            times[key].append(time.perf_counter() - t0)
            del result
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--store", required=True, help="zarr group (a path or an fsspec URL)")
    p.add_argument("--sequences", type=int, default=200_000)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--features", type=int, default=8)
    p.add_argument("--hidden", type=int, default=16)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--chunk", type=int, default=10_000, help="sequences per chunk (and per task)")
    p.add_argument("--backend", default="numba")
    p.add_argument("--workers", type=int, default=0,
                   help="start a LocalCluster of this many worker processes x 1 thread (0: threaded scheduler)")
    p.add_argument("--threads", type=int, default=0, help="threaded scheduler: threads (0: all cores)")
    p.add_argument("--address", help="scheduler address of an existing distributed cluster")
    p.add_argument("--recreate", action="store_true", help="make the data set again even if it exists")
    p.add_argument("--compare-local", action="store_true")
    p.add_argument("--repeat", type=int, default=5, help="timed rounds for --compare-local (median)")
    args = p.parse_args(argv)

    from dask.system import CPU_COUNT

    with contextlib.ExitStack() as stack:
        client = None
        if args.address or args.workers:
            from distributed import Client, LocalCluster

            if args.address:
                client = stack.enter_context(Client(args.address))
            else:
                cluster = stack.enter_context(LocalCluster(n_workers=args.workers, threads_per_worker=1,
                                                           processes=True, dashboard_address=None))
                client = stack.enter_context(Client(cluster))
            threads = sum(client.nthreads().values())
            where = f"distributed, {len(client.nthreads())} workers, {threads} threads"
        else:
            threads = args.threads or CPU_COUNT
            stack.enter_context(dask.config.set(scheduler="threads", num_workers=threads))
            where = f"threaded scheduler, {threads} threads"

        shape = (args.sequences, args.steps, args.features)
        if args.recreate or not dataset_matches(args.store, *shape, args.chunk):
            print(f"making x {shape} float32 in {args.store} ...")
            t0 = time.perf_counter()
            run(make_dataset(args.store, *shape, args.chunk), client)  # the workers write the chunks
            print(f"  {time.perf_counter() - t0:.1f} s")

        lstm = lb.LSTM(args.features, args.hidden, num_layers=args.layers, batch_first=True,
                       backend=args.backend, seed=0)
        print(f"{lstm} on {where}: {args.sequences:,} sequences in chunks of {args.chunk:,}")
        t0 = time.perf_counter()
        run(lstm_outputs(lstm, args.store), client)
        seconds = time.perf_counter() - t0
        result = {"pipeline_s": seconds, "pipeline_seq_per_s": args.sequences / seconds}
        print(f"zarr -> LSTM -> zarr: {seconds:.2f} s, {args.sequences / seconds:,.0f} sequences/s")

        if args.compare_local:
            t = compare_local(lstm, args.store, client, threads, args.repeat)
            result.update({f"{k}_s": v for k, v in t.items()})
            print(f"in memory, median of {args.repeat} (sequences/s):")
            for key, what in (("dask", "lstm_backends.dask.forward, data persisted"),
                              ("local", f"local lstm(x), one call, {threads} threads"),
                              ("local_chunks", f"local lstm(x) chunk by chunk, {threads} threads")):
                print(f"  {what:48s} {t[key]:7.3f} s {args.sequences / t[key]:>10,.0f}")
            print(f"  Dask against the local call: {100 * (t['dask'] / t['local'] - 1):+.0f} %, "
                  f"against the local chunk loop: {100 * (t['dask'] / t['local_chunks'] - 1):+.0f} %")
    return result


if __name__ == "__main__":
    main()
