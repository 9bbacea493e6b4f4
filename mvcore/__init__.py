"""mvcore: multi-view pose estimation with a small plugin core.

The stable public surface for plugin authors is this module: ``hookimpl``; the component base
classes ``Loss``, ``Augmenter``, ``Backbone`` and their ``LossParams``, ``AugmenterParams``,
``BackboneParams``; ``Context`` (what every component is built with); ``ParamError`` and
``ConfigError``; ``LossFactory``; the loss-recipe types ``LogList`` and ``Stage``;
``CameraTensors``; and for backbones' local weights files ``read_weights_file`` and
``strip_common_prefix``. The documented public submodules are ``mvcore.contracts`` (what crosses a
boundary: samples, batches, loss inputs), ``mvcore.geometry``, ``mvcore.data.heatmaps``,
``mvcore.data.bbox`` and ``mvcore.testing``. Heavy modules (torch) load on first attribute
access, so ``import mvcore`` stays cheap for the CLI.
"""

from __future__ import annotations

import importlib
from typing import Any

from mvcore.errors import ConfigError, ParamError
from mvcore.plugin import hookimpl

__version__ = "0.1.0"

_LAZY = {
    "Loss": "mvcore.losses.base",
    "LossParams": "mvcore.losses.base",
    "LogList": "mvcore.losses.base",
    "Stage": "mvcore.losses.base",
    "LossFactory": "mvcore.losses.factory",
    "Augmenter": "mvcore.augment.base",
    "AugmenterParams": "mvcore.augment.base",
    "Backbone": "mvcore.models.base",
    "BackboneParams": "mvcore.models.base",
    "Context": "mvcore.context",
    "CameraTensors": "mvcore.geometry",
    "read_weights_file": "mvcore.models.weights_files",
    "strip_common_prefix": "mvcore.models.weights_files",
}

__all__ = ["ConfigError", "ParamError", "__version__", "hookimpl", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mvcore' has no attribute {name!r}")
