"""Every component id of one annotator instance.

Ids are ``{id}-{name}`` for the instance and ``{id}-{name}-{axis}`` for each of the three
views. They are a contract: host apps may target them, and the browser code gets them as
data (:meth:`AnnotatorIds.for_browser`) instead of building them again.
"""

from __future__ import annotations

from ..core.annotation import LEVELS

STROKE_LEVELS = LEVELS[1:]
"""The stroke levels the toolbar's switches choose, each its part; coarse when none is on."""
INSTANCE_PARTS = (
    "root",
    # scan bar
    "name",
    "upload",
    "open-segmentation",
    "size",
    "progress",
    # toolbar
    "label",
    "undo",
    "redo",
    "fill",
    "fine",
    "grow",
    "brush",
    "download-button",
    # shown for a scan read from DICOM
    "download-seg-button",
    "help-button",
    "help",
    # display
    "show-boundaries",
    "show-annotation",
    "opacity",
    "contrast",
    "modality",
    # Fill proposal and messages
    "fill-bar",
    "fill-text",
    "fill-accept",
    "fill-discard",
    "message",
    # panels
    "show-3d",
    "view-3d",
    "annotation-3d",
    "show-statistics",
    "statistics",
    "statistics-table",
    "statistics-chart",
    "statistics-csv",
    "statistics-download",
    "annotation-statistics",
    # stores
    "annotation",
    "fill-preview",
    "case",
    "storage-prefix",
    "saved",
    "session",
    "browser-config",
    "shortcuts",
    "download",
    # datasets: the dataset case shown and its saved version, requests to open one, and
    # whether another user holds it (strokes are then refused in the browser)
    "dataset-case",
    "dataset-open",
    "read-only",
)
DATASET_PARTS = (
    "cases",
    "case-table",
    "case-pages",
    "case-filter",
    "case-progress",
    "case-previous",
    "case-next",
    "case-done",
    "save-status",
    "keep-mine",
    "versions",
    "version-restore",
    "export",
    "export-download",
    "case-refresh",
)
"""The parts an annotator of a dataset has besides :data:`INSTANCE_PARTS`: the case list,
its navigation, the versions and the export."""
PACS_PARTS = (
    "pacs-patient",
    "pacs-since",
    "pacs-until",
    "pacs-search",
    "pacs-studies",
    "pacs-study",
    "pacs-series",
    "pacs-series-item",
    "pacs-open",
    "pacs-save",
)
"""The parts an annotator of a PACS (DICOMweb) has: the study search, the study and series
lists (``pacs-study`` and ``pacs-series-item`` are the ``type`` of their items' pattern
ids), the open request and Save to PACS."""
VIEW_PARTS = (
    "view",
    "annotation-slices",
    "boundary-slice",
    "stale-request",
    "stroke",
    "ids-request",
    "ids",
    "stroke-config",
    "geometry",
    "thumbnail-request",
    "boundary-request",
)


class AnnotatorIds:
    """The component ids of the annotator whose id is ``prefix``.

    ``ids["case"]`` is the instance's ``case`` store, ``ids.view("stroke", 0)`` the axial
    view's stroke store; a name that is not a part raises ``KeyError``, so a typo cannot
    address a component that does not exist. An annotator of a ``dataset`` has the
    :data:`DATASET_PARTS` too, one of a ``pacs`` the :data:`PACS_PARTS`.
    """

    def __init__(self, prefix: str, *, dataset: bool = False, pacs: bool = False) -> None:
        self.prefix = prefix
        self.parts = (
            INSTANCE_PARTS + (DATASET_PARTS if dataset else ()) + (PACS_PARTS if pacs else ())
        )

    def __getitem__(self, name: str) -> str:
        if name not in self.parts:
            raise KeyError(f"no annotator part {name!r}")
        return f"{self.prefix}-{name}"

    def view(self, name: str, axis: int) -> str:
        """The id of part ``name`` of the view along ``axis``."""
        if name not in VIEW_PARTS or axis not in (0, 1, 2):
            raise KeyError(f"no view part {name!r} of axis {axis!r}")
        return f"{self.prefix}-{name}-{axis}"

    def views(self, name: str) -> list[str]:
        """The ids of part ``name`` of the three views, axial first."""
        return [self.view(name, axis) for axis in range(3)]

    def for_browser(self) -> dict:
        """Every instance id by part name, as the browser code reads them."""
        return {name: self[name] for name in self.parts}
