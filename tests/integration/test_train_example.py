"""`mvcore train` on the built-in example writes every promised output (CLI, end to end)."""

import json

import pandas as pd
import pytest
import yaml

from mvcore.data.csv_io import read_keypoints_csv

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(trained_example):
    return trained_example


def test_run_directory_holds_config_plugins_checkpoints_logs_and_figures(trained):
    for name in ("config.yaml", "plugins.json", "context.json", "untrained_metrics.json",
                 "metrics.csv", "loss_curve.png", "checkpoints/last.ckpt",
                 "checkpoints/best.ckpt", "logs/metrics.csv"):
        assert (trained / name).is_file(), name
    assert list((trained / "logs" / "tensorboard").glob("events.out.tfevents.*"))
    assert len(list((trained / "labeled_frames").glob("*.png"))) >= 1
    config = yaml.safe_load((trained / "config.yaml").read_text())
    assert config["training"]["max_epochs"] == 2  # the resolved config, overrides applied
    assert config["losses"]["supervised_pairwise_projections"]["log_weight"] == 0.5
    plugins = json.loads((trained / "plugins.json").read_text())["plugins"]
    assert {"mv-losses", "mv-vit"} <= set(plugins)


def test_prediction_csvs_have_dlc_header_likelihood_and_set_column(trained):
    for view in ("cam_a", "cam_b", "cam_c"):
        table = pd.read_csv(trained / f"predictions_{view}.csv", header=[0, 1, 2], index_col=0)
        assert table.shape[0] == 20  # every labelled row (40 frames, every 2nd labelled)
        keypoint_columns = table.drop(columns="set", level=0).columns
        assert set(keypoint_columns.get_level_values(2)) == {"x", "y", "likelihood"}
        sets = table.xs("set", axis=1, level=0).iloc[:, 0]
        assert set(sets) <= {"train", "validation", "test"} and "train" in set(sets)
        index, names, coords_xy, likelihood = read_keypoints_csv(
            trained / f"predictions_{view}.csv")
        assert coords_xy.shape == (20, 10, 2) and likelihood.shape == (20, 10)
        errors = pd.read_csv(trained / f"predictions_{view}_pixel_error.csv", index_col=0)
        assert list(errors.columns) == [*names, "set"]
        assert (trained / f"predictions_{view}_prediction_reprojection_error.csv").is_file()
        assert (trained / f"predictions_{view}_pca_multiview_error.csv").is_file()


def test_metrics_include_untrained_baseline_and_reprojection_and_3d_losses_logged(trained):
    metrics = pd.read_csv(trained / "metrics.csv").set_index("metric")["value"]
    for name in ("untrained_pixel_error_mean", "train_pixel_error_mean",
                 "validation_pixel_error_mean", "train_fraction_triangulated"):
        assert name in metrics and metrics[name] == metrics[name]  # present and not NaN
    # the reprojection error exists where confident views were triangulated (a briefly
    # trained model may have none: tests/core/predict/test_evaluate.py pins the quantity)
    reprojected = metrics["train_prediction_reprojection_error_median"]
    assert (reprojected == reprojected) == (metrics["train_fraction_triangulated"] > 0)
    log = pd.read_csv(trained / "logs" / "metrics.csv")
    pairwise = "train_supervised_pairwise_projections_loss_step"
    for column in ("train_heatmap_mse_loss_step", pairwise, "val_pixel_error",
                   "val_supervised_loss_annealed", "anneal_weight"):
        assert column in log.columns, column
    assert log[pairwise].dropna().gt(0).all()
    pca = [c for c in log.columns if c.startswith("train_pca_multiview_loss")]
    assert pca and log[pca[0]].dropna().size > 0  # on the unlabelled video clips


def test_loss_curve_plots_the_logged_training_loss(trained, tmp_path):
    import matplotlib

    from mvcore.predict.plots import plot_loss_curve

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    captured = {}
    original = plt.Figure.savefig

    def spy(fig, *args, **kwargs):
        captured["lines"] = [len(ax.get_lines()) for ax in fig.axes]
        return original(fig, *args, **kwargs)

    plt.Figure.savefig = spy
    try:
        assert plot_loss_curve(trained / "logs" / "metrics.csv", tmp_path / "curve.png")
    finally:
        plt.Figure.savefig = original
    assert captured["lines"] == [1, 1]  # both panels have data
