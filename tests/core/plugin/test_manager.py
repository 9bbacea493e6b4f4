"""Plugin discovery and isolation, with entry points faked (nothing installed)."""

import importlib.metadata
import types

import pytest
from fake_plugins import (
    AcmePlugin,
    CopycatPlugin,
    LazyTypoPlugin,
    NotALossPlugin,
    RaisingPlugin,
    TypoPlugin,
    WrongArgPlugin,
)

from mvcore.errors import DuplicateComponentError, PluginError, PluginLoadError
from mvcore.losses.base import Loss
from mvcore.plugin import manager as manager_module
from mvcore.plugin.components import build_components
from mvcore.plugin.manager import PluginSettings, get_plugin_manager, normalize_name


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


def losses(manager):
    return manager.build_registry("loss", base=Loss, name_attr="loss_name")


def test_entry_points_are_loaded_with_their_distribution(monkeypatch):
    monkeypatch.delenv("MVCORE_LOAD_PLUGINS")
    fake_entry_points(monkeypatch, [
        FakeEntryPoint("acme-losses", "acme.plugin", lambda: module_with(AcmePlugin(), "acme"),
                       FakeDist("acme-losses", "2.1")),
    ])
    manager = get_plugin_manager()
    registry = losses(manager)
    assert registry.entry("acme_bone_length").provider == "acme-losses"
    assert registry.entry("acme_bone_length").version == "2.1"
    assert manager.info["acme-losses"].registered == {"loss": ["acme_bone_length"]}


def test_broken_import_is_reported_and_others_still_load(monkeypatch):
    monkeypatch.delenv("MVCORE_LOAD_PLUGINS")
    fake_entry_points(monkeypatch, [
        FakeEntryPoint("broken", "broken.plugin", broken_loader),
        FakeEntryPoint("acme-losses", "acme.plugin", lambda: module_with(AcmePlugin(), "acme")),
    ])
    with pytest.warns(RuntimeWarning, match="mvcore plugin 'broken': import of 'broken.plugin' "
                                            "failed: ImportError: No module named"):
        manager = get_plugin_manager()
    registry = losses(manager)
    assert "acme_bone_length" in registry
    assert "broken: import of" in registry.unknown_message("nope")  # shown beside lookups


def test_every_problem_is_fatal_in_strict_mode(monkeypatch):
    monkeypatch.delenv("MVCORE_LOAD_PLUGINS")
    monkeypatch.setenv("MVCORE_STRICT_PLUGINS", "1")
    fake_entry_points(monkeypatch, [FakeEntryPoint("broken", "broken.plugin", broken_loader)])
    with pytest.raises(PluginLoadError, match="broken: import of.*") as info:
        build_components(get_plugin_manager())
    assert "MVCORE_STRICT_PLUGINS=1 makes them fatal" in str(info.value)
    for plugin in (RaisingPlugin(), NotALossPlugin(), CopycatPlugin(), LazyTypoPlugin()):
        manager = get_plugin_manager(load_entrypoints=False)
        manager.register(AcmePlugin(), name="mv-losses")
        manager.register(plugin, name="third-party")
        with pytest.raises(PluginLoadError, match="third-party: "):
            build_components(manager)


def test_load_and_disable_switches_are_normalised_and_checked(monkeypatch):
    entries = [
        FakeEntryPoint("acme-losses", "a", lambda: module_with(AcmePlugin(), "acme")),
        FakeEntryPoint("copycat", "c", lambda: module_with(CopycatPlugin(), "copycat")),
    ]
    fake_entry_points(monkeypatch, entries)
    assert get_plugin_manager().info == {}  # MVCORE_LOAD_PLUGINS="" from conftest
    monkeypatch.setenv("MVCORE_LOAD_PLUGINS", "Copycat")
    assert list(get_plugin_manager().info) == ["copycat"]
    monkeypatch.delenv("MVCORE_LOAD_PLUGINS")
    monkeypatch.setenv("MVCORE_DISABLE_PLUGINS", "ACME_losses")
    assert list(get_plugin_manager().info) == ["copycat"]
    monkeypatch.setenv("MVCORE_DISABLE_PLUGINS", "acme-losess")
    with pytest.warns(RuntimeWarning, match="MVCORE_DISABLE_PLUGINS names 'acme-losess', which "
                                            "matches no installed mvcore plugin.*acme-losses"):
        get_plugin_manager()
    monkeypatch.setenv("MVCORE_LOAD_PLUGINS", "not-installed")
    monkeypatch.delenv("MVCORE_DISABLE_PLUGINS")
    with pytest.warns(RuntimeWarning, match="not installed"):
        assert "not-installed" in get_plugin_manager().load_errors


def test_names_compare_like_distribution_names():
    assert normalize_name(" MV_Losses ") == "mv-losses" == normalize_name("mv.losses")
    settings = PluginSettings.from_env({"MVCORE_DISABLE_PLUGINS": "A_b, c", "MVCORE_STRICT_"
                                        "PLUGINS": "yes"})
    assert settings.disable == ("a-b", "c") and settings.strict and settings.load is None


def test_same_distribution_seen_twice_loads_once(monkeypatch):
    monkeypatch.delenv("MVCORE_LOAD_PLUGINS")
    entries = [FakeEntryPoint("acme-losses", "a", lambda: module_with(AcmePlugin(), "acme"))] * 2
    fake_entry_points(monkeypatch, entries)
    assert losses(get_plugin_manager()).names() == ["acme_bone_length"]


def test_a_hook_that_raises_disables_only_that_plugins_names():
    manager = get_plugin_manager(load_entrypoints=False)
    manager.register(AcmePlugin(), name="acme-losses")
    manager.register(RaisingPlugin(), name="flaky-losses", version="0.2")
    with pytest.warns(RuntimeWarning, match="mvcore plugin 'flaky-losses': its "
                                            "mvcore_register_losses hook raised RuntimeError: "
                                            "needs a licence server"):
        registry = losses(manager)
    assert registry.get("acme_bone_length").__name__ == "BoneLengthLoss"
    with pytest.raises(PluginError) as info:
        registry.get("raising_bone", key_path="losses.raising_bone")
    assert str(info.value) == (
        "losses.raising_bone: loss 'raising_bone' from plugin flaky-losses 0.2 is broken: its "
        "mvcore_register_losses hook raised RuntimeError: needs a licence server. To use it, "
        "update or reinstall flaky-losses, or report it to its author")
    assert manager.info["flaky-losses"].disabled == {"loss": {
        "raising_bone": "its mvcore_register_losses hook raised RuntimeError: needs a licence "
                        "server"}}


def test_a_class_of_the_wrong_kind_is_disabled_not_fatal():
    manager = get_plugin_manager(load_entrypoints=False)
    manager.register(AcmePlugin(), name="acme-losses")
    manager.register(NotALossPlugin(), name="bad")
    with pytest.warns(RuntimeWarning, match="'not_a_loss' is disabled: <class 'dict'> is not a "
                                            "subclass of mvcore.losses.base.Loss"):
        registry = losses(manager)
    assert "acme_bone_length" in registry and "not_a_loss" not in registry
    with pytest.raises(PluginError, match="from plugin bad is broken"):
        registry.get("not_a_loss")


def test_a_clash_with_our_own_plugin_keeps_ours_and_names_both():
    manager = get_plugin_manager(load_entrypoints=False)
    manager.register(CopycatPlugin(), name="copycat-losses", version="0.3")
    manager.register(AcmePlugin(), name="mv-losses", version="0.1")
    with pytest.warns(RuntimeWarning) as caught:
        registry = losses(manager)
    message = str(caught[0].message)
    assert message.startswith("mvcore plugin 'copycat-losses': loss 'acme_bone_length' is also "
                              "registered by mv-losses 0.1 (mvcore's own)")
    assert "'copycat-losses:acme_bone_length'" in message and "MVCORE_DISABLE" not in message
    assert registry.entry("acme_bone_length").provider == "mv-losses"
    assert registry.entry("copycat-losses:acme_bone_length").provider == "copycat-losses"
    assert registry.by_provider() == {"copycat-losses": ["copycat-losses:acme_bone_length"],
                                      "mv-losses": ["acme_bone_length"]}


def test_a_clash_between_two_other_plugins_asks_the_config_to_choose():
    manager = get_plugin_manager(load_entrypoints=False)
    manager.register(AcmePlugin(), name="acme-losses", version="1.0")
    manager.register(CopycatPlugin(), name="copycat-losses", version="0.3")
    with pytest.warns(RuntimeWarning, match="registered by both acme-losses 1.0 and "
                                            "copycat-losses 0.3"):
        registry = losses(manager)
    with pytest.raises(DuplicateComponentError) as info:
        registry.entry("acme_bone_length", key_path="model.losses_to_use[0]")
    assert str(info.value) == (
        "model.losses_to_use[0]: loss 'acme_bone_length' is registered by both acme-losses 1.0 "
        "and copycat-losses 0.3; write 'acme-losses:acme_bone_length' or "
        "'copycat-losses:acme_bone_length' to choose one (or uninstall one of them)")
    assert registry.get("acme-losses:acme_bone_length").__name__ == "BoneLengthLoss"


def test_a_lazy_target_that_does_not_import_is_found_by_check():
    manager = get_plugin_manager(load_entrypoints=False)
    manager.register(LazyTypoPlugin(), name="typo-losses")
    components = build_components(manager)  # lazy: nothing imported yet, healthy so far
    assert manager.problems == {}
    with pytest.warns(RuntimeWarning, match="its target 'fake_plugins_typo:BoneLengthLoss' "
                                            "does not import: ModuleNotFoundError"):
        components.check_all()
    assert manager.info["typo-losses"].disabled["loss"]["typo_bone"].startswith("its target")
    with pytest.raises(PluginError, match="losses.typo_bone: loss 'typo_bone' from plugin "
                                          "typo-losses is broken"):
        components.losses.get("typo_bone", key_path="losses.typo_bone")


def test_typo_in_hook_name_is_caught_by_check_pending():
    manager = get_plugin_manager(load_entrypoints=False)
    with pytest.warns(RuntimeWarning, match="unknown hook 'mvcore_register_loses'"):
        manager.register(TypoPlugin(), name="typo-plugin")
    assert "mvcore_register_loses" in manager.load_errors["typo-plugin"]
    assert not manager.pm.has_plugin("typo-plugin")


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
    losses(manager)
    assert "[mvcore hook] mvcore_register_losses -> acme-losses" in capsys.readouterr().err
