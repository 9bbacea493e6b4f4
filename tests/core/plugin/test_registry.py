"""Registries: provenance, lazy targets, did-you-mean, type checks."""

import pytest
from fake_plugins import BoneLengthLoss, LazyPlugin, NotALossPlugin

from mvcore.errors import PluginError, UnknownComponentError
from mvcore.losses.base import Loss
from mvcore.plugin.manager import get_plugin_manager
from mvcore.plugin.registry import Registry


def test_unknown_name_suggests_the_nearest_and_lists_installed_by_provider():
    registry = Registry("loss", base=Loss, name_attr="loss_name")
    registry.scoped("mv-losses", "0.1.0").add(BoneLengthLoss)
    registry.scoped("mv-losses", "0.1.0").add(BoneLengthLoss, name="heatmap_mse")
    with pytest.raises(UnknownComponentError) as info:
        registry.get("heatmap_mes", key_path="losses.heatmap_mes")
    message = str(info.value)
    assert message.startswith("losses.heatmap_mes: unknown loss 'heatmap_mes'")
    assert "Did you mean 'heatmap_mse'?" in message
    assert "mv-losses: acme_bone_length, heatmap_mse" in message


def test_empty_registry_says_what_to_install():
    registry = Registry("loss")
    with pytest.raises(UnknownComponentError, match="pip install mv-losses"):
        registry.get("heatmap_mse")


@pytest.mark.parametrize(("name", "dist"), [("heatmap", "mv-cnn"),
                                            ("heatmap_multiview_transformer", "mv-vit")])
def test_a_name_of_our_own_plugins_names_the_distribution_to_install(name, dist):
    registry = Registry("backbone")
    registry.scoped("acme-backbones", "1.0").add(BoneLengthLoss, name="acme_net")
    with pytest.raises(UnknownComponentError) as info:
        registry.get(name, key_path="model.model_type")
    message = str(info.value)
    assert len(message.splitlines()) == 1
    assert message.startswith(f"model.model_type: backbone {name!r} (")
    assert f"comes with mvcore's plugin {dist}, which is not installed" in message
    assert f"pip install {dist} " in message
    assert f"pip install -e plugins/{dist.replace('-', '_')}" in message


def test_lazy_targets_import_on_first_use():
    manager = get_plugin_manager(load_entrypoints=False)
    manager.register(LazyPlugin(), name="lazy")
    registry = manager.build_registry("loss", base=Loss, name_attr="loss_name")
    entry = registry.entry("lazy_bone")
    assert isinstance(entry.target, str) and entry._resolved is None
    assert registry.get("lazy_bone").__name__ == "BoneLengthLoss"


def test_wrong_type_is_disabled_at_registration():
    manager = get_plugin_manager(load_entrypoints=False)
    manager.register(NotALossPlugin(), name="bad")
    with pytest.warns(RuntimeWarning, match="not a subclass of mvcore.losses.base.Loss"):
        registry = manager.build_registry("loss", base=Loss, name_attr="loss_name")
    with pytest.raises(PluginError, match="not a subclass of mvcore.losses.base.Loss"):
        registry.get("not_a_loss")


def test_bad_registrations_are_problems_of_the_plugin():
    problems = []
    registry = Registry("loss", base=Loss, on_problem=lambda p, m: problems.append((p, m)))
    registry.scoped("x").add("pkg.mod:Cls")  # a lazy target needs a name
    registry.scoped("x").add("pkg.mod", name="no_class")  # not module:Class
    registry.scoped("x").add(BoneLengthLoss, name="has:colon")
    assert [m for _, m in problems] == [
        "loss 'pkg.mod:Cls' needs name=...; it is skipped",
        "loss 'no_class' is disabled: its target 'pkg.mod' is not of the form "
        "'package.module:ClassName'",
        "loss 'has:colon' is not a valid name (letters, digits, '_', '-', '.'; no ':'); it is "
        "skipped",
    ]
    assert registry.names() == []


def test_listing_lazy_plugins_does_not_import_torch():
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from mvcore import hookimpl\n"
        "from mvcore.plugin.components import build_components\n"
        "from mvcore.plugin.manager import get_plugin_manager\n"
        "class Lazy:\n"
        "    @hookimpl\n"
        "    def mvcore_register_losses(self, registry):\n"
        "        registry.add('somewhere.heavy:Loss', name='lazy_loss')\n"
        "m = get_plugin_manager(load_entrypoints=False)\n"
        "m.register(Lazy(), name='lazy')\n"
        "c = build_components(m)\n"
        "assert c.losses.names() == ['lazy_loss']\n"
        "print('torch' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "False"
