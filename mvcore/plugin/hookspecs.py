"""Hook specifications: what a plugin may implement.

Every hook is register-style: the core passes a registry scoped to the calling plugin, and the
plugin adds names to it. The core owns the registry, so it can list, attribute and de-duplicate
everything. Hooks are called with keyword arguments; an implementation may accept a subset of
the arguments, so arguments can be added later without breaking plugins.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

from mvcore.plugin import PROJECT_NAME

if TYPE_CHECKING:
    import argparse

    from mvcore.plugin.registry import ScopedRegistry

hookspec = pluggy.HookspecMarker(PROJECT_NAME)


@hookspec
def mvcore_register_losses(registry: ScopedRegistry) -> None:
    """Add Loss subclasses (``mvcore.Loss``) by class or by lazy ``"module:Class"`` string."""


@hookspec
def mvcore_register_augmenters(registry: ScopedRegistry) -> None:
    """Add Augmenter subclasses (``mvcore.Augmenter``): 2D per-view pipelines or 3D augmenters."""


@hookspec
def mvcore_register_backbones(registry: ScopedRegistry) -> None:
    """Add Backbone subclasses (``mvcore.Backbone``), keyed by ``model.model_type``."""


@hookspec
def mvcore_add_cli_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``mvcore <command>`` sub-commands; set ``func`` with ``parser.set_defaults``."""
