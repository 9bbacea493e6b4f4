"""Entry point of mv-losses: registers every loss by lazy ``module:Class`` string, so nothing
heavy is imported until a config uses a loss."""

from mvcore import hookimpl

LOSSES = {
    "heatmap_mse": "mv_losses.heatmap:HeatmapMSELoss",
}


@hookimpl
def mvcore_register_losses(registry):
    for name, target in LOSSES.items():
        registry.add(target, name=name)
