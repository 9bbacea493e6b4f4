"""The plugin surface of mvcore: the one public hook marker and the project name.

Plugin authors import ``hookimpl`` (also re-exported as ``mvcore.hookimpl``) and nothing else
from this package::

    from mvcore import hookimpl

    @hookimpl
    def mvcore_register_losses(registry):
        registry.add("my_pkg.losses:BoneLengthLoss")
"""

import pluggy

PROJECT_NAME = "mvcore"
ENTRY_POINT_GROUP = "mvcore"

hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

__all__ = ["ENTRY_POINT_GROUP", "PROJECT_NAME", "hookimpl"]
