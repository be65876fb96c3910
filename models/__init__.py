"""The shipped, trained models: ``{name}/{version}/`` folders of the model registry (classifiers/registry.py),
installed with the package so every installation (wheel, image, editable checkout) classifies out of the box.
``make models`` regenerates them."""

from pathlib import Path


def shipped_models() -> Path:
    """The folder of the shipped models (inside the installed package)."""
    return Path(__file__).resolve().parent
