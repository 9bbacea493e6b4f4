"""mvcore: multi-view pose estimation with a small plugin core.

The stable public surface for plugin authors is this module: ``hookimpl``, ``Loss``,
``LossParams``, ``LossContext``, ``LossFactory``, ``Augmenter``, ``AugmenterParams``,
``Backbone`` and ``BackboneParams``. Heavy modules (torch) load on first attribute access,
so ``import mvcore`` stays cheap for the CLI.
"""

from __future__ import annotations

import importlib
from typing import Any

from mvcore.plugin import hookimpl

__version__ = "0.1.0"

_LAZY = {
    "Loss": "mvcore.losses.base",
    "LossParams": "mvcore.losses.base",
    "LossContext": "mvcore.losses.base",
    "LossFactory": "mvcore.losses.factory",
    "Augmenter": "mvcore.augment.base",
    "AugmenterParams": "mvcore.augment.base",
    "Backbone": "mvcore.models.base",
    "BackboneParams": "mvcore.models.base",
}

__all__ = ["__version__", "hookimpl", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mvcore' has no attribute {name!r}")
