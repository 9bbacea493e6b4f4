"""Plugin discovery and error isolation, with entry points faked (nothing installed)."""

import importlib.metadata
import types

import pytest
from fake_plugins import AcmePlugin, CopycatPlugin, TypoPlugin, WrongArgPlugin

from mvcore.errors import DuplicateComponentError, PluginLoadError
from mvcore.losses.base import Loss
from mvcore.plugin import manager as manager_module
from mvcore.plugin.manager import get_plugin_manager


class FakeDist:
    def __init__(self, name, version="1.0"):
        self.metadata = {"Name": name}
        self.version = version


class FakeEntryPoint:
    def __init__(self, name, value, loader, dist=None):
        self.name, self.value, self._loader = name, value, loader
        self.dist = dist or FakeDist(name)

    def load(self):
        return self._loader()


def fake_entry_points(monkeypatch, entries):
    def entry_points(group=None):
        assert group == "mvcore"
        return entries

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    monkeypatch.setattr(manager_module.importlib_metadata, "entry_points", entry_points)


def module_with(plugin_obj, name):
    module = types.ModuleType(name)
    module.mvcore_register_losses = plugin_obj.mvcore_register_losses
    return module


def broken_loader():
    raise ImportError("No module named 'missing_dependency'")


def test_entry_points_are_loaded_with_their_distribution(monkeypatch):
    monkeypatch.delenv("MVCORE_LOAD_PLUGINS")
    fake_entry_points(monkeypatch, [
        FakeEntryPoint("acme-losses", "acme.plugin", lambda: module_with(AcmePlugin(), "acme"),
                       FakeDist("acme-losses", "2.1")),
    ])
    manager = get_plugin_manager()
    registry = manager.build_registry("loss", base=Loss, name_attr="loss_name")
    assert registry.entry("acme_bone_length").provider == "acme-losses"
    assert registry.entry("acme_bone_length").version == "2.1"
    assert manager.info["acme-losses"].registered == {"loss": ["acme_bone_length"]}


def test_broken_plugin_is_reported_and_others_still_load(monkeypatch):
    monkeypatch.delenv("MVCORE_LOAD_PLUGINS")
    fake_entry_points(monkeypatch, [
        FakeEntryPoint("broken", "broken.plugin", broken_loader),
        FakeEntryPoint("acme-losses", "acme.plugin", lambda: module_with(AcmePlugin(), "acme")),
    ])
    with pytest.warns(RuntimeWarning, match="broken"):
        manager = get_plugin_manager()
    assert "missing_dependency" in manager.load_errors["broken"]
    registry = manager.build_registry("loss", base=Loss, name_attr="loss_name")
    assert "acme_bone_length" in registry
    assert "broken" in registry.unknown_message("nope")  # load errors shown beside lookups


def test_broken_plugin_is_fatal_in_strict_mode(monkeypatch):
    monkeypatch.delenv("MVCORE_LOAD_PLUGINS")
    monkeypatch.setenv("MVCORE_STRICT_PLUGINS", "1")
    fake_entry_points(monkeypatch, [FakeEntryPoint("broken", "broken.plugin", broken_loader)])
    with pytest.raises(PluginLoadError, match="broken.*MVCORE_STRICT_PLUGINS"):
        get_plugin_manager()


def test_load_and_disable_switches(monkeypatch):
    entries = [
        FakeEntryPoint("acme-losses", "a", lambda: module_with(AcmePlugin(), "acme")),
        FakeEntryPoint("copycat", "c", lambda: module_with(CopycatPlugin(), "copycat")),
    ]
    fake_entry_points(monkeypatch, entries)
    assert get_plugin_manager().info == {}  # MVCORE_LOAD_PLUGINS="" from conftest
    monkeypatch.setenv("MVCORE_LOAD_PLUGINS", "copycat")
    assert list(get_plugin_manager().info) == ["copycat"]
    monkeypatch.delenv("MVCORE_LOAD_PLUGINS")
    monkeypatch.setenv("MVCORE_DISABLE_PLUGINS", "copycat")
    assert list(get_plugin_manager().info) == ["acme-losses"]
    monkeypatch.setenv("MVCORE_LOAD_PLUGINS", "not-installed")
    monkeypatch.delenv("MVCORE_DISABLE_PLUGINS")
    with pytest.warns(RuntimeWarning, match="not installed"):
        assert "not-installed" in get_plugin_manager().load_errors


def test_same_distribution_seen_twice_loads_once(monkeypatch):
    monkeypatch.delenv("MVCORE_LOAD_PLUGINS")
    entries = [FakeEntryPoint("acme-losses", "a", lambda: module_with(AcmePlugin(), "acme"))] * 2
    fake_entry_points(monkeypatch, entries)
    manager = get_plugin_manager()
    registry = manager.build_registry("loss", base=Loss, name_attr="loss_name")
    assert registry.names() == ["acme_bone_length"]


def test_duplicate_loss_names_name_both_providers():
    manager = get_plugin_manager(load_entrypoints=False)
    manager.register(AcmePlugin(), name="acme-losses", version="1.0")
    manager.register(CopycatPlugin(), name="copycat-losses", version="0.3")
    with pytest.raises(DuplicateComponentError) as info:
        manager.build_registry("loss", base=Loss, name_attr="loss_name")
    message = str(info.value)
    assert "acme-losses 1.0" in message and "copycat-losses 0.3" in message
    assert "'acme_bone_length'" in message


def test_typo_in_hook_name_is_caught_by_check_pending():
    manager = get_plugin_manager(load_entrypoints=False)
    with pytest.warns(RuntimeWarning, match="unknown hook 'mvcore_register_loses'"):
        manager.register(TypoPlugin(), name="typo-plugin")
    assert "mvcore_register_loses" in manager.load_errors["typo-plugin"]
    assert not manager.pm.has_plugin("typo-plugin")


def test_typo_in_hook_name_is_fatal_in_strict_mode(monkeypatch):
    monkeypatch.setenv("MVCORE_STRICT_PLUGINS", "1")
    manager = get_plugin_manager(load_entrypoints=False)
    with pytest.raises(PluginLoadError, match="unknown hook"):
        manager.register(TypoPlugin(), name="typo-plugin")


def test_hook_with_argument_the_spec_lacks_is_rejected():
    manager = get_plugin_manager(load_entrypoints=False)
    with pytest.warns(RuntimeWarning, match="surprise"):
        manager.register(WrongArgPlugin(), name="wrong-arg")
    assert "wrong-arg" in manager.load_errors


def test_registering_a_class_instead_of_an_instance_is_explained():
    manager = get_plugin_manager(load_entrypoints=False)
    with pytest.raises(TypeError, match=r"forget the '\(\)'"):
        manager.register(AcmePlugin, name="acme")


def test_tracing_prints_hook_calls(monkeypatch, capsys):
    monkeypatch.setenv("MVCORE_TRACE_PLUGINS", "1")
    manager = get_plugin_manager(load_entrypoints=False)
    manager.register(AcmePlugin(), name="acme-losses")
    manager.build_registry("loss", base=Loss, name_attr="loss_name")
    assert "[mvcore hook] mvcore_register_losses -> acme-losses" in capsys.readouterr().err
