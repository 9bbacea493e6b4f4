"""Exceptions that carry enough context for a user to act on them.

Every ``MvcoreError`` is a mistake the user (or a plugin's author) can fix: the CLI prints its
message as one line (or a few, one per problem) and exits 2, never a traceback.
"""

from __future__ import annotations


class MvcoreError(Exception):
    """Base class of the errors mvcore raises on purpose (the CLI prints them, no traceback)."""


class ConfigError(MvcoreError, ValueError):
    """A config value is missing, malformed or not allowed; the message names the key path."""


class DataError(MvcoreError, ValueError):
    """Project files (CSV, images, calibration) are missing or inconsistent; names file and row."""


class BusyError(MvcoreError, RuntimeError):
    """A folder mvcore would write into is in use by another mvcore command (its lock is
    held); the message names the holder."""


class UnknownComponentError(MvcoreError, LookupError):
    """A config names a loss/augmenter/backbone that no installed plugin registered."""


class DuplicateComponentError(MvcoreError, ValueError):
    """Two plugins registered the same name; the message names both providers."""


class PluginLoadError(MvcoreError, RuntimeError):
    """A plugin failed to load or register (fatal only under ``MVCORE_STRICT_PLUGINS=1``)."""


class PluginError(MvcoreError, RuntimeError):
    """A component a config uses is broken in its plugin (disabled name, a lazy target that does
    not import, a class of the wrong kind); the message names the plugin, the name, the reason
    and what to do."""


class MissingLossInputError(MvcoreError, ValueError):
    """A loss needs an input (e.g. ``keypoints_pred_3d``) that the model does not produce."""


class ParamError(MvcoreError, ValueError):
    """Raised by a component's ``validate_context``: parameter ``field`` does not fit the
    project. The core turns ``field`` into the config key path the user wrote
    (``losses.pca_multiview.mirrored_column_matches`` or the Lightning Pose key it came from)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
