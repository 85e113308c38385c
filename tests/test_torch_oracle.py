"""PyTorch as a second oracle (needs the ``torch`` extra), over every available backend."""

import numpy as np
import pytest

import lstm_backends as lb
from lstm_backends.testing import assert_close

torch = pytest.importorskip("torch")

# torch falls back from oneDNN for projections and says so; that is its business, not a failure
no_onednn_warning = pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")

DTYPES = [(np.float32, torch.float32), (np.float64, torch.float64)]


def _torch_lstm(lstm_ours, tdtype):
    t = torch.nn.LSTM(lstm_ours.input_size, lstm_ours.hidden_size, num_layers=lstm_ours.num_layers,
                      bidirectional=lstm_ours.bidirectional, batch_first=lstm_ours.batch_first, dtype=tdtype,
                      proj_size=lstm_ours.proj_size)
    with torch.no_grad():
        for name, value in lstm_ours.state_dict().items():
            getattr(t, name).copy_(torch.from_numpy(value))
    return t


@pytest.mark.parametrize("dtype, tdtype", DTYPES)
@pytest.mark.parametrize("batch_first", [False, True])
def test_stacked_bidirectional_packed(lstm_backend_name, dtype, tdtype, batch_first):
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    ours = lb.LSTM(5, 7, num_layers=2, bidirectional=True, batch_first=batch_first, dtype=dtype,
                   backend=lstm_backend_name, seed=123)
    theirs = _torch_lstm(ours, tdtype)
    rng = np.random.default_rng(7)
    steps, batch = 6, 4
    x = rng.standard_normal((batch, steps, 5) if batch_first else (steps, batch, 5)).astype(dtype)
    h0 = rng.uniform(-1, 1, (4, batch, 7)).astype(dtype)
    c0 = rng.standard_normal((4, batch, 7)).astype(dtype)
    lengths = np.array([6, 1, 4, 3])
    y, (h_n, c_n) = ours(x, (h0, c0), lengths=lengths)
    with torch.inference_mode():
        packed = pack_padded_sequence(torch.from_numpy(x), torch.from_numpy(lengths), batch_first=batch_first,
                                      enforce_sorted=False)
        ty, (th, tc) = theirs(packed, (torch.from_numpy(h0), torch.from_numpy(c0)))
        ty, _ = pad_packed_sequence(ty, batch_first=batch_first, total_length=steps)
    ctx = f"{lstm_backend_name} vs torch.nn.LSTM packed, batch_first={batch_first}"
    assert_close(y, ty.numpy().astype(np.float64), dtype=dtype, name="y", context=ctx)
    assert_close(h_n, th.numpy().astype(np.float64), dtype=dtype, name="h_n", context=ctx)
    assert_close(c_n, tc.numpy().astype(np.float64), dtype=dtype, name="c_n", context=ctx)


@pytest.mark.parametrize("dtype, tdtype", DTYPES)
def test_single_layer_full_lengths_default_state(lstm_backend_name, dtype, tdtype):
    ours = lb.LSTM(8, 16, dtype=dtype, backend=lstm_backend_name, seed=5)
    theirs = _torch_lstm(ours, tdtype)
    x = np.random.default_rng(3).standard_normal((9, 3, 8)).astype(dtype)
    y, (h_n, c_n) = ours(x)
    with torch.inference_mode():
        ty, (th, tc) = theirs(torch.from_numpy(x))
    assert_close(y, ty.numpy().astype(np.float64), dtype=dtype, name="y")
    assert_close(c_n, tc.numpy().astype(np.float64), dtype=dtype, name="c_n")


@pytest.mark.parametrize("dtype, tdtype", DTYPES)
def test_cell_matches_lstmcell(lstm_backend_name, dtype, tdtype):
    be = lb.get_backend(lstm_backend_name)
    cell = torch.nn.LSTMCell(6, 5, dtype=tdtype)
    rng = np.random.default_rng(11)
    with torch.no_grad():
        for p in cell.parameters():
            p.copy_(torch.from_numpy(rng.uniform(-0.6, 0.6, tuple(p.shape)).astype(dtype)))
    params = lb.LSTMParams(*(p.detach().numpy() for p in (cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)))
    x = rng.standard_normal((3, 6)).astype(dtype)
    h = rng.uniform(-1, 1, (3, 5)).astype(dtype)
    c = rng.standard_normal((3, 5)).astype(dtype)
    h1, c1 = be.cell(x, h, c, params)
    with torch.inference_mode():
        th, tc = cell(torch.from_numpy(x), (torch.from_numpy(h), torch.from_numpy(c)))
    assert_close(h1, th.numpy().astype(np.float64), dtype=dtype, name="h")
    assert_close(c1, tc.numpy().astype(np.float64), dtype=dtype, name="c")


def test_load_real_torch_state_dict_tensors():
    theirs = torch.nn.LSTM(4, 3, num_layers=2, bidirectional=True)
    ours = lb.LSTM(4, 3, num_layers=2, bidirectional=True, backend="numpy")
    ours.load_state_dict(theirs.state_dict())  # tensors with requires_grad convert without fuss
    for k, v in theirs.state_dict().items():
        np.testing.assert_array_equal(ours.state_dict()[k], v.numpy())


def _needs(name, feature):
    backend = lb.get_backend(name)
    if feature not in backend.capabilities:
        pytest.skip(f"{name} lacks the {feature!r} capability")
    return backend


@no_onednn_warning
@pytest.mark.parametrize("dtype, tdtype", DTYPES)
@pytest.mark.parametrize("batch_first", [False, True])
def test_lstmp_stacked_bidirectional_packed(lstm_backend_name, dtype, tdtype, batch_first):
    """LSTMP (proj_size): torch's own random weights loaded through its state dict, packed sequences."""
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    _needs(lstm_backend_name, "projection")
    torch.manual_seed(3)
    theirs = torch.nn.LSTM(5, 7, num_layers=2, bidirectional=True, proj_size=3, batch_first=batch_first,
                           dtype=tdtype)
    ours = lb.LSTM(5, 7, num_layers=2, bidirectional=True, proj_size=3, batch_first=batch_first, dtype=dtype,
                   backend=lstm_backend_name)
    ours.load_state_dict(theirs.state_dict())
    assert set(ours.state_dict()) == set(theirs.state_dict())
    assert ours.state_dict()["weight_hr_l1_reverse"].shape == (3, 7)
    rng = np.random.default_rng(8)
    steps, batch = 6, 4
    x = rng.standard_normal((batch, steps, 5) if batch_first else (steps, batch, 5)).astype(dtype)
    h0 = rng.uniform(-1, 1, (4, batch, 3)).astype(dtype)
    c0 = rng.standard_normal((4, batch, 7)).astype(dtype)
    lengths = np.array([6, 1, 4, 3])
    y, (h_n, c_n) = ours(x, (h0, c0), lengths=lengths)
    assert y.shape[-1] == 6 and h_n.shape == (4, batch, 3) and c_n.shape == (4, batch, 7)
    with torch.inference_mode():
        packed = pack_padded_sequence(torch.from_numpy(x), torch.from_numpy(lengths), batch_first=batch_first,
                                      enforce_sorted=False)
        ty, (th, tc) = theirs(packed, (torch.from_numpy(h0), torch.from_numpy(c0)))
        ty, _ = pad_packed_sequence(ty, batch_first=batch_first, total_length=steps)
    ctx = f"{lstm_backend_name} vs torch.nn.LSTM(proj_size=3) packed, batch_first={batch_first}"
    assert_close(y, ty.numpy().astype(np.float64), dtype=dtype, name="y", context=ctx)
    assert_close(h_n, th.numpy().astype(np.float64), dtype=dtype, name="h_n", context=ctx)
    assert_close(c_n, tc.numpy().astype(np.float64), dtype=dtype, name="c_n", context=ctx)


@no_onednn_warning
@pytest.mark.parametrize("dtype, tdtype", DTYPES)
def test_lstmp_default_state_and_unbatched(lstm_backend_name, dtype, tdtype):
    _needs(lstm_backend_name, "projection")
    torch.manual_seed(4)
    theirs = torch.nn.LSTM(4, 6, proj_size=2, dtype=tdtype)
    ours = lb.LSTM(4, 6, proj_size=2, dtype=dtype, backend=lstm_backend_name)
    ours.load_state_dict(theirs.state_dict())
    x = np.random.default_rng(5).standard_normal((5, 4)).astype(dtype)  # unbatched (T, I)
    y, (h_n, c_n) = ours(x)
    with torch.inference_mode():
        ty, (th, tc) = theirs(torch.from_numpy(x))
    assert y.shape == (5, 2) and h_n.shape == (1, 2) and c_n.shape == (1, 6)
    assert_close(y, ty.numpy().astype(np.float64), dtype=dtype, name="y")
    assert_close(h_n, th.numpy().astype(np.float64), dtype=dtype, name="h_n")
    assert_close(c_n, tc.numpy().astype(np.float64), dtype=dtype, name="c_n")


def test_lstmp_refused_by_a_backend_without_projection():
    backend = next((b for b in lb.list_backends() if b.available and "projection" not in b.capabilities), None)
    if backend is None:
        pytest.skip("every available backend has projections")
    with pytest.raises(lb.UnsupportedFeatureError, match=r"proj_size=2.*projection.*numpy"):
        lb.LSTM(4, 6, proj_size=2, backend=backend.name)
