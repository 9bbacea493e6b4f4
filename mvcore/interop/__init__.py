"""Models and files of other tools brought into mvcore (``lightning_pose_models``)."""
