"""Name registries for plugin components, with provenance and isolation.

A registry maps a component name (``heatmap_mse``, ``imgaug_3d``,
``heatmap_multiview_transformer``) to a class, or to a lazy ``"module:Class"`` string that is
imported only when the component is built. Each entry remembers which distribution registered
it, so every message says where things come from.

Nothing a plugin registers can break another plugin or a config that does not use it:

- a class of the wrong kind, a lazy target that does not import, or a name the plugin's hook
  registered before it raised becomes a *disabled* entry: a config that names it gets a
  ``PluginError`` (plugin, name, reason, what to do); every other name keeps working;
- two plugins registering one name: mvcore's own plugins keep the bare name and the other
  plugin's component is reachable as ``"<distribution>:<name>"``; between two other plugins the
  bare name is ambiguous (a config must write the qualified name). Messages name both.

Problems are reported through ``on_problem(provider, message)`` (the plugin manager warns, or
fails under ``MVCORE_STRICT_PLUGINS=1``).
"""

from __future__ import annotations

import difflib
import importlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from mvcore.errors import DuplicateComponentError, PluginError, UnknownComponentError

#: the distribution of mvcore's own plugins per kind, for install hints
_OUR_PROVIDERS = {"loss": "mv-losses", "augmenter": "mv-aug3d", "backbone": "mv-vit"}
#: names that mvcore's own plugins provide beyond those of ``_OUR_PROVIDERS`` (a config that
#: names one while its plugin is missing is told which distribution to install):
#: ``(kind, name) -> (distribution, its folder in the mvcore repository, what it is)``
_OUR_NAMES = {
    ("backbone", "heatmap"): ("mv-cnn", "plugins/mv_cnn",
                              "Lightning Pose's per-view CNN model"),
    ("backbone", "heatmap_multiview_transformer"): ("mv-vit", "plugins/mv_vit",
                                                    "the multi-view transformer"),
}
#: mvcore's own plugins: on a name clash they keep the bare name (others depend on it)
FIRST_PARTY = frozenset([*_OUR_PROVIDERS.values(), *(d for d, _, _ in _OUR_NAMES.values())])
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")


@dataclass
class RegistryEntry:
    """One registered component and where it came from.

    ``disabled``: why the component cannot be used (None when it is fine)."""

    name: str
    target: Any  # a class, or "package.module:ClassName"
    provider: str  # distribution name, e.g. "mv-losses"
    version: str | None = None
    disabled: str | None = None
    _resolved: Any = field(default=None, repr=False)

    @property
    def provider_label(self) -> str:
        return f"{self.provider} {self.version}" if self.version else self.provider

    @property
    def qualified_name(self) -> str:
        return f"{self.provider}:{self.name}"



class Registry:
    """Names of one kind of component (``kind`` is "loss", "augmenter" or "backbone")."""

    def __init__(
        self,
        kind: str,
        base: type | str | None = None,
        name_attr: str = "name",
        on_problem: Callable[[str, str], None] | None = None,
        plugin_problems: Callable[[], dict[str, list[str]]] | None = None,
    ) -> None:
        self.kind = kind
        # a "module:Class" string is imported only when needed, so listing plugins that
        # register lazy targets never imports torch
        self._base = base
        self.name_attr = name_attr
        self.on_problem = on_problem
        #: bare name -> the entry that owns it (None: two plugins claim it, write it qualified)
        self._entries: dict[str, RegistryEntry | None] = {}
        #: (provider, name) -> entry, for every registration
        self._qualified: dict[tuple[str, str], RegistryEntry] = {}
        self._plugin_problems = plugin_problems

    @property
    def plugin_problems(self) -> dict[str, list[str]]:
        """Problems of plugins (failed imports, hooks that raised) by provider, shown beside
        unknown-name errors: often the real cause."""
        return self._plugin_problems() if self._plugin_problems is not None else {}

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

    # ---------------------------------------------------------------- registering
    def _problem(self, provider: str, message: str) -> None:
        if self.on_problem is not None:
            self.on_problem(provider, message)

    def _add(self, target: Any, name: str | None, provider: str, version: str | None) -> None:
        """Record one registration; problems disable it (or the name) and are reported."""
        if name is None and not isinstance(target, str):
            name = getattr(target, self.name_attr, None)
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            how = ("needs name=..." if isinstance(target, str) else
                   f"has no usable {self.name_attr!r} attribute; pass name=...")
            if isinstance(name, str):
                how = "is not a valid name (letters, digits, '_', '-', '.'; no ':')"
            self._problem(provider, f"{self.kind} {name or target!r} {how}; it is skipped")
            return
        entry = RegistryEntry(name, target, provider, version)
        if isinstance(target, str):
            if ":" not in target or not all(target.partition(":")[::2]):
                entry.disabled = (f"its target {target!r} is not of the form "
                                  "'package.module:ClassName'")
        else:
            entry.disabled = self._wrong_kind(target)
        if entry.disabled:
            self._problem(provider, f"{self.kind} {name!r} is disabled: {entry.disabled}")
        previous = self._qualified.get((provider, name))
        if previous is not None:
            self._problem(provider, f"{self.kind} {name!r} is registered twice by the same "
                                    "plugin; the second registration is ignored")
            return
        self._qualified[(provider, name)] = entry
        self._claim(entry)

    def _wrong_kind(self, cls: Any) -> str | None:
        base = self.base
        if base is None or (isinstance(cls, type) and issubclass(cls, base)):
            return None
        return (f"{cls!r} is not a subclass of {base.__module__}.{base.__qualname__}")

    def _claim(self, entry: RegistryEntry) -> None:
        """Give ``entry`` the bare name, or settle a clash (see the module docstring)."""
        name = entry.name
        if name not in self._entries:
            self._entries[name] = entry
            return
        holder = self._entries[name]
        others = [e for (p, n), e in self._qualified.items() if n == name and e is not entry]
        ours_first = holder is not None and holder.provider in FIRST_PARTY
        if holder is not None and ours_first != (entry.provider in FIRST_PARTY):
            ours, theirs = (holder, entry) if ours_first else (entry, holder)
            self._entries[name] = ours
            self._problem(theirs.provider, (
                f"{self.kind} {name!r} is also registered by {ours.provider_label} (mvcore's "
                f"own); {theirs.provider}'s is reachable only as {theirs.qualified_name!r} in "
                f"configs. Its author should rename it (vendor-prefixed names avoid clashes)"))
            return
        self._entries[name] = None
        labels = " and ".join(e.provider_label for e in [*others, entry])
        choices = " or ".join(repr(e.qualified_name) for e in [*others, entry])
        message = (f"{self.kind} {name!r} is registered by both {labels}; configs must choose "
                   f"with {choices}")
        for provider in {e.provider for e in [*others, entry]}:
            self._problem(provider, message)

    def disable_provider(self, provider: str, reason: str, names: list[str] | None = None) -> None:
        """Disable the names ``provider`` registered (all, or ``names``) with ``reason``."""
        for (p, n), entry in self._qualified.items():
            if p == provider and (names is None or n in names) and not entry.disabled:
                entry.disabled = reason

    # ---------------------------------------------------------------- looking up
    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        try:
            entry = self._lookup(name)
        except MvcoreLookup:
            return False
        return entry is not None and not entry.disabled

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def names(self) -> list[str]:
        """Bare names that can be used as they are."""
        return sorted(n for n, e in self._entries.items() if e is not None and not e.disabled)

    def entries(self) -> list[RegistryEntry]:
        """Every registration, usable or not, by provider then name."""
        return [self._qualified[key] for key in sorted(self._qualified)]

    def _lookup(self, name: str) -> RegistryEntry | None:
        provider, sep, bare = name.rpartition(":")
        if sep:
            entry = self._qualified.get((provider, bare))
            if entry is None:
                raise MvcoreLookup
            return entry
        if name not in self._entries:
            raise MvcoreLookup
        return self._entries[name]

    def entry(self, name: str, key_path: str | None = None) -> RegistryEntry:
        """The entry for ``name`` (or ``"distribution:name"``), or a one-line error: unknown
        (with a did-you-mean and the installed names), ambiguous, or disabled."""
        where = f"{key_path}: " if key_path else ""
        try:
            entry = self._lookup(name)
        except MvcoreLookup:
            raise UnknownComponentError(self.unknown_message(name, key_path)) from None
        if entry is None:
            claimants = [e for (p, n), e in self._qualified.items() if n == name]
            raise DuplicateComponentError(
                f"{where}{self.kind} {name!r} is registered by both "
                f"{' and '.join(e.provider_label for e in claimants)}; write "
                f"{' or '.join(repr(e.qualified_name) for e in claimants)} to choose one "
                "(or uninstall one of them)"
            )
        if entry.disabled:
            raise PluginError(self.disabled_message(entry, key_path))
        return entry

    def disabled_message(self, entry: RegistryEntry, key_path: str | None = None) -> str:
        where = f"{key_path}: " if key_path else ""
        advice = ("reinstall it; if that does not help, report it to its author"
                  if entry.provider in FIRST_PARTY else
                  f"update or reinstall {entry.provider}, or report it to its author")
        return (f"{where}{self.kind} {entry.name!r} from plugin {entry.provider_label} is "
                f"broken: {entry.disabled}. To use it, {advice}")

    def get(self, name: str, key_path: str | None = None) -> Any:
        """The class registered as ``name``; a lazy target is imported now. A target that does
        not import or is of the wrong kind disables the entry and raises ``PluginError``."""
        entry = self.entry(name, key_path)
        if entry._resolved is None:
            problem = self._resolve(entry)
            if problem:
                entry.disabled = problem
                self._problem(entry.provider, f"{self.kind} {entry.name!r} is disabled: {problem}")
                raise PluginError(self.disabled_message(entry, key_path))
        return entry._resolved

    def _resolve(self, entry: RegistryEntry) -> str | None:
        """Import a lazy target; returns the reason it is unusable, or None."""
        if not isinstance(entry.target, str):
            entry._resolved = entry.target
            return None
        module_name, _, attr = entry.target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:  # noqa: BLE001 - any import failure disables this one entry
            return f"its target {entry.target!r} does not import: {type(exc).__name__}: {exc}"
        cls = getattr(module, attr, None)
        if cls is None:
            return f"its target {entry.target!r} names {attr!r}, which {module_name} lacks"
        wrong = self._wrong_kind(cls)
        if wrong:
            return f"its target {entry.target!r} is of the wrong kind: {wrong}"
        entry._resolved = cls
        return None

    def check_all(self) -> list[RegistryEntry]:
        """Resolve every lazy target now (``mvcore plugins --check``, strict mode); returns the
        entries that are unusable (each problem is reported once)."""
        for entry in self.entries():
            if entry.disabled or entry._resolved is not None:
                continue
            problem = self._resolve(entry)
            if problem:
                entry.disabled = problem
                self._problem(entry.provider, f"{self.kind} {entry.name!r} is disabled: {problem}")
        return [e for e in self.entries() if e.disabled]

    def by_provider(self) -> dict[str, list[str]]:
        """Usable names per provider (qualified where the bare name is not theirs)."""
        grouped: dict[str, list[str]] = {}
        for entry in self.entries():
            if entry.disabled:
                continue
            owner = self._entries.get(entry.name)
            shown = entry.name if owner is entry else entry.qualified_name
            grouped.setdefault(entry.provider, []).append(shown)
        return grouped

    def unknown_message(self, name: str, key_path: str | None = None) -> str:
        where = f"{key_path}: " if key_path else ""
        ours = _OUR_NAMES.get((self.kind, name))
        if ours is not None:
            dist, folder, what = ours
            problems = self.plugin_problems.get(dist)
            status = (f"which did not load ({problems[0]})" if problems else
                      "which is not installed (or is disabled by MVCORE_DISABLE_PLUGINS / "
                      "MVCORE_LOAD_PLUGINS)")
            return (f"{where}{self.kind} {name!r} ({what}) comes with mvcore's plugin {dist}, "
                    f"{status}: pip install {dist} (in the mvcore repository: "
                    f"pip install -e {folder})")
        head = f"{where}unknown {self.kind} {name!r}."
        lines = []
        close = difflib.get_close_matches(name.rpartition(":")[2], self.names(), n=3, cutoff=0.5)
        if close:
            head += f" Did you mean {' or '.join(repr(c) for c in close)}?"
        grouped = self.by_provider()
        if grouped:
            lines.append(f"Installed {self.kind} names:")
            for provider, names in grouped.items():
                lines.append(f"  {provider}: {', '.join(names)}")
        else:
            provider = _OUR_PROVIDERS.get(self.kind)
            hint = f" (mvcore's own: pip install {provider})" if provider else ""
            lines.append(f"No {self.kind} is installed. Install a plugin that provides one{hint}.")
        if self.plugin_problems:
            lines.append("These plugins have problems that may be the cause:")
            for provider, problems in self.plugin_problems.items():
                for problem in problems:
                    lines.append(f"  {provider}: {problem}")
        return "\n".join([head, *lines])


class MvcoreLookup(LookupError):
    """Internal: a name is not registered."""


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
