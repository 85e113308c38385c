import numpy as np
import pytest

import lstm_backends as lb


def _layer(**kw):
    kw.setdefault("backend", "numpy")
    return lb.LSTM(3, 4, seed=0, **kw)


def test_state_dict_names_and_shapes():
    sd = _layer(num_layers=2, bidirectional=True).state_dict()
    assert set(sd) == {
        f"{k}_l{layer}{s}" for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        for layer in (0, 1) for s in ("", "_reverse")
    }
    assert sd["weight_ih_l0"].shape == (16, 3) and sd["weight_ih_l1_reverse"].shape == (16, 8)
    assert sd["weight_hh_l1"].shape == (16, 4) and sd["bias_hh_l0_reverse"].shape == (16,)
    assert set(_layer(bias=False).state_dict()) == {"weight_ih_l0", "weight_hh_l0"}


def test_load_state_dict_round_trip_and_cast():
    a, b = _layer(num_layers=2), lb.LSTM(3, 4, num_layers=2, backend="numpy", seed=1, dtype=np.float64)
    b.load_state_dict(a.state_dict())
    for k, v in b.state_dict().items():
        assert v.dtype == np.float64
        np.testing.assert_array_equal(v, a.state_dict()[k])


def test_load_state_dict_errors():
    lstm = _layer(num_layers=2)
    sd = lstm.state_dict()
    missing = dict(sd)
    del missing["weight_hh_l1"]
    with pytest.raises(KeyError, match="missing keys: weight_hh_l1"):
        lstm.load_state_dict(missing)
    extra = dict(sd, weight_ih_l0_reverse=sd["weight_ih_l0"])
    with pytest.raises(KeyError, match="unexpected keys: weight_ih_l0_reverse"):
        lstm.load_state_dict(extra)
    lstm.load_state_dict(extra, strict=False)
    bad = dict(sd, weight_ih_l1=np.zeros((16, 5), np.float32))
    with pytest.raises(ValueError, match=r"weight_ih_l1.*\(16, 4\).*\(16, 5\)"):
        lstm.load_state_dict(bad)
    with pytest.raises(TypeError, match="floating"):
        lstm.load_state_dict(dict(sd, bias_ih_l0=np.zeros(16, np.int64)))


def test_load_is_atomic_on_error():
    lstm = _layer()
    before = lstm.state_dict()
    bad = {k: v + 1 for k, v in before.items()}
    bad["bias_hh_l0"] = np.zeros(3, np.float32)
    with pytest.raises(ValueError):
        lstm.load_state_dict(bad)
    for k, v in lstm.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def test_batch_first_and_unbatched_agree_with_time_major():
    rng = np.random.default_rng(0)
    tm, bf = _layer(num_layers=2, bidirectional=True), _layer(num_layers=2, bidirectional=True, batch_first=True)
    x = rng.standard_normal((5, 2, 3)).astype(np.float32)
    y, (h, c) = tm(x, lengths=[5, 2])
    y2, (h2, c2) = bf(x.transpose(1, 0, 2).copy(), lengths=[5, 2])
    np.testing.assert_array_equal(y2.transpose(1, 0, 2), y)
    np.testing.assert_array_equal(h2, h)
    yu, (hu, cu) = tm(x[:, 0])
    np.testing.assert_allclose(yu, tm(x[:, :1])[0][:, 0], rtol=1e-6)
    assert hu.shape == (4, 4)


def test_call_errors():
    lstm = _layer(num_layers=2)
    x = np.zeros((5, 2, 3), np.float32)
    with pytest.raises(ValueError, match=r"h0 must have shape \(L \* D, B, H\) = \(2, 2, 4\)"):
        lstm(x, (np.zeros((1, 2, 4), np.float32), np.zeros((2, 2, 4), np.float32)))
    with pytest.raises(ValueError, match="x must have shape"):
        lstm(np.zeros((2, 3, 4, 5), np.float32))
    with pytest.raises(TypeError, match="mixed"):
        lstm(x.astype(np.float64))
    with pytest.raises(ValueError, match="input_size"):
        lb.LSTM(0, 4)
    with pytest.raises(TypeError, match="dtype"):
        lb.LSTM(3, 4, dtype=np.int32)


def test_bias_false_means_zero_bias():
    lstm = _layer(bias=False)
    assert not lstm.params[0][0].b_ih.any()
    assert "bias=False" in repr(lstm)


def test_lstmp_state_dict_names_shapes_and_errors():
    lstm = lb.LSTM(3, 5, num_layers=2, bidirectional=True, proj_size=2, backend="numpy", seed=0)
    sd = lstm.state_dict()
    assert {k for k in sd if k.startswith("weight_hr")} == {"weight_hr_l0", "weight_hr_l0_reverse", "weight_hr_l1",
                                                           "weight_hr_l1_reverse"}
    assert sd["weight_hr_l1"].shape == (2, 5) and sd["weight_hh_l0"].shape == (20, 2)
    assert sd["weight_ih_l1_reverse"].shape == (20, 4)  # layer 1 reads D * P features
    assert "proj_size=2" in repr(lstm)
    missing = {k: v for k, v in sd.items() if k != "weight_hr_l1"}
    with pytest.raises(KeyError, match="missing keys: weight_hr_l1"):
        lstm.load_state_dict(missing)
    with pytest.raises(KeyError, match="unexpected keys: weight_hr_l0"):
        _layer().load_state_dict({**_layer().state_dict(), "weight_hr_l0": sd["weight_hr_l0"]})
    x = np.zeros((4, 2, 3), np.float32)
    with pytest.raises(ValueError, match=r"h0 must have shape \(L \* D, B, P\) = \(4, 2, 2\)"):
        lstm(x, (np.zeros((4, 2, 5), np.float32), np.zeros((4, 2, 5), np.float32)))
    with pytest.raises(ValueError, match=r"c0 must have shape \(L \* D, B, H\) = \(4, 2, 5\)"):
        lstm(x, (np.zeros((4, 2, 2), np.float32), np.zeros((4, 2, 2), np.float32)))
    y, (h_n, c_n) = lstm(x, (np.zeros((4, 2, 2), np.float32), np.zeros((4, 2, 5), np.float32)), lengths=[4, 0])
    assert y.shape == (4, 2, 4) and h_n.shape == (4, 2, 2) and c_n.shape == (4, 2, 5)
    for bad in (5, 7, -1, 1.5):
        with pytest.raises(ValueError, match="proj_size"):
            lb.LSTM(3, 5, proj_size=bad)


def test_lstmp_same_seed_same_core_weights():
    """Adding a projection does not reshuffle the draws of the weights that come before it."""
    plain, proj = lb.LSTM(3, 5, seed=7, backend="numpy"), lb.LSTM(3, 5, seed=7, proj_size=2, backend="numpy")
    np.testing.assert_array_equal(plain.params[0][0].w_ih, proj.params[0][0].w_ih)
