"""The steps a user runs, end to end: ``train`` fits a model and then reports on it.

``mvcore.training`` fits and imports nothing above it; ``mvcore.predict`` predicts and
reports; this module runs one after the other, which is all ``mvcore train`` does.
"""

from __future__ import annotations

from pathlib import Path

from mvcore.config.schema import MvConfig
from mvcore.data.project import MultiviewProject
from mvcore.data.sessions import find_sessions, prediction_video_dir
from mvcore.errors import ConfigError
from mvcore.plugin.components import load_components
from mvcore.predict.report import untrained_metrics, write_report
from mvcore.predict.video import predict_videos
from mvcore.training.fit import fit, prepare_training, resolve_model_dir, save_run_info

__all__ = ["train"]


def train(config: MvConfig, output_dir: str | None = None, resume: str | None = None) -> Path:
    """Check and build the run (nothing is written if that fails), fit, then write the
    report (predictions on the labelled frames, metrics, figures) and, with
    ``eval.predict_vids_after_training``, predict the videos (labelled videos too with
    ``eval.save_vids_after_training``); returns the model directory."""
    components = load_components()
    project = MultiviewProject.from_config(config)
    if config.eval.predict_vids_after_training:  # found wanting now, not after hours
        videos = prediction_video_dir(config)
        if videos is None:
            raise ConfigError("eval.predict_vids_after_training: no videos to predict; set "
                              "eval.test_videos_directory or data.video_dir")
        find_sessions(videos, list(project.view_names), sync=config.data.video_sync)
    module, data_module = prepare_training(config, components, project, resume=bool(resume))
    model_dir = resolve_model_dir(config, output_dir, resume)
    model_dir.mkdir(parents=True, exist_ok=True)
    save_run_info(config, components, module.context, model_dir)
    baseline = untrained_metrics(module, data_module, project, model_dir, resume)
    if fit(config, module, data_module, model_dir, resume):
        write_report(module, data_module, project, model_dir, baseline)
        if config.eval.predict_vids_after_training:
            predict_videos(model_dir, labeled_video=config.eval.save_vids_after_training,
                           overwrite=True)
    return model_dir
