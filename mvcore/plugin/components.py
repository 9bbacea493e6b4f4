"""The registries of installed components, built once per process from the plugin manager."""

from __future__ import annotations

from dataclasses import dataclass

from mvcore.plugin.manager import PluginManager, get_plugin_manager
from mvcore.plugin.registry import Registry


@dataclass
class Components:
    """Everything the plugins registered: losses, augmenters, backbones."""

    manager: PluginManager
    losses: Registry
    augmenters: Registry
    backbones: Registry

    def versions(self) -> dict[str, str | None]:
        """``{distribution: version}`` of the loaded plugins (saved with every run)."""
        return {name: info.version for name, info in self.manager.info.items() if not info.error}


def build_components(manager: PluginManager) -> Components:
    """Registries of every kind; base classes are named lazily so that listing plugins whose
    targets are lazy strings stays free of heavy imports."""
    return Components(
        manager=manager,
        losses=manager.build_registry("loss", base="mvcore.losses.base:Loss",
                                      name_attr="loss_name"),
        augmenters=manager.build_registry("augmenter", base="mvcore.augment.base:Augmenter"),
        backbones=manager.build_registry("backbone", base="mvcore.models.base:Backbone"),
    )


_DEFAULT: Components | None = None


def load_components(refresh: bool = False) -> Components:
    """Components of the installed plugins (cached; ``refresh`` re-reads the entry points)."""
    global _DEFAULT
    if _DEFAULT is None or refresh:
        _DEFAULT = build_components(get_plugin_manager(load_entrypoints=True))
    return _DEFAULT
