"""Training: the Lightning module, callbacks and the ``mvcore train`` orchestration."""
