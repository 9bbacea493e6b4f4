"""Entry point of mv-cnn: registers the per-view CNN backbone as ``heatmap``.

Kept light: the backbone is registered as a lazy ``module:Class`` string, so torch and timm
load only when a model is built.
"""

from __future__ import annotations

from typing import Any

from mvcore import hookimpl


@hookimpl
def mvcore_register_backbones(registry: Any) -> None:
    registry.add("mv_cnn.model:PerViewCNN", name="heatmap")
