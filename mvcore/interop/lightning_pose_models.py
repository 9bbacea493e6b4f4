"""``mvcore import-lightning-pose LP_MODEL_DIR OUT_DIR``: a model trained by Lightning Pose as
an mvcore model directory.

A Lightning Pose model directory holds ``config.yaml`` (a config mvcore reads as it is) and
``tb_logs/<model_name>/version_N/checkpoints/*.ckpt``. The network tensors are renamed by the
backbone plugin of ``model.model_type`` (``Backbone.from_lightning_pose``); the core builds
the run as training would (project, losses), loads the converted tensors (every one must fit)
and writes ``config.yaml``, ``context.json``, ``plugins.json``, ``checkpoints/best.ckpt``,
``checkpoints/last.ckpt`` (the run's optimiser, scheduler and loop state, converted, for
``--resume``; when the checkpoint has them), ``imported_from.json`` (the source), and the
labelled frames' predictions and metrics as training's report writes them. The
config gets ``model.heatmap_grid: lightning_pose``: Lightning Pose's networks put heatmap
pixel ``j`` at model pixel ``j * s`` (mvcore: ``j * s + (s - 1) / 2``), and reading them with
mvcore's grid would shift every keypoint by 1.5 model pixels at ``downsample_factor`` 2.

``mvcore predict OUT_DIR`` predicts with it; ``mvcore train OUT_DIR/config.yaml --resume
OUT_DIR`` continues Lightning Pose's run; ``model.checkpoint: OUT_DIR`` fine-tunes from it.
"""

from __future__ import annotations

import collections
import copy
import datetime
import re
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from mvcore.build import make_context, select_backbone
from mvcore.config.load import apply_overrides, load_yaml, parse_config
from mvcore.data.project import MultiviewProject
from mvcore.errors import ConfigError, DataError, MvcoreError
from mvcore.files import DirectoryLock, atomic_path, writable_dir, write_json_atomically
from mvcore.plugin.components import load_components
from mvcore.predict.report import write_report
from mvcore.training.fit import prepare_training, save_run_info
from mvcore.training.weights import describe_mismatch, unreadable_reason

__all__ = ["ImportResult", "find_lightning_pose_checkpoint", "import_lightning_pose"]

#: Lightning Pose's checkpoints, relative to its model directory
_CHECKPOINT_GLOB = "tb_logs/*/version_*/checkpoints/*.ckpt"
#: tensors of Lightning Pose's loss modules in its state dict (``loss_factory``,
#: ``loss_factory_unsupervised``...), not network weights
_LOSS_PREFIXES = ("loss_factory",)


@dataclass
class ImportResult:
    """What was imported (``summary`` says it in one line)."""

    model_dir: Path
    checkpoint: Path
    epoch: int
    step: int
    backbone: str
    views: int
    keypoints: int
    #: ``checkpoints/last.ckpt`` was written: ``--resume`` continues the run
    resumable: bool
    #: the labelled frames' metrics (``metrics.csv``)
    metrics: dict[str, float]

    def summary(self) -> str:
        error = next((f"; {split} pixel error median {self.metrics[key]:.2f} px"
                      for split in ("test", "validation", "train")
                      if (key := f"{split}_pixel_error_median") in self.metrics), "")
        return (f"imported: {self.checkpoint} (epoch {self.epoch}, step {self.step}, "
                f"{self.backbone}, {self.views} views, {self.keypoints} keypoints) -> "
                f"{self.model_dir}{error}")


def _version_number(path: Path) -> int:
    match = re.fullmatch(r"version_(\d+)", path.parent.parent.name)
    return int(match.group(1)) if match else -1


def find_lightning_pose_checkpoint(model_dir: Path) -> Path:
    """The checkpoint Lightning Pose predicts with: the ``*-best.ckpt`` of the newest
    ``version_N`` (its ``Model.from_dir``), else that version's newest checkpoint."""
    found = sorted(model_dir.glob(_CHECKPOINT_GLOB), key=lambda p: (_version_number(p),
                                                                     p.stat().st_mtime_ns))
    if not found:
        raise DataError(f"{model_dir}: no checkpoint under {_CHECKPOINT_GLOB}; is it a model "
                        "directory written by Lightning Pose? (or name the file with "
                        "--checkpoint)")
    newest = _version_number(found[-1])
    in_version = [p for p in found if _version_number(p) == newest]
    best = [p for p in in_version if p.name.endswith("-best.ckpt")]
    return (best or in_version)[-1]


def _stand_in(module: str, name: str) -> tuple[type, str]:
    """A class named ``module.name`` that only keeps the state it is unpickled with."""

    def keep(self: Any, state: Any) -> None:
        self.__dict__["state"] = state

    cls = type(name, (), {"__setstate__": keep, "__module__": module, "__qualname__": name})
    return cls, f"{module}.{name}"


#: what else a Lightning Pose checkpoint pickles besides tensors and containers: its
#: hyper-parameters are omegaconf objects (stand-ins here: mvcore reads the config file, not
#: these), plus builtins and ``defaultdict``. ``torch.load(weights_only=True)`` still refuses
#: every other global, so a checkpoint cannot run code while it is read.
_CHECKPOINT_GLOBALS: list[Any] = [
    *(_stand_in(module, name) for module, name in (
        ("omegaconf.base", "ContainerMetadata"), ("omegaconf.base", "Metadata"),
        ("omegaconf.dictconfig", "DictConfig"), ("omegaconf.listconfig", "ListConfig"),
        ("omegaconf.nodes", "AnyNode"), ("omegaconf.nodes", "StringNode"),
        ("omegaconf.nodes", "IntegerNode"), ("omegaconf.nodes", "FloatNode"),
        ("omegaconf.nodes", "BooleanNode"), ("omegaconf.nodes", "ValueNode"))),
    (typing.Any, "typing.Any"), (dict, "builtins.dict"), (list, "builtins.list"),
    (int, "builtins.int"), (float, "builtins.float"), (str, "builtins.str"),
    (tuple, "builtins.tuple"), collections.defaultdict,
]


def _read_checkpoint(path: Path) -> dict[str, Any]:
    try:
        with torch.serialization.safe_globals(_CHECKPOINT_GLOBALS):
            saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same message
        raise DataError(f"{path}: cannot be read as a checkpoint ({unreadable_reason(exc)}); "
                        "the file is truncated, damaged or not a checkpoint") from None
    if not isinstance(saved, dict) or not isinstance(saved.get("state_dict"), dict):
        raise DataError(f"{path}: not a Lightning checkpoint (no state_dict)")
    return saved


def _converted_config(raw: dict[str, Any], params_before: Any, params_after: Any,
                      lightning_pose_keys: dict[str, str], data_dir: Path) -> dict[str, Any]:
    """The Lightning Pose config with the backbone params the conversion chose (at the key
    the user would write them), Lightning Pose's heatmap grid and an absolute data_dir."""
    out = copy.deepcopy(raw)
    out.setdefault("data", {})["data_dir"] = str(data_dir)
    model = out.setdefault("model", {})
    model["heatmap_grid"] = "lightning_pose"
    model.pop("checkpoint", None)  # the weights are this directory's own
    key_of = {field: key for key, field in lightning_pose_keys.items()}
    own = dict(model.get("backbone_params") or {})
    before, after = params_before.model_dump(), params_after.model_dump()
    for field, value in after.items():
        if value == before.get(field):
            continue
        if field in key_of:
            section, name = key_of[field].split(".")
            if field in own:
                own[field] = value
            else:
                out.setdefault(section, {})[name] = value
        else:
            own[field] = value
    model["backbone_params"] = own
    return out


def _lightning_pose_param_names(state: dict[str, torch.Tensor], groups: list[dict[str, Any]]
                                ) -> dict[int, str] | None:
    """Optimiser index -> tensor name of a Lightning Pose multi-view model, whose groups are
    ``backbone`` (``backbone.*`` in module order), ``head`` (``head.*``) and
    ``view_embeddings``; None when the groups are not that (another model)."""
    prefixes = {"backbone": "backbone.", "head": "head.", "view_embeddings": "view_embeddings"}
    names: dict[int, str] = {}
    for group in groups:
        prefix = prefixes.get(str(group.get("name")))
        members = [k for k in state if prefix and k.startswith(prefix)]
        if prefix is None or len(members) != len(group.get("params", [])):
            return None
        names.update(zip(group["params"], members, strict=True))
    return names


def _resumable_checkpoint(saved: dict[str, Any], state: dict[str, torch.Tensor],
                          convert: Any, module: Any) -> dict[str, Any] | None:
    """``last.ckpt`` that continues the Lightning Pose run: the network, Adam's moments
    converted like the weights (a moment is a tensor of its parameter's shape; resized second
    moments are clamped at 0), Lightning Pose's learning rates, scheduler and loop progress.
    None when the checkpoint holds no optimiser state mvcore can map (``--resume`` then says
    so)."""
    optimizers = saved.get("optimizer_states") or []
    if len(optimizers) != 1 or not saved.get("loops"):
        return None
    lp_state, lp_groups = optimizers[0].get("state", {}), optimizers[0].get("param_groups", [])
    names = _lightning_pose_param_names(state, lp_groups)
    if names is None:
        return None
    optimizer = module.configure_optimizers()
    scheduler = None
    if isinstance(optimizer, dict):
        scheduler = optimizer["lr_scheduler"]["scheduler"]
        optimizer = optimizer["optimizer"]
    moments: dict[str, dict[str, torch.Tensor]] = {}
    for key in ("exp_avg", "exp_avg_sq"):
        per_name = {k: torch.zeros_like(v) for k, v in state.items()}
        per_name.update({names[i]: s[key] for i, s in lp_state.items() if key in s})
        try:
            moments[key] = convert(per_name)
        except ValueError:  # not Adam's per-parameter moments after all: no resumable state
            return None
    steps = [s["step"] for s in lp_state.values() if "step" in s]
    own_names = {id(p): n.removeprefix("backbone.") for n, p in module.named_parameters()}
    mine = optimizer.state_dict()
    lp_group_of = {g.get("name"): g for g in lp_groups}
    for group in mine["param_groups"]:
        source = lp_group_of.get(group.get("name"), {})
        for key in ("lr", "initial_lr"):
            if key in source:
                group[key] = source[key]
    flat = [p for g in optimizer.param_groups for p in g["params"]]
    if steps:
        mine["state"] = {
            index: {"step": steps[0].clone(),
                    "exp_avg": moments["exp_avg"][own_names[id(param)]].clone(),
                    "exp_avg_sq": moments["exp_avg_sq"][own_names[id(param)]].clamp_min(0)}
            for index, param in enumerate(flat)}
    schedulers = []
    if scheduler is not None:
        lp_schedulers = saved.get("lr_schedulers") or []
        theirs = lp_schedulers[0] if lp_schedulers else {}
        ours = scheduler.state_dict()
        if set(theirs) != set(ours):
            return None
        schedulers = [theirs]
    return {"epoch": saved.get("epoch", 0), "global_step": saved.get("global_step", 0),
            "pytorch-lightning_version": pl.__version__, "state_dict": module.state_dict(),
            "loops": saved["loops"], "callbacks": {}, "optimizer_states": [mine],
            "lr_schedulers": schedulers}


def import_lightning_pose(lp_dir: str | Path, out_dir: str | Path,
                          checkpoint: str | Path | None = None,
                          data_dir: str | Path | None = None,
                          overrides: list[str] | None = None) -> ImportResult:
    """Convert the Lightning Pose model in ``lp_dir`` into an mvcore model directory
    ``out_dir`` (module docstring). ``checkpoint``: the ``.ckpt`` to import (default
    ``find_lightning_pose_checkpoint``); ``data_dir``: the project folder when the config's
    ``data.data_dir`` is not where the data is now; ``overrides``: ``key=value`` edits of the
    config. Nothing is written unless the whole conversion succeeds."""
    lp_dir, out_dir = Path(lp_dir), Path(out_dir)
    config_file = lp_dir / "config.yaml"
    if not config_file.is_file():
        raise DataError(f"{lp_dir}: no config.yaml; give the model directory Lightning Pose "
                        "wrote (it holds config.yaml and tb_logs/)")
    if out_dir.exists() and any(p.name != ".mvcore.lock" for p in out_dir.iterdir()):
        raise DataError(f"{out_dir} is not empty; give a new folder for the imported model")
    ckpt = Path(checkpoint) if checkpoint else find_lightning_pose_checkpoint(lp_dir)
    if not ckpt.is_file():
        raise DataError(f"--checkpoint {ckpt}: file not found")
    raw = apply_overrides(load_yaml(config_file), overrides)
    given = Path(data_dir if data_dir is not None else raw.get("data", {}).get("data_dir", "."))
    data = given if given.is_absolute() else (Path.cwd() / given)
    if not data.is_dir():
        where = "--data-dir" if data_dir is not None else f"{config_file}: data.data_dir"
        raise DataError(f"{where} {given}: folder not found; pass --data-dir DIR, the project "
                        "folder with the label CSVs (and calibration) the model was trained on")
    raw.setdefault("data", {})["data_dir"] = str(data.resolve())
    config = parse_config(raw, source=str(config_file))
    config.config_dir = str(lp_dir.resolve())
    components = load_components()
    saved = _read_checkpoint(ckpt)
    state = {k: v for k, v in saved["state_dict"].items() if not k.startswith(_LOSS_PREFIXES)}

    project = MultiviewProject.from_config(config)
    selected = select_backbone(config, components)
    context = make_context(config, project)
    try:
        params, network = selected.cls.from_lightning_pose(selected.params, state, context)
    except NotImplementedError as exc:
        raise ConfigError(f"model.model_type {config.model.model_type!r}: {exc} (installed "
                          f"from {selected.provider})") from None
    except ValueError as exc:
        raise DataError(f"{ckpt}: {exc}") from None
    converted = _converted_config(raw, selected.params, params,
                                  getattr(selected.cls.Params, "lightning_pose_keys", {}),
                                  data.resolve())
    config = parse_config(converted, source=f"{config_file} (converted)")
    config.config_dir = str(out_dir.resolve())
    module, data_module = prepare_training(config, components, project)
    own = {k.removeprefix("backbone."): v for k, v in module.state_dict().items()
           if k.startswith("backbone.")}
    problem = describe_mismatch(own, network)
    if problem:
        raise MvcoreError(f"{ckpt}: the converted tensors do not fit the network mvcore builds "
                          f"from {config_file}: {problem}")
    module.backbone.load_state_dict(network, strict=True)

    def convert(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return selected.cls.from_lightning_pose(selected.params, tensors, context)[1]

    resumable = _resumable_checkpoint(saved, state, convert, module)
    epoch, step = int(saved.get("epoch", 0)), int(saved.get("global_step", 0))
    writable_dir(out_dir, "OUT_DIR")
    with DirectoryLock(out_dir, "import-lightning-pose"):
        save_run_info(config, components, module.context, out_dir)
        with atomic_path(out_dir / "checkpoints" / "best.ckpt") as partial:
            torch.save({"state_dict": module.state_dict(), "epoch": epoch, "global_step": step,
                        "imported_from": str(ckpt.resolve())}, partial)
        if resumable is not None:
            with atomic_path(out_dir / "checkpoints" / "last.ckpt") as partial:
                torch.save(resumable, partial)
        write_json_atomically(out_dir / "imported_from.json", {
            "lightning_pose_model_dir": str(lp_dir.resolve()),
            "checkpoint": str(ckpt.resolve()),
            "epoch": epoch,
            "global_step": step,
            "lightning_pose_version": (raw.get("model") or {}).get("lightning_pose_version"),
            "lightning_version": saved.get("pytorch-lightning_version"),
            "imported": datetime.datetime.now().isoformat(timespec="seconds"),
        })
        # the labelled frames predicted, as after training: `mvcore evaluate` and `mvcore
        # report` then show how well the imported model does on this project
        module.eval()
        metrics = write_report(module, data_module, project, out_dir, {})
    return ImportResult(out_dir, ckpt, epoch, step, str(getattr(params, "backbone", "")),
                        context.num_views, context.num_keypoints, resumable is not None,
                        metrics)
