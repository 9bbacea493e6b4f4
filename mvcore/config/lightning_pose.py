"""The Lightning Pose compatibility step: LP configs load verbatim, the core schema stays small.

Lightning Pose's multi-view config carries options that only one component reads (the patch
masking curriculum, the PCA column lists, the backbone variant and its weights, the head). The
core schema does not: ``lift`` takes them out of their sections before the shape check and
keeps them by dotted key. A component declares the keys it reads in its ``Params`` model
(``lightning_pose_keys = {"training.patch_mask": "patch_mask"}``) and ``component_params``
copies them into its parameters, so errors name the key the user wrote. A lifted key that no
component of the config reads is reported by ``unread_keys`` (the caller warns).

LP's rules for which components a config selects live here too: the supervised heatmap loss
``heatmap_<model.heatmap_loss_type>`` and the augmenters of ``training.imgaug`` and
``training.imgaug_3d``.
"""

from __future__ import annotations

import copy
from typing import Any

from mvcore.errors import ConfigError

__all__ = [
    "PLUGIN_KEYS",
    "augmenter_selection",
    "component_params",
    "heatmap_loss_name",
    "ignored_keys",
    "lift",
    "lookup",
    "restore",
    "unread_keys",
]

#: Lightning Pose keys that only a component reads (see the module docstring)
PLUGIN_KEYS = (
    "data.mirrored_column_matches",
    "data.columns_for_singleview_pca",
    "model.backbone",
    "model.backbone_pretrained",
    "model.backbone_checkpoint",
    "model.head",
    "training.patch_mask",
)


def lift(raw: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``raw`` without the ``PLUGIN_KEYS`` and ``{dotted key: value}`` of those it held."""
    rest = copy.deepcopy(raw)
    lifted: dict[str, Any] = {}
    for key in PLUGIN_KEYS:
        section, name = key.split(".")
        node = rest.get(section)
        if isinstance(node, dict) and name in node:
            lifted[key] = node.pop(name)
    return rest, lifted


def restore(dumped: dict[str, Any], lifted: dict[str, Any]) -> dict[str, Any]:
    """Put lifted keys back in their sections (for a saved, LP-shaped config)."""
    out = copy.deepcopy(dumped)
    for key, value in lifted.items():
        section, name = key.split(".")
        out.setdefault(section, {})[name] = copy.deepcopy(value)
    return out


def section_keys(section: str) -> list[str]:
    """Names of the lifted keys of one section (``training`` -> ``["patch_mask"]``)."""
    return [key.split(".")[1] for key in PLUGIN_KEYS if key.split(".")[0] == section]


def lookup(config: Any, key: str) -> tuple[bool, Any]:
    """``(found, value)`` of a dotted key: a lifted key if the config set it, else the core
    config's attribute (always found when the schema has it)."""
    if key in config.lightning_pose:
        return True, config.lightning_pose[key]
    if key in PLUGIN_KEYS:
        return False, None
    node: Any = config
    for part in key.split("."):
        if not hasattr(node, part):
            return False, None
        node = getattr(node, part)
    return True, node


def component_params(
    params_cls: Any, own: dict[str, Any] | None, prefix: str, config: Any
) -> tuple[dict[str, Any], dict[str, str]]:
    """The raw parameters of one component and where each field came from.

    ``own``: the component's section (``losses.<name>`` ...) at ``prefix``. Every
    ``params_cls.lightning_pose_keys`` entry the config sets is copied in; a field set in both
    places must agree. Returns ``(raw params, {field: key path it came from})``."""
    merged = dict(own or {})
    origin = {field: f"{prefix}.{field}" for field in merged}
    for key, field in getattr(params_cls, "lightning_pose_keys", {}).items():
        found, value = lookup(config, key)
        if not found:
            continue
        if hasattr(value, "model_dump"):
            value = value.model_dump()
        if field in merged and merged[field] != value:
            raise ConfigError(
                f"{prefix}.{field}: {merged[field]!r} contradicts {key}: {value!r} (the same "
                "option; set it in one place)"
            )
        merged[field] = value
        origin[field] = key
    return merged, origin


def unread_keys(config: Any, read: set[str]) -> list[str]:
    """Lifted keys with a value that no selected component reads."""
    return [key for key, value in config.lightning_pose.items()
            if key not in read and value is not None]


#: Lightning Pose keys mvcore accepts and does not use, with the value that means "nothing set"
IGNORED_KEYS = {
    "dali": None,
    "hydra": None,
    "model.lightning_pose_version": None,
    "eval.hydra_paths": None,
    "callbacks.anneal_weight.attr_name": "total_unsupervised_importance",
}


def ignored_keys(config: Any) -> list[str]:
    """The keys of ``IGNORED_KEYS`` this config sets (to something else than their neutral
    value): accepted so Lightning Pose configs load, but without effect in mvcore."""
    found = []
    for key, neutral in IGNORED_KEYS.items():
        node: Any = config
        for part in key.split("."):
            node = getattr(node, part, None)
        if node is not None and node != neutral:
            found.append(key)
    return found


def heatmap_loss_name(config: Any) -> str:
    """The supervised heatmap loss every LP heatmap model trains with."""
    return f"heatmap_{config.model.heatmap_loss_type}"


def augmenter_selection(config: Any) -> list[tuple[str, str, bool]]:
    """``(name, key path, optional)`` of the augmenters a config selects, in order: the 2D
    pipeline ``training.imgaug`` (``optional``: ``none`` and ``default`` are skipped when no
    plugin provides them), then ``imgaug_3d`` when ``training.imgaug_3d`` is not false
    (null counts as true, as in Lightning Pose)."""
    imgaug = config.training.imgaug
    if isinstance(imgaug, dict):
        raise ConfigError(
            "training.imgaug: a custom dict pipeline is not supported yet; use one of the "
            "named pipelines (dlc, default, none)"
        )
    chosen = [(imgaug, "training.imgaug", imgaug in {"none", "default"})]
    if config.training.imgaug_3d is not False:
        chosen.append(("imgaug_3d", "training.imgaug_3d", False))
    return chosen
