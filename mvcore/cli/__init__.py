"""The ``mvcore`` command line."""
