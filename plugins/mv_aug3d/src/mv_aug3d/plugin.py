"""Entry point of mv-aug3d: registers the 3D augmenter and the 2D per-view pipelines by lazy
``module:Class`` strings, so kornia is imported only when a config uses one."""

from mvcore import hookimpl

AUGMENTERS = {
    "imgaug_3d": "mv_aug3d.aug3d:Augment3D",
    "dlc": "mv_aug3d.pipelines:DLCPipeline",
    "default": "mv_aug3d.pipelines:NoAugmentation",
    "none": "mv_aug3d.pipelines:NoAugmentation",
}


@hookimpl
def mvcore_register_augmenters(registry):
    for name, target in AUGMENTERS.items():
        registry.add(target, name=name)
