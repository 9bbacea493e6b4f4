"""The ``Loss`` base class every loss plugin subclasses.

A loss follows the recipe of the Lightning Pose "add a loss" guide:
``remove_nans`` -> ``compute_loss`` -> ``rectify_epsilon`` -> ``reduce_loss`` -> ``log_loss``,
and ``forward`` (or ``__call__``) returns ``(weighted scalar, logs)`` with
``weight = 1 / (2 * exp(log_weight))``.

Construction is ``Loss(params, context)``: ``params`` the validated ``Params`` model
(``losses.<name>`` of the config), ``context`` a ``mvcore.Context``.

Inputs are keyword arguments named after ``mvcore.contracts.LossInputs`` (the one list of
names, shapes and units). The arguments a loss names are its *declared* inputs; those without a
default are *required*. The core computes an optional input (a triangulation, a reprojection)
exactly when an active loss declares it, checks before training that every required input can
be produced, and passes each loss only what it declares (everything, if it takes ``**kwargs``).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from functools import cache
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from mvcore.component import Component, ComponentParams
from mvcore.context import Context
from mvcore.contracts import LOSS_INPUTS

Stage = Literal["train", "val", "test"]
LogList = list[dict[str, Any]]

__all__ = ["LogList", "Loss", "LossParams", "LossSignature", "Stage", "loss_signature",
           "required_inputs"]


class LossParams(ComponentParams):
    """Config parameters of a loss (``losses.<name>`` in the YAML); subclass to add fields.

    ``log_weight``: the weight is ``1 / (2 exp(log_weight))``; null turns the loss off.
    ``epsilon``: losses below it cost nothing (``rectify_epsilon``); scalar or per keypoint.
    """

    log_weight: float | None = 0.0
    epsilon: float | list[float] | None = 0.0


class Loss(Component, nn.Module):
    """Base class of all losses.

    Subclasses set ``loss_name`` (the config key), a ``Params`` model, and implement ``forward``
    (or ``__call__``, as in the Lightning Pose guide) with keyword-only inputs. Being an
    ``nn.Module``, a loss that owns tensors (PCA bases) registers them as buffers so they follow
    ``.to(device)`` and are saved in checkpoints.
    """

    loss_name: ClassVar[str] = ""
    Params: ClassVar[type[LossParams]] = LossParams
    #: supervised losses are active when listed under ``losses:`` with a non-null log_weight;
    #: unsupervised ones only when also named in ``model.losses_to_use``. Unsupervised losses
    #: also run on unlabelled clips, so they cannot require a target input.
    supervised: ClassVar[bool] = True
    #: annealed losses are multiplied by the annealing weight (callbacks.anneal_weight)
    annealed: ClassVar[bool] = True
    reduce_methods_dict: ClassVar[dict[str, Any]] = {"mean": torch.mean, "sum": torch.sum}

    def __init__(self, params: LossParams, context: Context) -> None:
        super().__init__()
        self._take(params, context)
        if params.log_weight is None:
            raise ValueError(f"{self.loss_name}: log_weight null turns the loss off; "
                             "such a loss is not built")
        self.register_buffer("log_weight", torch.tensor(float(params.log_weight)))
        eps = 0.0 if params.epsilon is None else params.epsilon
        self.register_buffer("epsilon", torch.as_tensor(eps, dtype=torch.float32))

    @property
    def weight(self) -> torch.Tensor:
        """``1 / (2 * exp(log_weight))``: log_weight 0 -> 0.5, 3 -> 0.0249."""
        return 1.0 / (2.0 * torch.exp(self.log_weight))

    def remove_nans(self, **kwargs: Any) -> Any:
        """Drop entries without labels (NaN or all-zero targets) before computing the loss."""
        raise NotImplementedError(f"{type(self).__name__} does not implement remove_nans")

    def compute_loss(self, **kwargs: Any) -> torch.Tensor:
        """Element-wise loss (per keypoint, per sample, ...)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement compute_loss")

    def rectify_epsilon(self, loss: torch.Tensor) -> torch.Tensor:
        """Epsilon-insensitive loss ``relu(loss - epsilon)``; a per-keypoint epsilon list
        broadcasts along the last dimension."""
        return torch.relu(loss - self.epsilon.to(dtype=loss.dtype))

    def reduce_loss(self, loss: torch.Tensor, method: str = "mean") -> torch.Tensor:
        """Mean or sum over all elements. An empty tensor reduces to a zero that keeps the graph
        (the public implementation returns NaN there)."""
        if method not in self.reduce_methods_dict:
            allowed = sorted(self.reduce_methods_dict)
            raise KeyError(f"reduce method {method!r} is not one of {allowed}")
        if loss.numel() == 0:
            return loss.sum() * 0.0
        return self.reduce_methods_dict[method](loss)

    def log_loss(self, loss: torch.Tensor, stage: Stage | None) -> LogList:
        """Two log entries: ``{stage}_{name}_loss`` (unweighted) and ``{name}_weight``."""
        return [
            {"name": f"{stage}_{self.loss_name}_loss", "value": loss.detach(), "prog_bar": True},
            {"name": f"{self.loss_name}_weight", "value": self.weight.detach()},
        ]

    def keypoint_errors(self, keypoints_pred: torch.Tensor) -> torch.Tensor | None:
        """Optional diagnostic written after training: a per-keypoint error ``(n, N)`` for
        predictions ``(n, 2N)`` in frame pixels (NaN where undefined), saved as
        ``predictions_<view>_<loss_name>_error.csv``. None (the default) writes nothing."""
        return None

    def forward(self, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, LogList]:
        raise NotImplementedError(
            f"{type(self).__name__} must implement forward or __call__ returning "
            "(weighted scalar loss, logs)"
        )

    def extra_repr(self) -> str:
        return f"loss_name={self.loss_name!r}, log_weight={float(self.log_weight):g}"


@dataclass(frozen=True)
class LossSignature:
    """The inputs a loss class names in its ``forward`` / ``__call__``.

    ``required``: named without a default; ``optional``: named with one; ``takes_all``: it has
    ``**kwargs`` (it then receives every input); ``unknown``: names that are not loss inputs
    (``mvcore.contracts.LOSS_INPUTS``), an error."""

    required: frozenset[str]
    optional: frozenset[str]
    takes_all: bool
    unknown: frozenset[str]

    @property
    def declared(self) -> frozenset[str]:
        return self.required | self.optional


def _entry_callable(loss_cls: type[Loss]) -> Any:
    """The method that receives the model outputs: an overridden ``__call__`` or ``forward``."""
    for klass in loss_cls.__mro__:
        if klass in (Loss, nn.Module, object):
            break
        if "__call__" in vars(klass):
            return vars(klass)["__call__"]
        if "forward" in vars(klass):
            return vars(klass)["forward"]
    return loss_cls.forward


@cache
def loss_signature(loss_cls: type[Loss]) -> LossSignature:
    """Read the declared inputs of ``loss_cls`` from its signature."""
    signature = inspect.signature(_entry_callable(loss_cls))
    required, optional, unknown = set(), set(), set()
    takes_all = False
    for position, (name, param) in enumerate(signature.parameters.items()):
        if position == 0 or name == "stage":  # self
            continue
        if param.kind == param.VAR_KEYWORD:
            takes_all = True
            continue
        if param.kind == param.VAR_POSITIONAL:
            continue
        if name not in LOSS_INPUTS:
            unknown.add(name)
        elif param.default is inspect.Parameter.empty:
            required.add(name)
        else:
            optional.add(name)
    return LossSignature(frozenset(required), frozenset(optional), takes_all, frozenset(unknown))


def required_inputs(loss_cls: type[Loss]) -> set[str]:
    """Names of the loss inputs ``loss_cls`` cannot run without (plus any unknown names)."""
    sig = loss_signature(loss_cls)
    return set(sig.required | sig.unknown)
