"""Where the real datasets are: ``../shared/data`` beside the repository (as in CI)."""

from pathlib import Path

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
MOUSE4CAM = SHARED_DATA / "mouse4cam"
MIRROR_MOUSE = SHARED_DATA / "mirror-mouse-example"
