"""Plugin discovery: build a pluggy manager from the ``mvcore`` entry-point group.

Environment switches (read when a manager is built):

``MVCORE_LOAD_PLUGINS``
    unset: load every installed plugin; ``""``: load none; ``"mv-losses,acme"``: only these
    distributions (a name that is not installed is reported as a load error).
``MVCORE_DISABLE_PLUGINS``
    comma-separated distributions to skip.
``MVCORE_STRICT_PLUGINS=1``
    a plugin that fails to import or implements an unknown hook is an error, not a warning.
``MVCORE_TRACE_PLUGINS=1``
    print every hook call and its implementations to stderr.

Each entry point is loaded in its own ``try`` so one broken plugin never stops the others, and
never stops ``mvcore --help`` or ``mvcore plugins`` (the commands you need to fix it).
"""

from __future__ import annotations

import importlib.metadata as importlib_metadata
import os
import sys
import traceback
import warnings
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


def _csv_env(name: str) -> list[str] | None:
    value = os.environ.get(name)
    if value is None:
        return None
    return [part.strip() for part in value.split(",") if part.strip()]


def strict_mode() -> bool:
    return os.environ.get(ENV_STRICT, "").strip().lower() in {"1", "true", "yes", "on"}


@dataclass
class PluginInfo:
    """What ``mvcore plugins`` reports about one plugin."""

    name: str  # plugin name = distribution name for entry-point plugins
    version: str | None = None
    module: str | None = None
    hooks: list[str] = field(default_factory=list)
    registered: dict[str, list[str]] = field(default_factory=dict)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "module": self.module,
            "hooks": self.hooks,
            "registered": self.registered,
            "error": self.error,
        }


class PluginManager:
    """A pluggy manager plus provenance and load errors for every plugin it holds."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        self.info: dict[str, PluginInfo] = {}
        self.trace = os.environ.get(ENV_TRACE, "").strip().lower() in {"1", "true", "yes"}
        if self.trace:
            self._enable_tracing()

    # ------------------------------------------------------------------ loading
    def register(self, plugin: object, name: str, version: str | None = None) -> None:
        """Register a plugin object (module, class instance) under ``name``.

        A plugin whose hooks do not match the specs is rejected with a PluginLoadError that
        names it (in strict mode) or recorded as a load error (otherwise).
        """
        if isinstance(plugin, type):
            raise TypeError(
                f"plugin {name!r} is a class; register an instance (did you forget the '()'?)"
            )
        try:
            self.pm.register(plugin, name=name)
            self._check_pending(name)
        except Exception as exc:  # noqa: BLE001 - recorded, then raised or warned
            if self.pm.is_registered(plugin):
                self.pm.unregister(plugin)
            self._record_error(name, version, f"{type(exc).__name__}: {exc}")
            return
        module = getattr(plugin, "__name__", type(plugin).__module__)
        self.info[name] = PluginInfo(name=name, version=version, module=module)

    def _check_pending(self, name: str) -> None:
        """Raise if plugin ``name`` implements a hook that no spec declares (a typo)."""
        plugin = self.pm.get_plugin(name)
        for hook_name in dir(self.pm.hook):
            caller = getattr(self.pm.hook, hook_name)
            if not isinstance(caller, pluggy.HookCaller) or caller.has_spec():
                continue
            for impl in caller.get_hookimpls():
                if impl.plugin is plugin and not impl.opts.get("optionalhook"):
                    known = ", ".join(sorted(h for h in _hookspec_names()))
                    raise pluggy.PluginValidationError(
                        plugin,
                        f"unknown hook {hook_name!r} in plugin {name!r}; known hooks: {known}",
                    )

    def load_entrypoints(self) -> None:
        """Load the ``mvcore`` entry-point group, honouring the environment switches."""
        only = _csv_env(ENV_LOAD)
        disabled = set(_csv_env(ENV_DISABLE) or [])
        if only == []:
            return
        seen: set[str] = set()
        for ep in importlib_metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = getattr(ep, "dist", None)
            dist_name = dist.metadata["Name"] if dist is not None else ep.name
            version = dist.version if dist is not None else None
            if dist_name in seen:  # same distribution found twice on sys.path
                continue
            seen.add(dist_name)
            if dist_name in disabled or ep.name in disabled:
                continue
            if only is not None and dist_name not in only and ep.name not in only:
                continue
            try:
                plugin = ep.load()
            except Exception as exc:  # noqa: BLE001 - one broken plugin must not stop others
                detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
                self._record_error(dist_name, version, f"import of {ep.value!r} failed: {detail}")
                continue
            self.register(plugin, name=dist_name, version=version)
            if dist_name in self.info:
                self.info[dist_name].module = ep.value
        if only:
            for wanted in only:
                if wanted not in seen:
                    self._record_error(wanted, None, f"not installed (named in {ENV_LOAD})")

    def _record_error(self, name: str, version: str | None, message: str) -> None:
        self.info[name] = PluginInfo(name=name, version=version, error=message)
        text = f"mvcore plugin {name!r} could not be loaded: {message}"
        if strict_mode():
            raise PluginLoadError(text + f" ({ENV_STRICT}=1 makes this fatal)")
        warnings.warn(
            text + f"; it is skipped (set {ENV_DISABLE}={name} to silence this)",
            RuntimeWarning,
            stacklevel=3,
        )

    @property
    def load_errors(self) -> dict[str, str]:
        return {name: info.error for name, info in self.info.items() if info.error}

    # --------------------------------------------------------------- components
    def build_registry(
        self, kind: str, base: type | str | None = None, name_attr: str = "name"
    ) -> Registry:
        """Call the register hook of ``kind`` once per plugin, scoped to that plugin."""
        hook_name = _REGISTER_HOOKS[kind]
        registry = Registry(kind, base=base, name_attr=name_attr)
        registry.load_errors = self.load_errors
        caller = getattr(self.pm.hook, hook_name)
        for impl in reversed(caller.get_hookimpls()):  # registration order
            name = self.pm.get_name(impl.plugin) or repr(impl.plugin)
            info = self.info.get(name)
            scoped = registry.scoped(name, info.version if info else None)
            if self.trace:
                print(f"[mvcore hook] {hook_name} -> {name}", file=sys.stderr)
            impl.function(**{arg: scoped for arg in impl.argnames})
            if info is not None:
                names = [n for n, e in registry._entries.items() if e.provider == name]
                info.registered[kind] = sorted(names)
        return registry

    def report(self) -> list[PluginInfo]:
        """Plugins with the hooks they implement (registries must be built to list names)."""
        for name, info in self.info.items():
            plugin = self.pm.get_plugin(name)
            if plugin is not None:
                info.hooks = sorted(
                    caller.name for caller in self.pm.get_hookcallers(plugin) or []
                )
        return sorted(self.info.values(), key=lambda i: i.name)

    def _enable_tracing(self) -> None:
        def before(hook_name, hook_impls, kwargs):
            names = [impl.plugin_name for impl in hook_impls]
            print(f"[mvcore hook] {hook_name}({', '.join(kwargs)}) -> {names}", file=sys.stderr)

        def after(outcome, hook_name, hook_impls, kwargs):
            return None

        self.pm.add_hookcall_monitoring(before, after)


def _hookspec_names() -> list[str]:
    return [name for name in dir(hookspecs) if name.startswith("mvcore_")]


def get_plugin_manager(load_entrypoints: bool = True) -> PluginManager:
    """A fresh manager; with ``load_entrypoints`` the installed plugins are loaded into it."""
    manager = PluginManager()
    if load_entrypoints:
        manager.load_entrypoints()
    return manager
