"""The Loss API: the ``Loss`` base class and the ``LossFactory`` that sums active losses."""

from mvcore.losses.base import Loss, LossParams, LossSignature, loss_signature, required_inputs
from mvcore.losses.factory import LossFactory

__all__ = ["Loss", "LossFactory", "LossParams", "LossSignature", "loss_signature",
           "required_inputs"]
