"""The embeddable annotator: three linked slice views, labels, undo/redo, 3D view and download.

Server-side, an annotator holds only read-only data per scan (a :class:`Case`: intensities,
superpixels), found by the key that the user's session names. The annotation itself travels
with the session in a ``dcc.Store`` as a compact string (see :class:`Annotation`), and is
saved in the browser's local storage under the annotator's id and the case key. So any
worker process can handle any request, each user can open a scan of their own, and a
reload or a server restart loses nothing.

This class only assembles the instance: its ids, slicers and layout, and each feature's
callbacks (``callbacks/``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import dash

from ..core.brush import BRUSH_RADIUS_MM
from ..core.cache import cache_directory, cache_limit_bytes
from ..core.cases import Case, CaseStore, open_case
from ..core.editing import Segmentations
from ..core.geometry import SAMPLES_PER_VOXEL
from ..core.image_files import Limits
from ..core.palette import DEFAULT_LABELS, LabelClass
from ..core.refinement import load_kernels
from ..core.superpixels import Superpixels
from ..core.volume import Volume, check_modalities
from ..pacs.dicomweb import DicomWebSource
from ..store.workspace import DatasetWorkspace
from .callbacks import browser, dataset, editing, overlays, panels, scans
from .callbacks import pacs as pacs_feature
from .callbacks.dataset import pending_dataset
from .context import AnnotatorContext
from .ids import AnnotatorIds
from .layout import LayoutBuilder
from .limits import DEFAULT_SERVER_LIMITS, ServerLimits
from .scripts import register_scripts
from .security import answer_malformed_callbacks, bound_logs, limit_request_body
from .slicer import SessionSlicer


class VolumeAnnotator:
    """A superpixel annotator, to place in any Dash layout.

    Each user can open scans of their own (upload) and switch modality or superpixel size;
    the scan given here is what every session starts with.

    Parameters
    ----------
    app : dash.Dash
        The app to register this instance's callbacks with.
    volume : Volume or sequence of Volume
        The scan to start with: one volume, or co-registered modalities (the first shown).
    id : str
        Prefix of every component id of this instance; unique per page.
    superpixels : Superpixels, optional
        Precomputed superpixels; by default computed (or read from the disk cache).
    labels : sequence of LabelClass
        The label palette.
    cache_dir : str or Path, optional
        Where superpixels and opened scans are cached (see :func:`cache_directory`); worker
        processes serving one app must share it.
    limits : Limits, optional
        Maximum size of uploaded files; default ``Limits()``.
    server_limits : ServerLimits, optional
        Most files and bytes per upload and superpixel jobs at once. The largest upload
        bounds every request body (Flask's ``MAX_CONTENT_LENGTH``) unless the app has a
        bound already.
    background_manager : dash background callback manager, optional
        Runs superpixel computation for uploads; default a ``DiskcacheManager`` in the cache
        directory (no extra service). Pass a ``CeleryManager`` to use Celery workers.
    workspace : DatasetWorkspace, optional
        A dataset to annotate case by case, its labels saved on the server (see
        :func:`open_workspace`); ``volume`` is then one of its cases, shown until the
        browser opens its own.
    pacs : DicomWebSource, optional
        A PACS (DICOMweb server): the page gets a study browser that opens its series, and
        Save to PACS, which stores the labels back as a DICOM Segmentation.

    Attributes
    ----------
    layout : dash component
        The annotator's layout; place it anywhere in the app's layout.
    initial_case : Case
        The scan every session starts with.
    ids : AnnotatorIds
        Every component id of this instance.
    """

    def __init__(
        self,
        app: dash.Dash,
        volume: Volume | Sequence[Volume],
        id: str,
        *,
        superpixels: Superpixels | None = None,
        labels: Sequence[LabelClass] = DEFAULT_LABELS,
        cache_dir: str | Path | None = None,
        limits: Limits | None = None,
        server_limits: ServerLimits = DEFAULT_SERVER_LIMITS,
        background_manager=None,
        workspace: DatasetWorkspace | None = None,
        pacs: DicomWebSource | None = None,
    ) -> None:
        self.id = id
        self.ids = AnnotatorIds(id, dataset=workspace is not None, pacs=pacs is not None)
        volumes = [volume] if isinstance(volume, Volume) else list(volume)
        check_modalities(volumes)
        cache_limit_bytes()  # a malformed limit stops the start, not the first upload
        cache_dir = cache_directory(cache_dir)
        self.initial_case = open_case(volumes, cache_dir, superpixels)
        load_kernels(len(volumes))
        cases = CaseStore(cache_dir, pinned=[self.initial_case])
        self.context = AnnotatorContext(
            ids=self.ids,
            cases=cases,
            cache_dir=cache_dir,
            labels=tuple(labels),
            limits=limits or Limits(),
            segmentations=Segmentations(cases),
            server_limits=server_limits,
            workspace=workspace,
            pacs=pacs,
        )
        limit_request_body(app.server, server_limits.request_bytes(self.context.limits))
        bound_logs(app.server)
        answer_malformed_callbacks(app.server)
        register_scripts()
        session = (self.ids["case"], self.ids["modality"])
        self.slicers = [
            SessionSlicer(
                app,
                self.initial_case,
                axis,
                id,
                session,
                self.context.resolve,
                self.ids.view("thumbnail-request", axis),
            )
            for axis in range(3)
        ]
        self.layout = LayoutBuilder(
            self.ids,
            self.labels,
            self.initial_case,
            self.slicers,
            [self._stroke_config(axis) for axis in range(3)],
            self._browser_config(app),
            dataset=pending_dataset(workspace.names[0]) if workspace else None,
            pacs=pacs.url if pacs else None,
        ).build()
        manager = self._manager(background_manager)
        scans.register(app, self.context, self.slicers, manager)
        if workspace is not None:
            dataset.register(app, self.context, manager)
        if pacs is not None:
            pacs_feature.register(app, self.context)
        editing.register(app, self.context, self.slicers)
        overlays.register(app, self.context)
        panels.register(app, self.context)
        browser.register(app, self.ids, self.slicers)

    @property
    def labels(self) -> tuple[LabelClass, ...]:
        """The label palette."""
        return self.context.labels

    @property
    def limits(self) -> Limits:
        """The largest upload accepted."""
        return self.context.limits

    @property
    def cache_dir(self) -> Path:
        """Where superpixels and opened scans are cached."""
        return self.context.cache_dir

    @property
    def volume(self) -> Volume:
        """The first modality of the scan every session starts with."""
        return self.initial_case.volume

    @property
    def superpixels(self) -> Superpixels:
        """The superpixels of the scan every session starts with."""
        return self.initial_case.superpixels

    def case_of(self, case_data) -> Case:
        """The case a session's ``case`` store names (see :meth:`AnnotatorContext.case_of`)."""
        return self.context.case_of(case_data)

    def _manager(self, background_manager):
        if background_manager is not None:
            return background_manager
        import diskcache

        return dash.DiskcacheManager(diskcache.Cache(self.cache_dir / "jobs"))

    def _stroke_config(self, axis: int) -> dict:
        """What a view's stroke handlers, overlays, thumbnail request and slider moves need
        to know (see ``js/strokes.js``, and ``showOverlays``, ``requestThumbnails`` and
        ``publishMove`` in ``js/annotator.js``)."""
        slicer, ids = self.slicers[axis], self.ids
        return {
            "graph": slicer.graph.id,
            "slider": slicer.slider.id,
            "state": slicer.state.id,
            "rateLimit": slicer.rate_limit_state,
            "slices": ids.view("annotation-slices", axis),
            "case": ids["case"],
            "label": ids["label"],
            "fine": ids["fine"],
            "grow": ids["grow"],
            "brush": ids["brush"],
            "brushRadius": BRUSH_RADIUS_MM,
            "opacity": ids["opacity"],
            "stroke": ids.view("stroke", axis),
            "idsRequest": ids.view("ids-request", axis),
            "thumbnailRequest": ids.view("thumbnail-request", axis),
            "readOnly": ids["read-only"],
            "colors": {str(label.value): label.color for label in self.labels},
            "samples": SAMPLES_PER_VOXEL,
        }

    def _browser_config(self, app: dash.Dash) -> dict:
        """What the instance's browser code needs to know (see ``js/annotator.js`` and
        ``js/dataset.js``)."""
        return {
            "id": self.id,
            "ids": self.ids.for_browser(),
            "labels": [label.value for label in self.labels],
            "stale": overlays.STALE,
            "saveUrl": dataset.save_url(app, self.id),
        }
