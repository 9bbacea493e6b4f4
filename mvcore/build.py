"""From a shape-checked config to the run's components: config pass 2, and the one way every
loss, augmenter and backbone is built.

``plan_run(config, components, context)`` decides which components the config selects
(Lightning Pose's rules), validates each one's parameters with its own ``Params`` model (the
Lightning Pose keys it declares copied in), lets it check them against the project
(``validate_context``), and checks that the model can produce every input each active loss
requires. Every problem is collected into one ``ConfigError`` whose lines name the key path the
user wrote. ``mvcore config check`` stops there; training then builds the objects with
``build_backbone``, ``build_augmenters`` and ``build_losses``: ``Component(params, context)``.

Warnings (one line each): a loss configured under ``losses:`` that is not active, parameters
of an augmenter the config does not select, a Lightning Pose key no selected component reads.
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from mvcore.config import lightning_pose
from mvcore.config.load import validation_problems
from mvcore.context import Context
from mvcore.contracts import LOSS_INPUTS, produced_inputs
from mvcore.errors import (
    ConfigError,
    MissingLossInputError,
    MvcoreError,
    ParamError,
    PluginError,
)
from mvcore.losses.base import loss_signature
from mvcore.losses.factory import LossFactory

__all__ = [
    "Plan",
    "Selected",
    "build_augmenters",
    "build_backbone",
    "build_losses",
    "loss_input_errors",
    "make_context",
    "plan_run",
    "select_backbone",
]

_CALIBRATION_HINT = ("add calibration.toml (or calibrations/<session>.toml, or set "
                     "data.calibration_file / data.camera_params_file)")


@dataclass
class Selected:
    """One component the config selects, with its validated parameters.

    ``key_path``: where the config names it; ``prefix``: its parameter section;
    ``origin``: ``{field: key path}`` of parameters set elsewhere (Lightning Pose keys)."""

    kind: str
    name: str
    key_path: str
    cls: Any
    params: Any
    prefix: str
    origin: dict[str, str] = field(default_factory=dict)
    provider: str = ""

    def key_of(self, field_name: str) -> str:
        """The key path the user wrote for parameter ``field_name``."""
        head, _, rest = field_name.partition(".")
        base = self.origin.get(head, f"{self.prefix}.{head}")
        return f"{base}.{rest}" if rest else base

    def describe(self) -> str:
        return f"{self.kind} {self.name!r} (from {self.provider})"


@dataclass
class Plan:
    """What a config selects: the backbone, the augmenters in order, the active losses (the
    supervised heatmap loss first), and the warnings found on the way."""

    backbone: Selected
    augmenters: list[Selected]
    losses: list[Selected]
    warnings: list[str] = field(default_factory=list)

    @property
    def loss_names(self) -> list[str]:
        return [s.name for s in self.losses]


def make_context(config: Any, project: Any,
                 labels_source: Callable[[], Any] | None = None) -> Context:
    """The ``Context`` of a run on ``project`` (views, keypoints and calibration come from the
    project, sizes and seed from the config)."""
    dims = config.data.image_resize_dims
    return Context(
        view_names=tuple(project.view_names),
        keypoint_names=tuple(project.keypoint_names),
        image_height=int(dims.height),
        image_width=int(dims.width),
        downsample_factor=int(config.data.downsample_factor),
        has_calibration=bool(project.has_calibration),
        seed=int(config.training.rng_seed_model_pt),
        base_dir=config.config_dir,
        heatmap_grid=str(config.model.heatmap_grid),
        labels_source=labels_source,
    )


class _Problems:
    """Collects every problem of a plan; one exception at the end."""

    def __init__(self) -> None:
        self.errors: list[MvcoreError] = []

    def add(self, error: MvcoreError) -> None:
        self.errors.append(error)

    def raise_any(self) -> None:
        if len(self.errors) == 1:
            raise self.errors[0]
        if self.errors:
            raise ConfigError("\n".join(str(e) for e in self.errors))


def _select(
    kind: str, registry: Any, name: str, key_path: str, own: dict[str, Any] | None,
    prefix: str, config: Any, context: Context | None, problems: _Problems,
) -> Selected | None:
    """Resolve one named component and validate its parameters (None after a problem)."""
    try:
        cls = registry.get(name, key_path=key_path)
        entry = registry.entry(name)
    except MvcoreError as exc:
        problems.add(exc)
        return None
    try:
        raw, origin = lightning_pose.component_params(cls.Params, own, prefix, config)
    except ConfigError as exc:
        problems.add(exc)
        return None
    try:
        params = cls.Params.model_validate(raw)
    except ValidationError as exc:
        lines = validation_problems(exc, cls.Params, prefix=prefix, origin=origin)
        problems.add(ConfigError("\n".join(lines)))
        return None
    selected = Selected(kind, name, key_path, cls, params, prefix, origin,
                        entry.provider_label)
    if context is not None:
        try:
            cls.validate_context(params, context)
        except ParamError as exc:
            problems.add(ConfigError(f"{selected.key_of(exc.field)}: {exc.message}"))
            return None
        except MvcoreError as exc:
            problems.add(exc)
            return None
    return selected


def _select_backbone(config: Any, components: Any, context: Context | None,
                     problems: _Problems) -> Selected | None:
    return _select("backbone", components.backbones, config.model.model_type,
                   "model.model_type", config.model.backbone_params, "model.backbone_params",
                   config, context, problems)


def select_backbone(config: Any, components: Any, context: Context | None = None) -> Selected:
    """The backbone alone (prediction builds no loss and no augmenter)."""
    problems = _Problems()
    selected = _select_backbone(config, components, context, problems)
    problems.raise_any()
    assert selected is not None
    return selected


def _active_losses(config: Any, registry: Any, problems: _Problems,
                   notes: list[str]) -> list[tuple[str, str]]:
    """``(name, key path)`` of the losses a config turns on (Lightning Pose's rules): the
    heatmap loss; every supervised loss under ``losses:`` with a non-null ``log_weight``;
    every loss named in ``model.losses_to_use`` (unsupervised losses need that)."""
    chosen: dict[str, str] = {lightning_pose.heatmap_loss_name(config): "model.heatmap_loss_type"}
    to_use = list(config.model.losses_to_use or [])
    for name, params in config.losses.items():
        try:
            cls = registry.get(name, key_path=f"losses.{name}")
        except MvcoreError as exc:
            problems.add(exc)
            continue
        if params is None or (params or {}).get("log_weight", 0.0) is None or name in chosen:
            continue
        if cls.supervised:
            chosen[name] = f"losses.{name}"
        elif name not in to_use:
            notes.append(
                f"losses.{name} is configured but off: {name!r} is an unsupervised loss, active "
                "only when also named in model.losses_to_use (add it there to turn it on)")
    for index, name in enumerate(to_use):
        if name in chosen or ((config.losses.get(name) or {}).get("log_weight", 0.0) is None):
            continue
        chosen[name] = f"model.losses_to_use[{index}]"
    return list(chosen.items())


def loss_input_errors(cls: Any, name: str, provider: str = "",
                      calibrated: bool | None = None) -> list[MissingLossInputError]:
    """What is wrong with the inputs a loss class declares: names that are not loss inputs,
    targets required by an unsupervised loss (it also runs on unlabelled clips), and, when
    ``calibrated`` is known, required inputs the model cannot produce for such a project."""
    errors = []
    who = f"loss {name!r}" + (f" (from {provider})" if provider else "")
    signature = loss_signature(cls)
    for unknown in sorted(signature.unknown):
        close = difflib.get_close_matches(unknown, list(LOSS_INPUTS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        errors.append(MissingLossInputError(
            f"losses.{name}: {who} declares the input {unknown!r}, which is not a loss "
            f"input{hint}; loss inputs are {', '.join(LOSS_INPUTS)} "
            "(mvcore.contracts.LossInputs)"))
    if not cls.supervised:
        targets = sorted(n for n in signature.required if LOSS_INPUTS[n].target)
        if targets:
            errors.append(MissingLossInputError(
                f"losses.{name}: {who} is unsupervised but requires {', '.join(targets)}, "
                "which unlabelled clips do not have; make it supervised or take that input as "
                "optional"))
    if calibrated is not None:
        missing = sorted(signature.required - produced_inputs(calibrated))
        if missing:
            errors.append(MissingLossInputError(
                f"losses.{name}: {who} needs a camera calibration for every labelled frame, "
                f"and this project has none (or not for every session): {_CALIBRATION_HINT}, "
                f"or set losses.{name}.log_weight: null to turn it off (it requires "
                f"{', '.join(missing)}, which exist only for calibrated projects)"))
    return errors


def plan_run(config: Any, components: Any, context: Context | None = None) -> Plan:
    """Config pass 2 (see the module docstring). ``context`` None: no project is known
    (``mvcore config check --no-data``), so project checks are skipped."""
    problems = _Problems()
    notes: list[str] = []
    backbone = _select_backbone(config, components, context, problems)
    augmenters = []
    try:
        selection = lightning_pose.augmenter_selection(config)
    except ConfigError as exc:
        problems.add(exc)
        selection = []
    for name, key_path, optional in selection:
        if optional and name not in components.augmenters:
            continue
        own = config.training.augmentation_params.get(name, {})
        selected = _select("augmenter", components.augmenters, name, key_path, own,
                           f"training.augmentation_params.{name}", config, context, problems)
        if selected is None:
            continue
        if selected.cls.requires_calibration and context is not None \
                and not context.has_calibration:
            problems.add(ConfigError(
                f"{key_path}: {selected.describe()} needs camera calibration, but the project "
                f"has none: {_CALIBRATION_HINT}, or set {key_path}: false"))
            continue
        augmenters.append(selected)
    chosen_augmenters = {s.name for s in augmenters} | {name for name, _, _ in selection}
    for name in config.training.augmentation_params:
        if name not in chosen_augmenters:
            notes.append(f"training.augmentation_params.{name}: augmenter {name!r} is not "
                         "selected (training.imgaug, training.imgaug_3d); its parameters are "
                         "ignored")
    losses = []
    calibrated = None if context is None else context.has_calibration
    for name, key_path in _active_losses(config, components.losses, problems, notes):
        selected = _select("loss", components.losses, name, key_path, config.losses.get(name),
                           f"losses.{name}", config, context, problems)
        if selected is not None:
            for error in loss_input_errors(selected.cls, name, selected.provider, calibrated):
                problems.add(error)
            losses.append(selected)
    problems.raise_any()
    assert backbone is not None
    read = {key for s in [backbone, *augmenters, *losses]
            for key in s.cls.Params.lightning_pose_keys}
    for key in lightning_pose.unread_keys(config, read):
        notes.append(f"{key}: a Lightning Pose key that no component of this config reads "
                     f"(backbone {backbone.name!r}, active losses); it is ignored")
    ignored = lightning_pose.ignored_keys(config)
    if ignored:
        notes.append(f"{', '.join(ignored)}: Lightning Pose keys that mvcore accepts but does "
                     "not use; they have no effect")
    for note in notes:
        warnings.warn(note, UserWarning, stacklevel=2)
    return Plan(backbone, augmenters, losses, notes)


def _build(selected: Selected, context: Context) -> Any:
    """``cls(params, context)``; what the component raises is named after it."""
    try:
        return selected.cls(selected.params, context)
    except ParamError as exc:
        raise ConfigError(f"{selected.key_of(exc.field)}: {exc.message}") from None
    except MvcoreError:
        raise
    except Exception as exc:
        raise PluginError(
            f"{selected.key_path}: building {selected.describe()} failed: "
            f"{type(exc).__name__}: {exc}") from exc


def build_backbone(plan: Plan | Selected, context: Context, architecture_only: bool = False
                   ) -> Any:
    """The backbone; ``architecture_only``: without pretrained weights (they are about to be
    replaced by a checkpoint's, see ``Backbone.architecture_only``)."""
    selected = plan.backbone if isinstance(plan, Plan) else plan
    if architecture_only:
        selected = Selected(**{**selected.__dict__,
                               "params": selected.cls.architecture_only(selected.params)})
    return _build(selected, context)


def build_augmenters(plan: Plan, context: Context) -> list[Any]:
    return [_build(s, context) for s in plan.augmenters]


def build_losses(plan: Plan, context: Context) -> tuple[LossFactory, LossFactory]:
    """The active losses as two factories: supervised and unsupervised."""
    supervised, unsupervised = {}, {}
    for selected in plan.losses:
        loss = _build(selected, context)
        if loss.loss_name != selected.name:
            loss.loss_name = selected.name  # a class registered under another name
        (supervised if selected.cls.supervised else unsupervised)[selected.name] = loss
    return LossFactory(supervised), LossFactory(unsupervised)
