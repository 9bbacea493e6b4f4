"""Entry point of mv-vit: registers the multi-view transformer backbone."""

from mvcore import hookimpl


@hookimpl
def mvcore_register_backbones(registry):
    pass  # filled in by the MVT implementation
