"""Name registries for plugin components, with provenance.

A registry maps a component name (``heatmap_mse``, ``imgaug_3d``,
``heatmap_multiview_transformer``) to a class, or to a lazy ``"module:Class"`` string that is
imported only when the component is built. Each entry remembers which distribution registered
it, so duplicate names and unknown names produce messages that say where things come from.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from mvcore.errors import DuplicateComponentError, UnknownComponentError

#: the distribution of mvcore's own plugins per kind, for install hints
_OUR_PROVIDERS = {"loss": "mv-losses", "augmenter": "mv-aug3d", "backbone": "mv-vit"}


@dataclass
class RegistryEntry:
    """One registered component and where it came from."""

    name: str
    target: Any  # a class, or "package.module:ClassName"
    provider: str  # distribution name, e.g. "mv-losses"
    version: str | None = None
    _resolved: Any = field(default=None, repr=False)

    def resolve(self) -> Any:
        """Return the class, importing a lazy ``module:Class`` target on first use."""
        if self._resolved is None:
            if isinstance(self.target, str):
                module_name, _, attr = self.target.partition(":")
                if not attr:
                    raise ValueError(
                        f"{self.provider} registered {self.name!r} as {self.target!r}; "
                        "a lazy target must look like 'package.module:ClassName'"
                    )
                module = importlib.import_module(module_name)
                self._resolved = getattr(module, attr)
            else:
                self._resolved = self.target
        return self._resolved

    @property
    def provider_label(self) -> str:
        return f"{self.provider} {self.version}" if self.version else self.provider


class Registry:
    """Names of one kind of component (``kind`` is "loss", "augmenter" or "backbone")."""

    def __init__(self, kind: str, base: type | str | None = None, name_attr: str = "name"
                 ) -> None:
        self.kind = kind
        # a "module:Class" string is imported only when needed, so listing plugins that
        # register lazy targets never imports torch
        self._base = base
        self.name_attr = name_attr
        self._entries: dict[str, RegistryEntry] = {}
        # plugin load failures, set by the plugin manager, shown beside unknown-name errors
        self.load_errors: dict[str, str] = {}

    @property
    def base(self) -> type | None:
        """The class every registered component must subclass (imported on first use)."""
        if isinstance(self._base, str):
            module_name, _, attr = self._base.partition(":")
            self._base = getattr(importlib.import_module(module_name), attr)
        return self._base

    def scoped(self, provider: str, version: str | None = None) -> ScopedRegistry:
        """A view that records ``provider`` as the source of everything added through it."""
        return ScopedRegistry(self, provider, version)

    def _add(self, target: Any, name: str | None, provider: str, version: str | None) -> None:
        if name is None:
            if isinstance(target, str):
                raise ValueError(
                    f"{provider}: registering the lazy {self.kind} {target!r} needs name=..."
                )
            name = getattr(target, self.name_attr, None)
            if not isinstance(name, str) or not name:
                raise ValueError(
                    f"{provider}: {target!r} has no {self.name_attr!r} attribute; "
                    f"pass name=... to registry.add"
                )
        if not isinstance(target, str) and self.base is not None:
            if not (isinstance(target, type) and issubclass(target, self.base)):
                raise TypeError(
                    f"{provider} registered {self.kind} {name!r} as {target!r}, which is not a "
                    f"subclass of {self.base.__module__}.{self.base.__qualname__}"
                )
        if name in self._entries:
            existing = self._entries[name]
            raise DuplicateComponentError(
                f"{self.kind} {name!r} is registered by both {existing.provider_label} and "
                f"{provider}{' ' + version if version else ''}; uninstall one of them or block "
                f"one with MVCORE_DISABLE_PLUGINS={provider}"
            )
        self._entries[name] = RegistryEntry(name, target, provider, version)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entry(self, name: str, key_path: str | None = None) -> RegistryEntry:
        """The entry for ``name``, or an error with a did-you-mean and the installed names."""
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownComponentError(self.unknown_message(name, key_path)) from None

    def get(self, name: str, key_path: str | None = None) -> Any:
        """The class registered as ``name`` (lazy targets are imported now and type-checked)."""
        entry = self.entry(name, key_path)
        cls = entry.resolve()
        if self.base is not None and not (isinstance(cls, type) and issubclass(cls, self.base)):
            raise TypeError(
                f"{entry.provider_label} registered {self.kind} {name!r} as {entry.target!r}, "
                f"which is not a subclass of {self.base.__qualname__}"
            )
        return cls

    def by_provider(self) -> dict[str, list[str]]:
        grouped: dict[str, list[str]] = {}
        for name, entry in sorted(self._entries.items()):
            grouped.setdefault(entry.provider, []).append(name)
        return grouped

    def unknown_message(self, name: str, key_path: str | None = None) -> str:
        where = f"{key_path}: " if key_path else ""
        lines = [f"{where}unknown {self.kind} {name!r}."]
        close = difflib.get_close_matches(name, list(self._entries), n=3, cutoff=0.5)
        if close:
            lines.append(f"Did you mean {' or '.join(repr(c) for c in close)}?")
        grouped = self.by_provider()
        if grouped:
            lines.append(f"Installed {self.kind} names:")
            for provider, names in grouped.items():
                lines.append(f"  {provider}: {', '.join(names)}")
        else:
            provider = _OUR_PROVIDERS.get(self.kind)
            hint = f" (mvcore's own: pip install {provider})" if provider else ""
            lines.append(f"No {self.kind} is installed. Install a plugin that provides one{hint}.")
        if self.load_errors:
            lines.append("These plugins failed to load and may be the cause:")
            for provider, error in self.load_errors.items():
                lines.append(f"  {provider}: {error}")
        return "\n".join(lines)


class ScopedRegistry:
    """What a plugin's hook receives: ``add`` records the plugin as the provider."""

    def __init__(self, registry: Registry, provider: str, version: str | None) -> None:
        self._registry = registry
        self.provider = provider
        self.version = version

    @property
    def kind(self) -> str:
        return self._registry.kind

    def add(self, target: Any, name: str | None = None) -> None:
        """Register a class, or a lazy ``"module:Class"`` string together with ``name``."""
        self._registry._add(target, name, self.provider, self.version)
