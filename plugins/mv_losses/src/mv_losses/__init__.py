"""mv-losses: the losses of the multi-view method as an mvcore plugin."""

__version__ = "0.1.0"
