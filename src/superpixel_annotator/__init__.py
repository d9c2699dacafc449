"""Annotate 3D medical images by superpixels in the browser.

``core`` (volumes, superpixels, annotation, editing, overlays, meshes) does not import Dash;
``VolumeAnnotator`` and ``create_app`` load the Dash layer (``web``) on first use, and
``serve`` runs servers.
"""

from .core.annotation import Annotation
from .core.image_files import Limits, VolumeError
from .core.palette import DEFAULT_LABELS, LabelClass
from .core.segmentation_io import Segmentation, read_segmentation, save_segmentation
from .core.superpixels import Superpixels, compute_superpixels, load_or_compute_superpixels
from .core.volume import Volume, load_modalities, load_volume, read_volume_bytes

__version__ = "0.1.0"

_DASH_LAYER = {"VolumeAnnotator": "web.annotator", "create_app": "web.app"}

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
