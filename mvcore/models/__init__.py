"""The Backbone API (implementations live in plugins such as mv-vit)."""

from mvcore.models.base import Backbone, BackboneParams

__all__ = ["Backbone", "BackboneParams"]
