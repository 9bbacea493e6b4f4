"""``mvcore import-lightning-pose LP_MODEL_DIR OUT_DIR``: a Lightning Pose model as an mvcore
model directory (``mvcore.interop.lightning_pose_models``; docs/lightning_pose.md)."""

from __future__ import annotations

import argparse
import shlex


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "import-lightning-pose",
        help="convert a model trained by Lightning Pose into an mvcore model directory",
        description=(
            "Convert a Lightning Pose multi-view model (its config.yaml and checkpoint: Hugging "
            "Face ViT tensors, keypoint and view names) into an mvcore model directory that "
            "`mvcore predict` uses, `mvcore train OUT_DIR/config.yaml --resume OUT_DIR` "
            "continues and `model.checkpoint` fine-tunes from. Its config reads "
            "heatmaps on Lightning Pose's grid (model.heatmap_grid: lightning_pose), so the "
            "keypoints are the ones Lightning Pose predicts. Nothing is written unless every "
            "tensor converts and fits."),
    )
    parser.add_argument("lp_model_dir", metavar="LP_MODEL_DIR",
                        help="model directory written by Lightning Pose (config.yaml, tb_logs/)")
    parser.add_argument("out_dir", metavar="OUT_DIR", help="new folder for the mvcore model")
    parser.add_argument("--checkpoint", default=None, metavar="CKPT",
                        help="the .ckpt to import (default: the newest version's *-best.ckpt)")
    parser.add_argument("--data-dir", default=None, metavar="DIR",
                        help="the project folder (label CSVs, calibration) when it is no longer "
                             "at the config's data.data_dir")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="edit a key of the Lightning Pose config first (repeatable)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # lazy: torch and the plugins load only when this command runs (mvcore --help stays fast)
    from mvcore.interop.lightning_pose_models import import_lightning_pose

    result = import_lightning_pose(args.lp_model_dir, args.out_dir, checkpoint=args.checkpoint,
                                   data_dir=args.data_dir, overrides=args.overrides)
    where = shlex.quote(str(result.model_dir))
    resume = (f"continue its training: mvcore train {where}/config.yaml --resume {where} "
              "--set training.max_epochs=N" if result.resumable else
              f"fine-tune it: mvcore train {where}/config.yaml --set model.checkpoint={where} "
              "--output NEW_DIR")
    print(f"{result.summary()}; next: mvcore predict {where} --videos DIR, or {resume}")
    return 0
