"""Exceptions that carry enough context for a user to act on them."""

from __future__ import annotations


class MvcoreError(Exception):
    """Base class of the errors mvcore raises on purpose (the CLI prints them, no traceback)."""


class ConfigError(MvcoreError, ValueError):
    """A config value is missing, malformed or not allowed; the message names the key path."""


class DataError(MvcoreError, ValueError):
    """Project files (CSV, images, calibration) are missing or inconsistent; names file and row."""


class UnknownComponentError(MvcoreError, LookupError):
    """A config names a loss/augmenter/backbone that no installed plugin registered."""


class DuplicateComponentError(MvcoreError, ValueError):
    """Two plugins registered the same name; the message names both providers."""


class PluginLoadError(MvcoreError, RuntimeError):
    """A plugin's entry point failed to import (fatal only under MVCORE_STRICT_PLUGINS=1)."""


class MissingLossInputError(MvcoreError, ValueError):
    """A loss needs an input (e.g. ``keypoints_pred_3d``) that the model does not produce."""
