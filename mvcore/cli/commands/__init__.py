"""One module per sub-command. Each defines ``register(subparsers)`` which adds its parser and
sets ``func`` (called with the parsed arguments, returns an exit code)."""
