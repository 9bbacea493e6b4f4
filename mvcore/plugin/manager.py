"""Plugin discovery: build a pluggy manager from the ``mvcore`` entry-point group.

Environment switches (read once, into ``PluginSettings``, when a manager is built):

``MVCORE_LOAD_PLUGINS``
    unset: load every installed plugin; ``""``: load none; ``"mv-losses,acme"``: only these
    distributions (a name that is not installed is a problem of that name).
``MVCORE_DISABLE_PLUGINS``
    comma-separated distributions to skip (a name that matches no plugin gets a warning).
``MVCORE_STRICT_PLUGINS=1``
    every plugin problem is an error, not a warning (for CI).
``MVCORE_TRACE_PLUGINS=1``
    print every hook call and its implementations to stderr.

Names are compared as distribution names are (case, ``-``, ``_`` and ``.`` do not matter:
``MV_Losses`` is ``mv-losses``).

Whatever goes wrong inside one plugin (its import, a hook that raises, a hook the specs do not
know, what its hooks register) is recorded against that plugin with one warning naming it;
every other plugin keeps working, and ``mvcore --help`` and ``mvcore plugins`` always work.
"""

from __future__ import annotations

import importlib.metadata as importlib_metadata
import os
import re
import sys
import traceback
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pluggy

from mvcore.errors import PluginLoadError
from mvcore.plugin import ENTRY_POINT_GROUP, PROJECT_NAME, hookspecs
from mvcore.plugin.registry import Registry

ENV_LOAD = "MVCORE_LOAD_PLUGINS"
ENV_DISABLE = "MVCORE_DISABLE_PLUGINS"
ENV_STRICT = "MVCORE_STRICT_PLUGINS"
ENV_TRACE = "MVCORE_TRACE_PLUGINS"

_REGISTER_HOOKS = {
    "loss": "mvcore_register_losses",
    "augmenter": "mvcore_register_augmenters",
    "backbone": "mvcore_register_backbones",
}
_TRUE = {"1", "true", "yes", "on"}


def normalize_name(name: str) -> str:
    """A distribution name in its canonical form (PEP 503): ``MV_Losses`` -> ``mv-losses``."""
    return re.sub(r"[-_.]+", "-", name.strip()).lower()


def _names(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [normalize_name(part) for part in value.split(",") if part.strip()]


@dataclass(frozen=True)
class PluginSettings:
    """The environment switches, parsed once (see the module docstring)."""

    load: tuple[str, ...] | None = None  # None: all
    disable: tuple[str, ...] = ()
    strict: bool = False
    trace: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PluginSettings:
        env = os.environ if environ is None else environ
        load = _names(env.get(ENV_LOAD))
        return cls(
            load=None if load is None else tuple(load),
            disable=tuple(_names(env.get(ENV_DISABLE)) or ()),
            strict=env.get(ENV_STRICT, "").strip().lower() in _TRUE,
            trace=env.get(ENV_TRACE, "").strip().lower() in _TRUE,
        )


def strict_mode() -> bool:
    """Whether ``MVCORE_STRICT_PLUGINS`` is set (read now)."""
    return PluginSettings.from_env().strict


@dataclass
class PluginInfo:
    """What ``mvcore plugins`` reports about one plugin."""

    name: str  # plugin name = distribution name for entry-point plugins
    version: str | None = None
    module: str | None = None
    hooks: list[str] = field(default_factory=list)
    registered: dict[str, list[str]] = field(default_factory=dict)
    disabled: dict[str, dict[str, str]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    loaded: bool = False

    @property
    def error(self) -> str | None:
        """All problems in one string (None when the plugin is healthy)."""
        return "; ".join(self.problems) if self.problems else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "module": self.module,
            "hooks": self.hooks,
            "registered": self.registered,
            "disabled": self.disabled,
            "problems": self.problems,
            "error": self.error,
        }


class PluginManager:
    """A pluggy manager plus provenance and problems for every plugin it holds."""

    def __init__(self, settings: PluginSettings | None = None) -> None:
        self.settings = settings if settings is not None else PluginSettings.from_env()
        self.pm = pluggy.PluginManager(PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        self.info: dict[str, PluginInfo] = {}
        if self.settings.trace:
            self._enable_tracing()

    # ------------------------------------------------------------------ problems
    def problem(self, name: str, message: str) -> None:
        """Record a problem of plugin ``name`` and warn once (strict: ``raise_if_strict``)."""
        info = self.info.setdefault(name, PluginInfo(name=name))
        if message in info.problems:
            return
        info.problems.append(message)
        if not self.settings.strict:
            warnings.warn(f"mvcore plugin {name!r}: {message}", RuntimeWarning, stacklevel=2)

    @property
    def problems(self) -> dict[str, list[str]]:
        return {name: info.problems for name, info in self.info.items() if info.problems}

    @property
    def load_errors(self) -> dict[str, str]:
        return {name: info.error for name, info in self.info.items() if info.error}

    def raise_if_strict(self) -> None:
        """Under ``MVCORE_STRICT_PLUGINS=1``, every recorded problem is one error."""
        if self.settings.strict and self.problems:
            lines = [f"  {name}: {message}" for name, messages in self.problems.items()
                     for message in messages]
            raise PluginLoadError(
                f"plugin problems ({ENV_STRICT}=1 makes them fatal; unset it to run with the "
                "broken parts disabled):\n" + "\n".join(lines))

    # ------------------------------------------------------------------ loading
    def register(self, plugin: object, name: str, version: str | None = None) -> None:
        """Register a plugin object (module, class instance) under ``name``.

        A plugin whose hooks do not match the specs (an unknown hook, an argument the spec
        lacks) is not registered; the problem is recorded against it."""
        if isinstance(plugin, type):
            raise TypeError(
                f"plugin {name!r} is a class; register an instance (did you forget the '()'?)"
            )
        info = self.info.setdefault(name, PluginInfo(name=name))
        info.version = version
        info.module = getattr(plugin, "__name__", type(plugin).__module__)
        try:
            self.pm.register(plugin, name=name)
            self._check_pending(name)
        except Exception as exc:  # noqa: BLE001 - recorded against this plugin only
            if self.pm.is_registered(plugin):
                self.pm.unregister(plugin)
            self.problem(name, f"{type(exc).__name__}: {exc}")
            return
        info.loaded = True

    def _check_pending(self, name: str) -> None:
        """Raise if plugin ``name`` implements a hook that no spec declares (a typo)."""
        plugin = self.pm.get_plugin(name)
        for hook_name in dir(self.pm.hook):
            caller = getattr(self.pm.hook, hook_name)
            if not isinstance(caller, pluggy.HookCaller) or caller.has_spec():
                continue
            for impl in caller.get_hookimpls():
                if impl.plugin is plugin and not impl.opts.get("optionalhook"):
                    known = ", ".join(sorted(_hookspec_names()))
                    raise pluggy.PluginValidationError(
                        plugin,
                        f"unknown hook {hook_name!r} in plugin {name!r}; known hooks: {known}",
                    )

    def load_entrypoints(self) -> None:
        """Load the ``mvcore`` entry-point group, honouring the settings."""
        only = self.settings.load
        disabled = set(self.settings.disable)
        if only == ():
            return
        seen: set[str] = set()
        for ep in importlib_metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = getattr(ep, "dist", None)
            dist_name = dist.metadata["Name"] if dist is not None else ep.name
            version = dist.version if dist is not None else None
            key = normalize_name(dist_name)
            if key in seen:  # same distribution found twice on sys.path
                continue
            seen.add(key)
            if key in disabled or normalize_name(ep.name) in disabled:
                continue
            if only is not None and key not in only and normalize_name(ep.name) not in only:
                continue
            try:
                plugin = ep.load()
            except Exception as exc:  # noqa: BLE001 - one broken plugin must not stop others
                detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
                self.info.setdefault(dist_name, PluginInfo(name=dist_name, version=version))
                self.info[dist_name].module = ep.value
                self.problem(dist_name, f"import of {ep.value!r} failed: {detail}")
                continue
            self.register(plugin, name=dist_name, version=version)
            self.info[dist_name].module = ep.value
        installed = ", ".join(sorted(seen)) or "none"
        for wanted in only or ():
            if wanted not in seen:
                self.problem(wanted, f"not installed (named in {ENV_LOAD}; installed: "
                                     f"{installed})")
        for name in sorted(disabled - seen):
            warnings.warn(
                f"{ENV_DISABLE} names {name!r}, which matches no installed mvcore plugin "
                f"(installed: {installed})", RuntimeWarning, stacklevel=2)

    # --------------------------------------------------------------- components
    def build_registry(
        self, kind: str, base: type | str | None = None, name_attr: str = "name"
    ) -> Registry:
        """Call the register hook of ``kind`` once per plugin, scoped to that plugin. A hook
        that raises disables what it registered; the other plugins are unaffected."""
        hook_name = _REGISTER_HOOKS[kind]
        registry = Registry(kind, base=base, name_attr=name_attr, on_problem=self.problem,
                            plugin_problems=lambda: self.problems)
        caller = getattr(self.pm.hook, hook_name)
        for impl in caller.get_hookimpls():  # registration order
            name = self.pm.get_name(impl.plugin) or repr(impl.plugin)
            info = self.info.get(name)
            scoped = registry.scoped(name, info.version if info else None)
            if self.settings.trace:
                print(f"[mvcore hook] {hook_name} -> {name}", file=sys.stderr)
            before = {key for key in registry._qualified if key[0] == name}
            try:
                impl.function(**{arg: scoped for arg in impl.argnames})
            except Exception as exc:  # noqa: BLE001 - isolated: this plugin's names only
                reason = f"its {hook_name} hook raised {type(exc).__name__}: {exc}"
                added = [n for (p, n) in registry._qualified if p == name
                         and (p, n) not in before]
                registry.disable_provider(name, reason, names=added)
                self.problem(name, reason)
        self.record_names(registry)
        return registry

    def record_names(self, registry: Registry) -> None:
        """Note in each plugin's info which names of ``registry`` it provides, usable or not."""
        kind = registry.kind
        for info in self.info.values():
            info.registered.pop(kind, None)
            info.disabled.pop(kind, None)
        for entry in registry.entries():
            info = self.info.setdefault(entry.provider, PluginInfo(name=entry.provider))
            if entry.disabled:
                info.disabled.setdefault(kind, {})[entry.name] = entry.disabled
            else:
                info.registered.setdefault(kind, []).append(entry.name)

    def report(self) -> list[PluginInfo]:
        """Plugins with the hooks they implement (registries must be built to list names)."""
        for name, info in self.info.items():
            plugin = self.pm.get_plugin(name)
            if plugin is not None:
                info.hooks = sorted(
                    caller.name for caller in self.pm.get_hookcallers(plugin) or []
                )
        return sorted(self.info.values(), key=lambda i: i.name)

    def add_cli_commands(self, subparsers: Any) -> None:
        """Let each plugin add ``mvcore`` sub-commands; a hook that raises is a problem of that
        plugin (its commands may be missing), never a broken CLI."""
        for impl in self.pm.hook.mvcore_add_cli_commands.get_hookimpls():
            name = self.pm.get_name(impl.plugin) or repr(impl.plugin)
            try:
                impl.function(**{arg: subparsers for arg in impl.argnames})
            except Exception as exc:  # noqa: BLE001 - the CLI must stay usable
                self.problem(name, f"its mvcore_add_cli_commands hook raised "
                                   f"{type(exc).__name__}: {exc}")

    def _enable_tracing(self) -> None:
        def before(hook_name, hook_impls, kwargs):
            names = [impl.plugin_name for impl in hook_impls]
            print(f"[mvcore hook] {hook_name}({', '.join(kwargs)}) -> {names}", file=sys.stderr)

        def after(outcome, hook_name, hook_impls, kwargs):
            return None

        self.pm.add_hookcall_monitoring(before, after)


def _hookspec_names() -> list[str]:
    return [name for name in dir(hookspecs) if name.startswith("mvcore_")]


def get_plugin_manager(
    load_entrypoints: bool = True, settings: PluginSettings | None = None
) -> PluginManager:
    """A fresh manager; with ``load_entrypoints`` the installed plugins are loaded into it."""
    manager = PluginManager(settings)
    if load_entrypoints:
        manager.load_entrypoints()
    return manager
