"""Multi-view project data: label CSVs, images, bounding boxes, heatmaps, datasets."""
