import subprocess
import sys
import textwrap
import warnings
from importlib.metadata import EntryPoint

import numpy as np
import pytest

import lstm_backends as lb
from lstm_backends import _registry
from lstm_backends.backends.numpy_backend import NumpyBackend


@pytest.fixture
def clean_registry(monkeypatch):
    """Run with a private copy of the registry state."""
    monkeypatch.setattr(_registry, "_entries", dict(_registry._entries))
    monkeypatch.setattr(_registry, "_plugins_scanned", _registry._plugins_scanned)
    yield


def _run(code):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, check=True)


def test_import_and_list_import_no_numba():
    out = _run(
        """
        import sys
        import lstm_backends as lb
        names = [b.name for b in lb.list_backends()]
        lb.get_backend("numpy")
        heavy = sorted(m for m in sys.modules if m == "numba" or m.startswith(("numba.", "numba_cuda", "torch")))
        print(heavy, names)
        """
    )
    assert out.stdout.startswith("[]"), out.stdout
    assert "numpy" in out.stdout


def test_list_backends_reports_builtins_and_plugin():
    rows = {b.name: b for b in lb.list_backends()}
    assert rows["numpy"].available and rows["numpy"].origin == "builtin"
    assert "float32" in rows["numpy"].dtypes
    for row in rows.values():
        assert row.available or row.reason, f"{row.name} unavailable without a reason"


def test_example_plugin_is_discovered_through_its_entry_point():
    rows = {b.name: b for b in lb.list_backends()}
    assert "example" in rows, (
        "the example plugin is not installed: the test setup installs it with "
        "`pip install ./examples/plugin` (see README)"
    )
    assert rows["example"].origin == "plugin"
    assert rows["example"].target == "lstm_backends_example:ExampleBackend"
    assert type(lb.get_backend("example")).__name__ == "ExampleBackend"


def test_unknown_name_lists_known_names():
    with pytest.raises(lb.UnknownBackendError) as info:
        lb.get_backend("nope")
    msg = str(info.value)
    assert "'nope'" in msg and "numpy" in msg and "auto" in msg
    assert isinstance(info.value, KeyError) and isinstance(info.value, ValueError)


class _Unavailable(NumpyBackend):
    name = "never"
    install_hint = 'pip install "lstm-backends[never]"'

    @classmethod
    def is_available(cls):
        return lb.Availability(False, "needs the never-library")


def test_unavailable_says_why_and_how_to_fix(clean_registry):
    lb.register_backend("never", _Unavailable)
    with pytest.raises(lb.BackendUnavailableError) as info:
        lb.get_backend("never")
    assert "needs the never-library" in str(info.value)
    assert 'pip install "lstm-backends[never]"' in str(info.value)
    row = next(b for b in lb.list_backends() if b.name == "never")
    assert not row.available and row.reason == "needs the never-library"


def test_register_by_dotted_path_and_replace(clean_registry):
    lb.register_backend("ref2", "lstm_backends.backends.numpy_backend:NumpyBackend")
    assert isinstance(lb.get_backend("ref2"), NumpyBackend)
    with pytest.raises(ValueError, match="already registered"):
        lb.register_backend("ref2", NumpyBackend)
    lb.register_backend("ref2", _Unavailable, replace=True)
    with pytest.raises(lb.BackendUnavailableError):
        lb.get_backend("ref2")
    lb.unregister_backend("ref2")
    with pytest.raises(lb.UnknownBackendError):
        lb.get_backend("ref2")
    assert "ref2" not in lb.registered_backends()


@pytest.mark.parametrize("bad", ["", "auto", None])
def test_register_rejects_bad_names(bad, clean_registry):
    with pytest.raises(ValueError):
        lb.register_backend(bad, NumpyBackend)


def test_broken_registered_path_is_unavailable_with_reason(clean_registry):
    lb.register_backend("broken", "no_such_module_xyz:Backend")
    with pytest.warns(RuntimeWarning, match="broken"):
        row = next(b for b in lb.list_backends() if b.name == "broken")
    assert not row.available and "ModuleNotFoundError" in row.reason
    with pytest.raises(lb.BackendUnavailableError, match="no_such_module_xyz"):
        lb.get_backend("broken")


def test_broken_entry_point_plugin_warns_but_never_breaks(clean_registry, monkeypatch):
    eps = [
        EntryPoint("badplugin", "no_such_plugin_pkg:Backend", _registry.ENTRY_POINT_GROUP),
        EntryPoint("notaclass", "math:pi", _registry.ENTRY_POINT_GROUP),
        EntryPoint("numpy", "math:pi", _registry.ENTRY_POINT_GROUP),  # shadows a built-in
    ]
    monkeypatch.setattr(_registry, "entry_points", lambda group: eps)
    monkeypatch.setattr(_registry, "_plugins_scanned", False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rows = {b.name: b for b in lb.list_backends()}
    messages = " | ".join(str(w.message) for w in caught)
    assert "badplugin" in messages and "notaclass" in messages and "shadows a built-in" in messages
    assert all(issubclass(w.category, RuntimeWarning) for w in caught)
    assert not rows["badplugin"].available and not rows["notaclass"].available
    assert rows["numpy"].available  # the built-in survived
    # get_backend("auto") and other backends are unaffected
    assert lb.get_backend("numpy") is not None


def test_broken_plugin_in_subprocess_import_succeeds(tmp_path):
    # A real (broken) distribution on sys.path: its entry point names a module that raises.
    dist = tmp_path / "brokenplug-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: brokenplug\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[lstm_backends.backends]\nbrokenplug = brokenplug_mod:B\n")
    (tmp_path / "brokenplug_mod.py").write_text("raise RuntimeError('plugin import exploded')\n")
    code = f"""
        import sys, warnings
        sys.path.insert(0, {str(tmp_path)!r})
        import lstm_backends as lb
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            rows = {{b.name: b for b in lb.list_backends()}}
        print(rows["brokenplug"].available, "exploded" in rows["brokenplug"].reason,
              any("brokenplug" in str(x.message) for x in w))
    """
    assert _run(code).stdout.split() == ["False", "True", "True"]


def test_auto_picks_highest_priority_available(clean_registry):
    class Faster(NumpyBackend):
        name = "faster"
        auto_priority = 1000

    class FasterButSimulated(Faster):
        name = "simulated"
        auto_priority = 2000

        @classmethod
        def auto_eligible(cls):
            return False

    lb.register_backend("faster", Faster)
    lb.register_backend("simulated", FasterButSimulated)
    assert isinstance(lb.get_backend("auto"), Faster)
    assert not isinstance(lb.get_backend("auto"), FasterButSimulated)


def test_auto_default_order():
    rows = {b.name: b for b in lb.list_backends()}
    expected = next(n for n in ("cuda", "numba", "numpy") if n in rows and rows[n].available
                    and not (n == "cuda" and "simulat" in rows[n].reason))
    assert lb.get_backend("auto").name == expected


def test_get_backend_passes_instances_through():
    be = NumpyBackend()
    assert lb.get_backend(be) is be
    with pytest.raises(TypeError):
        lb.get_backend(42)


def test_backends_view_is_read_only():
    view = lb.registered_backends()
    with pytest.raises(TypeError):
        view["x"] = "y"  # type: ignore[index]


def test_register_refuses_non_backends_at_registration(clean_registry):
    class NotABackend:
        def forward(self):
            pass

    for bad in (NotABackend, NotABackend(), 42):
        with pytest.raises(TypeError, match="lstm_backends.Backend"):
            lb.register_backend("bad", bad)
    with pytest.raises(ValueError, match="module:Class"):
        lb.register_backend("bad", "no_colon_here")
    assert "bad" not in lb.registered_backends()


def test_dotted_path_to_a_non_backend_is_refused_when_loaded(clean_registry):
    lb.register_backend("pi", "math:pi")
    with pytest.warns(RuntimeWarning, match="math:pi is not a backend"):
        row = next(b for b in lb.list_backends() if b.name == "pi")
    assert not row.available and "lstm_backends.Backend" in row.reason


def test_register_an_instance(clean_registry):
    be = NumpyBackend()
    lb.register_backend("mine", be)
    assert lb.get_backend("mine") is be
    assert lb.registered_backends()["mine"].endswith(":NumpyBackend")


def test_two_plugins_with_one_name_warn_naming_both_distributions(clean_registry, monkeypatch):
    class Dist:
        def __init__(self, name):
            self.name = name

    first = EntryPoint("twin", "lstm_backends.backends.numpy_backend:NumpyBackend", _registry.ENTRY_POINT_GROUP)
    second = EntryPoint("twin", "math:pi", _registry.ENTRY_POINT_GROUP)
    object.__setattr__(first, "dist", Dist("first-dist"))
    object.__setattr__(second, "dist", Dist("second-dist"))
    monkeypatch.setattr(_registry, "entry_points", lambda group: [first, second])
    monkeypatch.setattr(_registry, "_plugins_scanned", False)
    with pytest.warns(RuntimeWarning) as caught:
        rows = {b.name: b for b in lb.list_backends()}
    message = " ".join(str(w.message) for w in caught)
    assert "'twin'" in message and "first-dist" in message and "second-dist" in message
    assert rows["twin"].available and rows["twin"].target.endswith(":NumpyBackend")  # the first is kept


def test_capabilities_are_reported_and_checked():
    rows = {b.name: b for b in lb.list_backends()}
    assert set(rows["numpy"].capabilities) >= {"forward", "cell"}
    assert "device-arrays" in rows["cuda"].capabilities and "device-arrays" not in rows["numba"].capabilities
    assert "numpy" in lb.backends_with("forward") and "cuda" in lb.backends_with("device-arrays")
    with pytest.raises(TypeError, match="unknown entries"):
        class Typo(NumpyBackend):
            capabilities = frozenset({"forwrad"})


def test_missing_capability_is_a_clear_error():
    class ForwardOnly(NumpyBackend):
        name = "forward-only"
        capabilities = frozenset({"forward"})

    be = ForwardOnly()
    x = np.zeros((1, 3), np.float32)
    params = lb.testing.random_params(3, 2)
    with pytest.raises(lb.UnsupportedFeatureError, match=r"'forward-only' does not support 'cell'.*numpy"):
        be.cell(x, np.zeros((1, 2), np.float32), np.zeros((1, 2), np.float32), params)
    assert isinstance(lb.UnsupportedFeatureError("x"), NotImplementedError)


def test_refusals_name_the_registered_alternatives_exactly(clean_registry):
    """The base class names alternatives through the lookup the registry installs (it does not
    import the registry): registrations made later are seen, and the messages are unchanged."""
    class Plain(NumpyBackend):
        name = "plain"
        capabilities = frozenset({"forward", "cell", "backward", "clip"})
        backward_features = frozenset()

    class Peeps(NumpyBackend):
        name = "peeps"
        capabilities = frozenset({"forward", "cell", "backward", "peephole", "clip"})
        backward_features = frozenset({"clip"})

    be = Plain()
    with pytest.raises(lb.UnsupportedFeatureError) as info:
        be._require("fp8")
    assert str(info.value) == ("backend 'plain' does not support 'fp8' (its capabilities: backward, cell, clip, "
                               "forward); no registered backend does")
    lb.register_backend("peeps", Peeps)
    with pytest.raises(lb.UnsupportedFeatureError) as info:
        be._require("peephole", "params.w_peep (peepholes)")
    assert str(info.value) == (
        "backend 'plain' does not support params.w_peep (peepholes), capability 'peephole' (its capabilities: "
        f"backward, cell, clip, forward); backends that do: {', '.join(lb.backends_with('peephole'))}"
    )
    assert "peeps" in lb.backends_with("peephole")
    x = np.zeros((2, 1, 3), np.float32)
    with pytest.raises(lb.UnsupportedFeatureError) as info:
        be.forward_train(x, lb.testing.random_params(3, 2), clip=3.0)
    others = [n for n in lb.backends_with("clip", training=True) if n != "plain"]
    assert "peeps" in others
    assert str(info.value) == (
        "backend 'plain' cannot train (forward_train / backward) with clip=3: its backward pass lacks the feature "
        f"'clip' (it supports: none); backends that train with it: {', '.join(others)}"
    )


def test_one_install_hint_per_backend():
    # the hint lives on the class only; the registry adds none for built-ins
    for path in _registry._BUILTINS.values():
        assert isinstance(path, str)
    rows = {b.name: b for b in lb.list_backends()}
    from lstm_backends.backends.cuda_backend import CudaBackend

    assert rows["cuda"].install_hint == CudaBackend.install_hint
