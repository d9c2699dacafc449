"""Annotate 3D medical images by superpixels in the browser.

The core (volumes, superpixels, annotation, overlays, meshes) does not import Dash;
``VolumeAnnotator`` and ``create_app`` load the Dash layer on first use.
"""

from .annotation import Annotation
from .palette import DEFAULT_LABELS, LabelClass
from .superpixels import Superpixels, compute_superpixels, load_or_compute_superpixels
from .volume import (
    Limits,
    Segmentation,
    Volume,
    VolumeError,
    load_modalities,
    load_volume,
    read_segmentation,
    read_volume_bytes,
    save_segmentation,
)

_DASH_LAYER = {"VolumeAnnotator": "annotator", "create_app": "app"}

__all__ = [
    "DEFAULT_LABELS",
    "Annotation",
    "LabelClass",
    "Limits",
    "Segmentation",
    "Superpixels",
    "Volume",
    "VolumeAnnotator",
    "VolumeError",
    "compute_superpixels",
    "create_app",
    "load_modalities",
    "load_or_compute_superpixels",
    "load_volume",
    "read_segmentation",
    "read_volume_bytes",
    "save_segmentation",
]


def __getattr__(name: str):
    if name in _DASH_LAYER:
        from importlib import import_module

        return getattr(import_module(f".{_DASH_LAYER[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
