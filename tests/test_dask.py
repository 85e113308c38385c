"""lstm_backends.dask: batch inference over Dask (threaded scheduler and distributed)."""

import pickle
import subprocess
import sys
import textwrap
import threading
import warnings

import numpy as np
import pytest

import lstm_backends as lb
from lstm_backends.backends.numpy_backend import NumpyBackend

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")
distributed = pytest.importorskip("distributed")
lbd = pytest.importorskip("lstm_backends.dask")

T, B, I, H = 7, 11, 3, 5  # noqa: E741 - the shapes of the design contract
CHUNKS = (4, 4, 3)
TOL = {np.dtype(np.float32): (1e-5, 1e-6), np.dtype(np.float64): (1e-12, 1e-13)}


# ---------------------------------------------------------------------------- helpers
def _problem(dtype=np.float32, batch_first=False, backend="numpy", seed=0, states=True):
    """A 2-layer bidirectional LSTM, x as NumPy, lengths with 0 and T, optional initial states."""
    lstm = lb.LSTM(I, H, num_layers=2, bidirectional=True, batch_first=batch_first, dtype=dtype,
                   backend=backend, seed=seed)
    rng = np.random.default_rng(seed + 1)
    shape = (B, T, I) if batch_first else (T, B, I)
    x = rng.standard_normal(shape).astype(dtype)
    lengths = rng.integers(0, T + 1, B)
    lengths[:2] = (0, T)
    lengths[5] = 0
    h0 = rng.standard_normal((4, B, H)).astype(dtype) if states else None
    c0 = rng.standard_normal((4, B, H)).astype(dtype) if states else None
    return lstm, x, lengths, h0, c0


def _dask_x(x, batch_first):
    return da.from_array(x, chunks=(CHUNKS, T, I) if batch_first else (T, CHUNKS, I))


def _check(lstm, x, lengths, h0, c0, got):
    y, (h_n, c_n) = got
    hx = None if h0 is None else (h0, c0)
    y_ref, (h_ref, c_ref) = lstm(x, hx, lengths=lengths)
    rtol, atol = TOL[lstm.dtype]
    for name, a, e in (("y", y, y_ref), ("h_n", h_n, h_ref), ("c_n", c_n, c_ref)):
        assert a.dtype == lstm.dtype, name
        np.testing.assert_allclose(a, e, rtol=rtol, atol=atol, err_msg=name)


def _compute_threads(*arrays):
    return dask.compute(*arrays, scheduler="threads")


class CountingBackend(NumpyBackend):
    """The reference, counting its forward_layers calls (one per task)."""

    name = "counting"
    calls = 0
    _lock = threading.Lock()

    def forward_layers(self, *args, **kwargs):
        with CountingBackend._lock:
            CountingBackend.calls += 1
        return super().forward_layers(*args, **kwargs)


class ClientOnlyBackend(NumpyBackend):
    """Available on the client, not inside Dask workers (like a GPU backend on CPU-only workers)."""

    name = "client-only"
    install_hint = "run on a machine with the client-only licence"

    @classmethod
    def is_available(cls):
        try:
            distributed.get_worker()
        except ValueError:
            return lb.Availability(True, "")
        return lb.Availability(False, "no licence on this worker")


@pytest.fixture(scope="module")
def client():
    """One LocalCluster for the module: 2 worker processes x 1 thread (workers inherit sys.path)."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=40) as cluster, \
            distributed.Client(cluster, set_as_default=False) as c:
        yield c


# ---------------------------------------------------------------------------- import cost
def test_import_lstm_backends_does_not_import_dask():
    code = """
        import sys
        import numpy as np
        import lstm_backends as lb
        lb.list_backends()
        lstm = lb.LSTM(2, 3, backend="numpy", seed=0)
        lstm(np.zeros((2, 1, 2), np.float32))
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("dask", "distributed", "zarr")))
    """
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------------------- results
@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("batch_first", [False, True])
def test_threaded_matches_local_call(backend, dtype, batch_first):
    lstm, x, lengths, h0, c0 = _problem(dtype, batch_first, backend, states=batch_first)
    y, (h_n, c_n) = lbd.forward(lstm, _dask_x(x, batch_first), lengths, h0, c0)
    b_axis = 0 if batch_first else 1
    assert y.chunks[b_axis] == CHUNKS and h_n.chunks[1] == CHUNKS and c_n.chunks[1] == CHUNKS
    assert y.shape == ((B, T, 2 * H) if batch_first else (T, B, 2 * H)) and h_n.shape == (4, B, H)
    with dask.config.set(num_workers=2):
        _check(lstm, x, lengths, h0, c0, (lambda r: (r[0], (r[1], r[2])))(_compute_threads(y, h_n, c_n)))


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("batch_first", [False, True])
def test_distributed_matches_local_call(client, backend, dtype, batch_first):
    lstm, x, lengths, h0, c0 = _problem(dtype, batch_first, backend, seed=3, states=not batch_first)
    y, (h_n, c_n) = lbd.forward(lstm, _dask_x(x, batch_first), da.from_array(lengths, chunks=5), h0, c0)
    y, h_n, c_n = client.compute([y, h_n, c_n], sync=True)
    _check(lstm, x, lengths, h0, c0, (y, (h_n, c_n)))


def test_dask_lengths_and_states_are_aligned_to_x_chunks():
    lstm, x, lengths, h0, c0 = _problem(np.float64)
    got = lbd.forward(lstm, _dask_x(x, False), da.from_array(lengths, chunks=2),
                      da.from_array(h0, chunks=(1, 3, 2)), da.from_array(c0, chunks=(4, 6, 5)))
    assert got[1][0].chunks == ((4,), CHUNKS, (H,))
    y, h_n, c_n = _compute_threads(got[0], *got[1])
    _check(lstm, x, lengths, h0, c0, (y, (h_n, c_n)))


def test_numpy_x_is_wrapped_and_h0_alone_works():
    lstm, x, lengths, h0, _ = _problem(np.float64)
    y, (h_n, c_n) = lbd.forward(lstm, x, lengths, h0=h0)
    assert isinstance(y, da.Array) and y.chunks[1] == (B,)  # small: Dask's "auto" chunking keeps one chunk
    y_ref, (h_ref, c_ref) = lstm(x, (h0, np.zeros_like(h0)), lengths=lengths)
    y, h_n, c_n = _compute_threads(y, h_n, c_n)
    np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(c_n, c_ref, rtol=1e-12, atol=1e-13)


def test_empty_batch_and_single_layer():
    lstm = lb.LSTM(I, H, backend="numpy", seed=0)
    y, (h_n, _) = lbd.forward(lstm, da.zeros((T, 0, I), dtype=np.float32))
    assert y.shape == (T, 0, H) and _compute_threads(h_n)[0].shape == (1, 0, H)


def test_time_chunks_are_rechunked_with_a_warning():
    lstm, x, lengths, _, _ = _problem()
    with pytest.warns(da.PerformanceWarning, match=r"2 chunks along the time axis.*moves data"):
        y, (h_n, c_n) = lbd.forward(lstm, da.from_array(x, chunks=(4, CHUNKS, I)), lengths)
    assert y.chunks == ((T,), CHUNKS, (2 * H,))
    _check(lstm, x, lengths, None, None, (lambda r: (r[0], (r[1], r[2])))(_compute_threads(y, h_n, c_n)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lbd.forward(lstm, _dask_x(x, False), lengths)  # chunked on the batch only: silent


# ---------------------------------------------------------------------------- the graph
def _weights_bytes(lstm):
    return sum(a.nbytes for layer in lstm.params for p in layer for a in p if a is not None)


def test_one_task_per_chunk_runs_the_whole_stack():
    lb.register_backend("counting", CountingBackend, replace=True)
    try:
        lstm, x, lengths, h0, c0 = _problem(np.float64, backend="counting")
        y, (h_n, c_n) = lbd.forward(lstm, _dask_x(x, False), lengths, h0, c0)
        graph = dict(y.__dask_graph__())
        assert sum(1 for k in graph if isinstance(k, tuple) and k[0].startswith("lstm-forward-")) == len(CHUNKS)
        CountingBackend.calls = 0
        got = _compute_threads(y, h_n, c_n)
        assert CountingBackend.calls == len(CHUNKS)  # not per step, not per output
        _check(lstm, x, lengths, h0, c0, (got[0], (got[1], got[2])))
    finally:
        lb.unregister_backend("counting")


@pytest.mark.parametrize("optimize", [False, True])
def test_weights_are_one_graph_key(optimize):
    lstm = lb.LSTM(16, 128, num_layers=2, bidirectional=True, backend="numpy", seed=0)
    weight_bytes = _weights_bytes(lstm)
    assert weight_bytes > 500_000

    def graph_of(num_chunks):
        x = da.zeros((4, 2 * num_chunks, 16), chunks=(4, 2, 16), dtype=np.float32)
        y, (h_n, c_n) = lbd.forward(lstm, x)
        if optimize:
            y, h_n, c_n = dask.optimize(y, h_n, c_n)
        graph = {}
        for a in (y, h_n, c_n):
            graph.update(a.__dask_graph__())
        return graph

    small, large = graph_of(4), graph_of(64)
    heavy = [k for k, v in large.items() if len(pickle.dumps(v)) > weight_bytes // 2]
    assert len(heavy) == 1 and str(heavy[0]).startswith("lstm-weights-")
    size_small, size_large = len(pickle.dumps(small)), len(pickle.dumps(large))
    # 60 more chunks would add 60 copies of the weights if each task embedded them.
    assert size_large - size_small < weight_bytes // 4, (size_small, size_large, weight_bytes)


def test_same_call_same_graph_keys_and_weights_are_a_snapshot():
    lstm, x, lengths, _, _ = _problem(np.float64)
    xd = _dask_x(x, False)
    y1, _ = lbd.forward(lstm, xd, lengths)
    y2, _ = lbd.forward(lstm, xd, lengths)
    assert y1.name == y2.name
    before = _compute_threads(y1)[0]
    lstm.params[0][0].w_ih[...] += 1.0  # after the graph was built: it keeps its copy
    np.testing.assert_array_equal(_compute_threads(y1)[0], before)
    y3, _ = lbd.forward(lstm, xd, lengths)
    assert y3.name != y1.name


# ---------------------------------------------------------------------------- threads, caching
def test_thread_budget_rule():
    budget = lbd._thread_budget
    assert budget(2, 3) == 1  # two tasks at once share two threads
    assert budget(2, 1) == 2  # a lone chunk gets them all
    assert budget(8, 3) == 2
    assert budget(16, 4) == 4
    assert budget(1, 4) == 1


def test_threaded_scheduler_budget_and_override():
    from dask.system import CPU_COUNT

    lstm, x, lengths, _, _ = _problem(backend="numba")
    with dask.config.set(num_workers=CPU_COUNT):
        _compute_threads(lbd.forward(lstm, _dask_x(x, False)[:, :4], lengths[:4])[0])  # one chunk: all threads
    with dask.config.set(num_workers=6):
        _compute_threads(lbd.forward(lstm, _dask_x(x, False), lengths)[0])  # 3 chunks side by side: 6 // 3
        _compute_threads(lbd.forward(lstm, _dask_x(x, False), lengths, num_threads=5)[0])
    cache = lbd._backend_cache()
    assert {("numba", CPU_COUNT), ("numba", 2), ("numba", 5)} <= set(cache)
    assert "NumbaBackend(num_threads=5)" in cache[("numba", 5)]


def test_distributed_backend_created_once_per_worker_with_the_workers_threads(client):
    lstm, x, lengths, _, _ = _problem(backend="numba", seed=5)
    y, _ = lbd.forward(lstm, _dask_x(x, False), lengths)
    first = client.compute(y, sync=True)
    caches = client.run(lbd._backend_cache)
    second = client.compute(y, sync=True)
    assert client.run(lbd._backend_cache) == caches  # same instances: created (and compiled) once
    np.testing.assert_array_equal(first, second)
    numba_entries = [v for cache in caches.values() for k, v in cache.items() if k[0] == "numba"]
    assert numba_entries and all(k == ("numba", 1) for cache in caches.values() for k in cache if k[0] == "numba")


def _incoming_keys(dask_worker):
    return [str(k) for entry in dask_worker.transfer_incoming_log for k in entry["keys"]]


def test_weights_travel_once_per_worker(client):
    lstm = lb.LSTM(16, 64, num_layers=2, backend="numpy", seed=11)
    # Chunks larger than the weights, made on both workers: each task runs where its chunk is,
    # so the worker that did not make the weights must fetch them.
    x = da.random.default_rng(0).standard_normal((3, 32_000, 16), chunks=(3, 2000, 16)).astype(np.float32)
    y, (h_n, _) = lbd.forward(lstm, x)
    (weights_key,) = [k for k in y.__dask_graph__() if str(k).startswith("lstm-weights-")]
    y_np, _ = client.compute([y, h_n], sync=True)
    np.testing.assert_allclose(y_np, lstm(x.compute())[0], rtol=1e-5, atol=1e-6)
    fetched = {w: keys.count(str(weights_key)) for w, keys in client.run(_incoming_keys).items()}
    assert all(n <= 1 for n in fetched.values()), fetched  # 16 tasks, at most one transfer per worker


def test_scatter_broadcasts_weights_to_every_worker(client):
    lstm, x, lengths, h0, c0 = _problem(np.float64, seed=7)
    with client.as_current():
        y, (h_n, c_n) = lbd.forward(lstm, _dask_x(x, False), lengths, h0, c0, scatter=True)
    graph = dict(y.__dask_graph__())
    assert not any(str(k).startswith("lstm-weights-") for k in graph)
    assert len(pickle.dumps(graph)) < _weights_bytes(lstm) + 50_000
    held = client.who_has()
    assert any(len(workers) == 2 for workers in held.values())
    got = client.compute([y, h_n, c_n], sync=True)
    _check(lstm, x, lengths, h0, c0, (got[0], (got[1], got[2])))


def test_scatter_needs_a_client():
    lstm, x, _, _, _ = _problem()
    with pytest.raises(TypeError, match="needs an active distributed.Client"):
        lbd.forward(lstm, _dask_x(x, False), scatter=True)


# ---------------------------------------------------------------------------- bad input
def test_bad_input_is_refused_clearly():
    lstm, x, lengths, h0, c0 = _problem()
    xd = _dask_x(x, False)
    with pytest.raises(TypeError, match="must be an lstm_backends.LSTM"):
        lbd.forward(object(), xd)
    with pytest.raises(TypeError, match=r"dask.array.Array \(T, B, I\).*or a NumPy array; got list"):
        lbd.forward(lstm, x.tolist())
    with pytest.raises(ValueError, match=r"x must have shape \(T, B, I\) with I=3.*\(7, 11, 4\)"):
        lbd.forward(lstm, da.zeros((T, B, 4), dtype=np.float32))
    with pytest.raises(TypeError, match=r"mixed dtypes: x is float64.*x.astype\(np.float32\)"):
        lbd.forward(lstm, xd.astype(np.float64))
    with pytest.raises(TypeError, match="floating point"):
        lbd.forward(lstm, xd.astype(np.int32))
    with pytest.raises(ValueError, match=r"lengths must have shape \(B,\) = \(11,\); got shape \(10,\)"):
        lbd.forward(lstm, xd, lengths[:10])
    with pytest.raises(ValueError, match=r"lengths must have shape \(B,\) = \(11,\); got shape \(12,\)"):
        lbd.forward(lstm, xd, da.zeros(12, dtype=int, chunks=4))
    with pytest.raises(ValueError, match="integers"):
        lbd.forward(lstm, xd, da.zeros(B, chunks=4))
    with pytest.raises(ValueError, match=r"lengths\[3\] = 8"):
        lbd.forward(lstm, xd, np.where(np.arange(B) == 3, T + 1, lengths))
    with pytest.raises(ValueError, match=r"h0 must have shape \(L \* D, B, H\) = \(4, 11, 5\); got shape \(2, 11, 5\)"):
        lbd.forward(lstm, xd, h0=h0[:2])
    with pytest.raises(TypeError, match="mixed dtypes: c0 is float64"):
        lbd.forward(lstm, xd, c0=c0.astype(np.float64))
    with pytest.raises(TypeError, match="backend must be"):
        lbd.forward(lstm, xd, backend=3)
    with pytest.raises(ValueError, match="num_threads"):
        lbd.forward(lstm, xd, num_threads=0)
    with pytest.raises(ValueError, match="unknown chunk sizes"):
        lbd.forward(lstm, xd[:, xd[0, :, 0] > 0])


def test_dask_lengths_out_of_range_name_the_global_index():
    lstm, x, lengths, _, _ = _problem()
    bad = da.from_array(np.where(np.arange(B) == 9, -1, lengths), chunks=4)
    y, _ = lbd.forward(lstm, _dask_x(x, False), bad)
    with pytest.raises(ValueError, match=r"lengths must lie in \[0, T\] = \[0, 7\]; lengths\[9\] = -1"):
        _compute_threads(y)


def test_worker_without_the_backend_says_which_and_how_to_fix(client):
    lb.register_backend("client-only", ClientOnlyBackend, replace=True)
    try:
        lstm, x, lengths, _, _ = _problem(backend="client-only")
        y, _ = lbd.forward(lstm, _dask_x(x, False), lengths)
        assert np.array_equal(_compute_threads(y)[0], lstm(x, lengths=lengths)[0])  # fine on the client

        # Registered on the client only: the worker's registry does not know the name.
        with pytest.raises(lb.UnknownBackendError, match=r"dask worker .* cannot run backend 'client-only'.*plugin"):
            client.compute(y, sync=True)

        # Registered in the workers too, but unavailable there: the registry's reason and fix.
        client.run(lb.register_backend, "client-only", f"{__name__}:ClientOnlyBackend", replace=True)
        y, _ = lbd.forward(lstm, _dask_x(x, False), lengths[::-1].copy())  # new keys: the old ones erred
        with pytest.raises(lb.BackendUnavailableError,
                           match=r"cannot run backend 'client-only'.*no licence on this worker.*To fix: run on"):
            client.compute(y, sync=True)
    finally:
        lb.unregister_backend("client-only")
        client.run(lambda: [lb.unregister_backend(n) for n in ("client-only",) if n in lb.registered_backends()])


# ---------------------------------------------------------------------------- the example
EXAMPLE = __import__("pathlib").Path(__file__).resolve().parents[1] / "examples" / "dask_zarr.py"
SMALL = {"sequences": 600, "steps": 5, "features": 3, "hidden": 4, "layers": 2, "chunk": 200}


def _check_example_outputs(store, backend):
    zarr = pytest.importorskip("zarr")
    group = zarr.open_group(store, mode="r")
    x, lengths = group["x"][:], group["lengths"][:]
    assert x.shape == (600, 5, 3) and group["x"].chunks == (200, 5, 3)
    lstm = lb.LSTM(3, 4, num_layers=2, batch_first=True, backend=backend, seed=0)  # the example's weights
    y_ref, (h_ref, _) = lstm(x, lengths=lengths)
    np.testing.assert_allclose(group["y"][:], y_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(group["h_n"][:], h_ref, rtol=1e-5, atol=1e-6)
    assert group["y"].chunks == (200, 5, 4)


def test_example_on_the_threaded_scheduler(tmp_path):
    pytest.importorskip("zarr")
    store = str(tmp_path / "data.zarr")
    args = [f"--{k}={v}" for k, v in SMALL.items()]
    out = subprocess.run([sys.executable, str(EXAMPLE), "--store", store, *args, "--threads", "2",
                          "--compare-local", "--repeat", "1"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "making x (600, 5, 3)" in out.stdout and "zarr -> LSTM -> zarr" in out.stdout
    assert "Dask against the local call" in out.stdout
    assert "100% Completed" in out.stdout  # Dask's progress bar
    _check_example_outputs(store, "numba")


def test_example_on_distributed(client, tmp_path):
    pytest.importorskip("zarr")
    import importlib.util

    spec = importlib.util.spec_from_file_location("dask_zarr_example", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    store = str(tmp_path / "data.zarr")
    example.run(example.make_dataset(store, 600, 5, 3, 200), client)
    assert example.dataset_matches(store, 600, 5, 3, 200)
    lstm = lb.LSTM(3, 4, num_layers=2, batch_first=True, backend="numpy", seed=0)
    example.run(example.lstm_outputs(lstm, store), client)
    _check_example_outputs(store, "numpy")
    times = example.compare_local(lstm, store, client, threads=2, repeat=1)
    assert set(times) == {"dask", "local", "local_chunks"} and all(t > 0 for t in times.values())
