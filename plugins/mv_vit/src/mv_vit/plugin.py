"""Entry point of mv-vit: registers the multi-view transformer backbone.

Kept light: the backbone is registered as a lazy ``module:Class`` string, so torch and timm
load only when a model is built.
"""

from __future__ import annotations

from typing import Any

from mvcore import hookimpl


@hookimpl
def mvcore_register_backbones(registry: Any) -> None:
    registry.add("mv_vit.model:MultiviewTransformer", name="heatmap_multiview_transformer")
