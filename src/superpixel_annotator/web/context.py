"""What the features of one annotator share: its ids, the cases it serves, its labels and
limits, and how a session's stores name a case.

A session's ``case`` store holds :func:`case_data`; the annotation travels in the
``annotation`` store as a state string (see :class:`~..core.annotation.Annotation`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import dash
import numpy as np
from dash import Output

from ..core.annotation import AnnotationStateError
from ..core.cases import Case, CaseNotFoundError, CaseStore
from ..core.editing import PREVIEW_VALUE, EditSession, Segmentations
from ..core.image_files import Limits
from ..core.overlays import indexed_png_uri, label_palette
from ..core.palette import LabelClass
from ..core.superpixels import DEFAULT_PARAMS
from ..pacs.dicomweb import DicomWebSource
from ..store.workspace import DatasetWorkspace
from .ids import AnnotatorIds
from .jobs import JobSlots
from .limits import DEFAULT_SERVER_LIMITS, ServerLimits

SIZE_OPTIONS = {"Fine": 3.5, "Medium": DEFAULT_PARAMS["size"], "Coarse": 6.5}
# The colour of what Fill proposes before the user accepts it.
PREVIEW_COLOR = "#ffffff"
# What a user sees when the session's scan is gone from the server (its cache is bounded).
CASE_GONE = (
    "This scan is no longer on the server; open it again, and your annotation of it comes "
    "back from this browser."
)


@dataclass(frozen=True, eq=False)
class AnnotatorContext:
    """One annotator instance, as its callbacks see it.

    Attributes
    ----------
    ids : AnnotatorIds
        Its component ids.
    cases : CaseStore
        The cases it serves, by key.
    cache_dir : Path
        Where superpixels and opened scans are cached.
    labels : tuple of LabelClass
        The label palette.
    limits : Limits
        The largest upload accepted.
    segmentations : Segmentations
        Recent label volumes, shared by every feature that shows or saves them.
    server_limits : ServerLimits
        The bounds of uploads and of jobs at once.
    workspace : DatasetWorkspace or None
        The dataset annotated, with its labels on the server; ``None``: single scans.
    pacs : DicomWebSource or None
        The PACS whose series users search, open and save segmentations to; ``None``: no
        PACS.
    """

    ids: AnnotatorIds
    cases: CaseStore
    cache_dir: Path
    labels: tuple[LabelClass, ...]
    limits: Limits
    segmentations: Segmentations
    server_limits: ServerLimits = DEFAULT_SERVER_LIMITS
    workspace: DatasetWorkspace | None = None
    pacs: DicomWebSource | None = None

    @property
    def jobs(self) -> JobSlots:
        """The turns of superpixel jobs, shared through the cache directory."""
        limits = self.server_limits
        return JobSlots(self.cache_dir / "jobs", limits.max_jobs, limits.queue_seconds)

    @property
    def label_values(self) -> frozenset[int]:
        """The values of the palette's labels."""
        return frozenset(label.value for label in self.labels)

    @cached_property
    def palette(self) -> np.ndarray:
        """The overlay colours: the labels' and :data:`PREVIEW_COLOR` for Fill proposals."""
        preview = LabelClass(PREVIEW_VALUE, "Fill preview", PREVIEW_COLOR)
        return label_palette((*self.labels, preview))

    def case_of(self, case_data) -> Case:
        """The case a session's case store names.

        Raises
        ------
        CaseNotFoundError
            When it names none this server knows.
        """
        key = case_data.get("key") if isinstance(case_data, dict) else None
        return self.cases.get(key)

    def shown_case(self, case_data) -> Case:
        """The case a session shows; no update when the server no longer has it."""
        try:
            return self.case_of(case_data)
        except CaseNotFoundError:
            raise dash.exceptions.PreventUpdate from None

    def edit_session(self, case_data, state, preview=None) -> EditSession:
        """The session's annotation of its case; no update when either is unusable."""
        try:
            return EditSession(self.shown_case(case_data), state, self.label_values, preview)
        except AnnotationStateError:
            raise dash.exceptions.PreventUpdate from None

    def resolve(self, case_data, modality) -> tuple[Case, int]:
        """The session's case and a modality of it (see :data:`.slicer.CaseResolver`)."""
        case = self.shown_case(case_data)
        return case, valid_modality(case, modality)

    def overlay_uri(self, labels: np.ndarray) -> str | None:
        """A slice of labels as an overlay PNG data URI (``None`` when empty)."""
        return indexed_png_uri(labels, self.palette)


def valid_modality(case: Case, modality) -> int:
    """``modality`` (a JSON value from the browser) when it names a volume of the case, else 0."""
    valid = isinstance(modality, int) and 0 <= modality < len(case.volumes)
    return modality if valid else 0


def size_choice(case: Case) -> str | None:
    """The value of the superpixel size menu that ``case`` was computed with; ``None`` when
    its superpixels are of another size (precomputed ones)."""
    size = case.superpixels.params.get("size")
    return str(size) if size in SIZE_OPTIONS.values() else None


def size_option(value) -> float | None:
    """The superpixel size a size menu value names; ``None`` when it names none of
    :data:`SIZE_OPTIONS`."""
    try:
        size = float(value)
    except (TypeError, ValueError):
        return None
    return size if size in SIZE_OPTIONS.values() else None


def case_data(
    case: Case,
    *,
    state: str | None = None,
    restore: bool = False,
    previous=None,
    initial: bool = False,
    dataset: dict | None = None,
) -> dict:
    """What a session's case store holds to show ``case``.

    ``state`` is the annotation to start from; with ``restore`` the one saved in the
    browser for this case wins. ``previous`` is the case data an undo goes back to.
    ``size`` is the superpixel size menu's value for the case (see :func:`size_choice`).
    ``initial`` marks the case a page starts on, which the browser does not save as the
    case shown (see ``restoreCase`` in ``js/annotator.js``). ``dataset`` names the dataset
    case shown (see :func:`~.callbacks.dataset.dataset_data`). A case read from DICOM
    carries its ``former_key`` (:attr:`Case.former_key`), under which the browser finds an
    annotation saved before the key changed.
    """
    data = {
        "key": case.key,
        **({"former_key": case.former_key} if case.former_key else {}),
        "shape": list(case.shape),
        "size": size_choice(case),
        "state": state,
        "restore": restore,
        "previous": previous,
        "initial": initial,
    }
    if dataset is not None:
        data["dataset"] = dataset
    return data


def shown_name(case: Case, case_data) -> str:
    """The name of the scan a session shows: its dataset case's, else its first modality's."""
    dataset = case_data.get("dataset") if isinstance(case_data, dict) else None
    if not isinstance(dataset, dict) or dataset.get("pending"):
        return case.volume.name
    return str(dataset.get("name"))


def message_outputs(ids: AnnotatorIds) -> dict:
    """The message bar's outputs, which several features write."""
    return {
        "message": Output(ids["message"], "children", allow_duplicate=True),
        "show_message": Output(ids["message"], "is_open", allow_duplicate=True),
        "message_color": Output(ids["message"], "color", allow_duplicate=True),
    }


def no_message() -> dict:
    """The message bar's outputs left as they are."""
    return dict.fromkeys(("message", "show_message", "message_color"), dash.no_update)


def message(text: str, color: str = "info") -> dict:
    """The message bar's outputs showing ``text``."""
    return {"message": text, "show_message": True, "message_color": color}


def one_line(error: Exception) -> str:
    """The first line of an error's message, for the message bar."""
    text = str(error.args[0]) if error.args else type(error).__name__
    return text.splitlines()[0] if text else type(error).__name__
