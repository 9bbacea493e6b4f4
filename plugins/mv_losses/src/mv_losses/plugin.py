"""Entry point of mv-losses: registers every loss by lazy ``module:Class`` string, so nothing
heavy is imported until a config uses a loss."""

from mvcore import hookimpl

LOSSES = {
    "heatmap_mse": "mv_losses.heatmap:HeatmapMSELoss",
    "heatmap_kl": "mv_losses.heatmap:HeatmapKLLoss",
    "heatmap_js": "mv_losses.heatmap:HeatmapJSLoss",
    "pca_singleview": "mv_losses.pca:PCASingleviewLoss",
    "pca_multiview": "mv_losses.pca:PCAMultiviewLoss",
    "temporal": "mv_losses.temporal:TemporalLoss",
    "supervised_pairwise_projections": "mv_losses.projection:PairwiseProjectionsLoss",
    "supervised_reprojection_heatmap_mse": "mv_losses.projection:ReprojectionHeatmapLoss",
    "multiview_reprojection": "mv_losses.consistency:MultiviewReprojectionLoss",
}


@hookimpl
def mvcore_register_losses(registry):
    for name, target in LOSSES.items():
        registry.add(target, name=name)
