"""The Loss API: the ``Loss`` base class and the ``LossFactory`` that sums active losses."""

from mvcore.losses.base import Loss, LossContext, LossParams, required_inputs
from mvcore.losses.factory import LossFactory

__all__ = ["Loss", "LossContext", "LossFactory", "LossParams", "required_inputs"]
