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

    @property
    def registries(self) -> tuple[Registry, Registry, Registry]:
        return (self.losses, self.augmenters, self.backbones)

    def versions(self) -> dict[str, str | None]:
        """``{distribution: version}`` of the loaded plugins (saved with every run)."""
        return {name: info.version for name, info in self.manager.info.items() if info.loaded}

    def check_all(self) -> None:
        """Import every lazy target now, so a broken one is reported (``plugins --check``)."""
        for registry in self.registries:
            registry.check_all()
            self.manager.record_names(registry)


def build_components(manager: PluginManager, check: bool | None = None) -> Components:
    """Registries of every kind; base classes are named lazily so that listing plugins whose
    targets are lazy strings stays free of heavy imports. ``check`` (default: strict mode)
    imports every lazy target; under ``MVCORE_STRICT_PLUGINS=1`` any problem is then an
    error."""
    components = Components(
        manager=manager,
        losses=manager.build_registry("loss", base="mvcore.losses.base:Loss",
                                      name_attr="loss_name"),
        augmenters=manager.build_registry("augmenter", base="mvcore.augment.base:Augmenter"),
        backbones=manager.build_registry("backbone", base="mvcore.models.base:Backbone"),
    )
    if manager.settings.strict if check is None else check:
        components.check_all()
    manager.raise_if_strict()
    return components


_DEFAULT: Components | None = None


def load_components(refresh: bool = False) -> Components:
    """Components of the installed plugins (cached; ``refresh`` re-reads the entry points)."""
    global _DEFAULT
    if _DEFAULT is None or refresh:
        manager = get_plugin_manager(load_entrypoints=True)
        _DEFAULT = build_components(manager)
    return _DEFAULT
