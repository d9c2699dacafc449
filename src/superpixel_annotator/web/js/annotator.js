// Browser-side callbacks of the superpixel annotator (see web/callbacks/browser.py), apart
// from strokes (strokes.js). Constants and component ids come from the server as data: the
// instance's "browser-config" store ({id, ids, labels, stale}) and each view's stores.
(function () {
    'use strict';
    const noUpdate = () => window.dash_clientside.no_update;
    // The ticks of dash-slicer's timer it waits for before it first publishes a position.
    const SETTLING_TICKS = 5;
    // dash-slicer's delay between a slider's last move and the publication of its position.
    const MOVE_DEBOUNCE_MS = 200;
    // The longest a view waits for an idle browser before it asks for its thumbnails.
    const IDLE_TIMEOUT_MS = 2000;
    // The "id.property" names of the inputs that triggered the running callback.
    const triggeredProps = () => window.dash_clientside.callback_context.triggered.map(
        (input) => input.prop_id);

    // A view's overlays: the annotation slice (unless stale) and the superpixel borders, as
    // the view's extra traces. An unchanged overlay must not cost the view a redraw. When
    // new annotation slices changed them, the view's figure is composed here too (see
    // composeFigure), so that the server's answer to an edit is drawn in this round of
    // callbacks rather than in the next; after a move of the slider, the new slice's image
    // comes with that next round, and so does the figure. The stroke's canvas is cleared
    // once the view is redrawn (strokes.js).
    function showOverlays(index, annotationSlices, boundary, showBoundaries, showAnnotation,
                          opacity, geometry, current, config, imageTraces, indicatorTraces,
                          figure, viewConfig) {
        const triggered = triggeredProps();
        const moved = triggered.includes(viewConfig.slider + '.value');
        const answered = triggered.includes(viewConfig.slices + '.data');
        const annotation = annotationSlices ? annotationSlices[index] : null;
        const traces = [];
        const base = {type: 'image', hoverinfo: 'skip', x0: geometry.x0, y0: geometry.y0,
                      dx: geometry.dx, dy: geometry.dy};
        if (showAnnotation && annotation && annotation !== config.stale) {
            traces.push({...base, source: annotation, opacity: opacity, name: 'annotation'});
        }
        if (showBoundaries && boundary && boundary.index === index && boundary.uri) {
            traces.push({...base, source: boundary.uri, name: 'superpixels'});
        }
        const key = (list) => JSON.stringify(
            (list || []).map((t) => [t.name, t.source, t.opacity]));
        if (key(traces) === key(current)) { return [noUpdate(), noUpdate()]; }
        window.dash_clientside.superpixel_annotator.clearAfterRedraw(viewConfig);
        if (moved || !answered) { return [traces, noUpdate()]; }
        return [traces, {...figure, data: viewTraces(imageTraces, traces, indicatorTraces)}];
    }

    // The view's figure, composed as dash-slicer composes it, from the slice's image, the
    // extra traces and the shown position indicators; it replaces dash-slicer's own (see
    // web/slicer.py). A figure that already has these very traces is left alone: after an
    // edit, showOverlays drew them, and dash-slicer drew the view a second time.
    function composeFigure(imageTraces, indicatorTraces, extraTraces, info, figure) {
        const data = viewTraces(imageTraces, extraTraces, indicatorTraces);
        const drawn = (figure && figure.data) || [];
        if (data.length === drawn.length && data.every((trace, i) => trace === drawn[i])) {
            return noUpdate();
        }
        return {...figure, data: data};
    }

    function viewTraces(imageTraces, extraTraces, indicatorTraces) {
        const shownIndicators = (indicatorTraces || []).filter((trace) => trace.line.color);
        return [...(imageTraces || []), ...(extraTraces || []), ...shownIndicators];
    }

    // A view that shows a slice marked stale asks the server for it (with a time stamp, so
    // that asking twice for the same slice still counts). Not part of showOverlays: Dash
    // does not call a callback again for the answer to a request it made itself.
    function requestStale(index, annotationSlices, config) {
        if (annotationSlices && annotationSlices[index] === config.stale) {
            return [index, performance.now()];
        }
        return noUpdate();
    }

    // A view asks the server for the superpixel borders of the slice it moved to only while
    // they are shown: asked for and refused, every move cost a request, and Dash held the
    // view's new image until the refusal came back.
    function requestBorders(state, show) {
        return show ? state : noUpdate();
    }

    // A view that has none asks for dash-slicer's thumbnails (see web/slicer.py) once a
    // full-resolution slice has arrived, when the browser is next idle, and once until they
    // come (a slice received meanwhile asked again, and the thumbnails came twice). It sets
    // the request rather than returning it: Dash would hold the view's image until an
    // output of this callback settled, since the thumbnails feed the image too.
    const thumbnailsAsked = new Set();
    function requestThumbnails(fullSlice, thumbnails, viewConfig) {
        const view = viewConfig.thumbnailRequest;
        if (thumbnails && thumbnails.length) {
            thumbnailsAsked.delete(view);
            return;
        }
        if (thumbnailsAsked.has(view)) { return; }
        thumbnailsAsked.add(view);
        const request = () => window.dash_clientside.set_props(view, {data: true});
        if (window.requestIdleCallback) {
            window.requestIdleCallback(request, {timeout: IDLE_TIMEOUT_MS});
        } else {
            setTimeout(request, 0);
        }
    }

    // dash-slicer publishes a view's position (its "state", from which the full-resolution
    // slice and the other views' indicators follow) from a 100 ms timer that waits five ticks
    // for Plotly to settle the axis ranges, and starts on the first relayout. The ranges are
    // given explicitly here, so the state is published at once when a view gets its geometry
    // (page load, another scan), and the five ticks are marked done: else the timer starts
    // on the views' first relayout and publishes the same position again about a second
    // after the page is usable, asking the server for every view's slice and borders again.
    // dash-slicer's private state is left alone: when its timer runs (another scan moves
    // the sliders), its state asks for the slice again, and that request, the newest, is
    // the one whose answer Dash keeps.
    function publishState(geometry, index, info, ticks) {
        return [viewState(index, info), ticks >= SETTLING_TICKS ? noUpdate() : SETTLING_TICKS];
    }

    // dash-slicer publishes a moved slider's position from its timer, 200 ms after the last
    // move: an arrow key or a click in another view showed the new slice in full resolution
    // about half a second later. A move that follows no other within that time, and not
    // made with a pointer held (a drag, whose stops dash-slicer publishes), is published at
    // once. It is published after this round of callbacks: published in the round, Dash
    // held the slice's thumbnail until the full slice came, since both feed the image. The
    // timer's publication of the same position is cancelled (dash-slicer's rate limiting
    // set it in the round), and the slice is noted as the one dash-slicer published last,
    // which it compares where a drag stops with.
    let pointerHeld = false;
    for (const [type, held] of [['pointerdown', true], ['pointerup', false],
                                ['pointercancel', false]]) {
        window.addEventListener(type, () => { pointerHeld = held; }, true);
    }
    const lastMoves = {};
    function publishMove(index, info, viewConfig) {
        const now = performance.now();
        const last = lastMoves[viewConfig.slider];
        lastMoves[viewConfig.slider] = now;
        if (pointerHeld || (last !== undefined && now - last < MOVE_DEBOUNCE_MS)) { return; }
        setTimeout(() => {
            if (lastMoves[viewConfig.slider] !== now) { return; }
            const rateLimit = window[viewConfig.rateLimit] = window[viewConfig.rateLimit] || {};
            rateLimit.timeout = 0;
            rateLimit.last_index = index;
            window.dash_clientside.set_props(viewConfig.state, {data: viewState(index, info)});
        }, 0);
    }

    function viewState(index, info) {
        const range = (axis) => [info.offset[axis] - 0.5 * info.stepsize[axis],
                                 info.offset[axis] + (info.size[axis] - 0.5) * info.stepsize[axis]];
        return {index: index, index_changed: true, xrange: range(0), yrange: range(1),
                zpos: info.offset[2] + index * info.stepsize[2], axis: info.axis,
                color: info.color};
    }

    const STORAGE_FULL = "This browser's storage is full: the annotation is no longer kept " +
        'in this browser, so a reload could lose the latest strokes. Download it to keep it, ' +
        "and clear this site's stored data of the cases you no longer need.";

    // A new annotation is saved in local storage for the case, and passed to the 3D view
    // and the statistics while they are shown (hidden, strokes cost them no request); a
    // panel switched on gets the annotation then. When the storage refuses it (full, or
    // turned off), the message bar says so after every change.
    function keepAnnotation(state, show3d, showStatistics, caseData, storagePrefix, config) {
        const triggered = triggeredProps();
        const changed = triggered.includes(config.ids.annotation + '.data');
        if (changed && typeof state === 'string' && caseData && typeof caseData.key === 'string') {
            try {
                window.localStorage.setItem(storagePrefix + caseData.key, state);
            } catch (error) {
                window.dash_clientside.set_props(config.ids.message, {
                    children: STORAGE_FULL, is_open: true, color: 'warning'});
            }
        }
        const pass = (show, part) => show && (changed || triggered.includes(
            config.ids[part] + '.value')) ? state : noUpdate();
        return [pass(show3d, 'show-3d'), pass(showStatistics, 'show-statistics')];
    }

    // Entering a case (page load, upload, new superpixel size, undo of that, restore) sets
    // the annotation: the one saved in local storage for this annotator and case when asked
    // to restore, else the one the case data hands over; every slice is then stale (rendered
    // when shown). It sets the superpixel size menu to the case's size. It saves the case's
    // key and size in local storage too, but for the case a page starts on: restoreCase
    // decides then. A case of a dataset is reconciled with this browser's copy instead
    // (enterDatasetCase in dataset.js), which also names the dataset case shown.
    function enterCase(caseData, storagePrefix, shownSize, config) {
        if (!caseData || typeof caseData.key !== 'string') {
            return Array(6).fill(noUpdate());
        }
        let state = caseData.state || null;
        let datasetCase = null;
        if (caseData.dataset) {
            const entered = window.dash_clientside.superpixel_annotator.enterDatasetCase(
                caseData, storagePrefix, config);
            state = entered.state;
            datasetCase = entered.datasetCase;
        }
        try {
            if (caseData.restore) {
                // A case read from DICOM had another key before DICOM instances counted in
                // it: an annotation saved under that one comes back, saved anew under this.
                const storage = window.localStorage;
                const former = caseData.former_key && storage.getItem(storagePrefix + caseData.former_key);
                state = storage.getItem(storagePrefix + caseData.key) || former || state;
            }
            if (!caseData.initial) {
                window.localStorage.setItem(storagePrefix + 'case', caseData.key);
                if (caseData.size) {
                    window.localStorage.setItem(storagePrefix + 'size', caseData.size);
                }
            }
        } catch (error) {}
        const slices = (n) => Array(n).fill(state ? config.stale : null);
        const size = caseData.size && caseData.size !== shownSize ? caseData.size : noUpdate();
        return [state, slices(caseData.shape[0]), slices(caseData.shape[1]),
                slices(caseData.shape[2]), size, datasetCase];
    }

    // On page load, what this browser showed last, when the page starts on something else:
    // the case's key (the server opens that case, whose annotation saved here comes back)
    // and the superpixel size (the server opens the case shown at that size when it no
    // longer knows the saved case). The saved case is asked for once: the case the page
    // starts on replaces it at once, and the case the server opens replaces that
    // (enterCase), so a case the server lost is not asked for again at every load. It is not
    // part of enterCase because Dash (4.4) does not call enterCase again for the case that
    // this request brings, a chain of updates that enterCase itself would have started.
    // A dataset's page opens its case by name instead (startDataset in dataset.js).
    function restoreCase(storagePrefix, caseData) {
        if (!caseData || typeof caseData.key !== 'string' || caseData.dataset) {
            return noUpdate();
        }
        const request = {};
        try {
            const storage = window.localStorage;
            const savedCase = storage.getItem(storagePrefix + 'case');
            const savedSize = storage.getItem(storagePrefix + 'size');
            if (savedCase && savedCase !== caseData.key) { request.case = savedCase; }
            if (savedSize && savedSize !== caseData.size) { request.size = savedSize; }
            storage.setItem(storagePrefix + 'case', caseData.key);
            if (!savedSize && caseData.size) {
                storage.setItem(storagePrefix + 'size', caseData.size);
            }
        } catch (error) {}
        return Object.keys(request).length ? request : noUpdate();
    }

    // Keyboard shortcuts go to the annotator the pointer was last pressed in (the first one
    // shown on the page before that).
    function installShortcuts(config) {
        const registry = window._superpixelAnnotators = window._superpixelAnnotators || {
            active: null, ids: []
        };
        if (!config || registry.ids.includes(config.id)) {
            return noUpdate();
        }
        if (!registry.ids.length) {
            document.addEventListener('pointerdown', (event) => {
                const root = event.target.closest && event.target.closest('[data-annotator]');
                if (root) { registry.active = root.dataset.annotator; }
            }, true);
        }
        registry.ids.push(config.id);
        document.addEventListener('keydown', (event) => onKey(event, registry, config));
        return noUpdate();
    }

    function onKey(event, registry, config) {
        // Annotators on pages that are not shown are not in the document.
        const shown = registry.ids.filter(
            (id) => document.querySelector('[data-annotator="' + id + '"]'));
        const active = shown.includes(registry.active) ? registry.active : shown[0];
        if (active !== config.id) { return; }
        const target = event.target;
        if (target && (target.isContentEditable || target.tagName === 'TEXTAREA' ||
                       (target.tagName === 'INPUT' && target.type === 'text'))) { return; }
        const key = event.key.toLowerCase();
        const modifier = event.ctrlKey || event.metaKey;
        const click = (part) => document.getElementById(config.ids[part]).click();
        const setLabel = (value) => window.dash_clientside.set_props(
            config.ids.label, {value: value});
        if (modifier && key === 'z' && !event.shiftKey) {
            click('undo');
        } else if (modifier && (key === 'y' || key === 'z')) {
            click('redo');
        } else if (!modifier && (key === 'f' || key === 'enter' || key === 'escape')) {
            const previewing = document.getElementById(config.ids['fill-bar'])
                .classList.contains('show');
            if (key === 'f' && !previewing) {
                click('fill');
            } else if (previewing) {
                click(key === 'escape' ? 'fill-discard' : 'fill-accept');
            } else {
                return;
            }
        } else if (!modifier && key === 's') {
            click('fine');
        } else if (!modifier && key === 'g') {
            click('grow');
        } else if (!modifier && key === 'b') {
            click('brush');
        } else if (!modifier && (key === 'n' || key === 'p') && config.ids['case-next']) {
            click(key === 'n' ? 'case-next' : 'case-previous');
        } else if (!modifier && (key === 'e' || key === '0')) {
            setLabel(0);
        } else if (!modifier && config.labels.includes(Number(key))) {
            setLabel(Number(key));
        } else {
            return;
        }
        event.preventDefault();
    }

    // Fine strokes, Grow strokes and the Brush are levels (web/ids.py, STROKE_LEVELS):
    // switching one on switches the others off.
    function oneStrokeLevel(...switches) {
        const unchanged = switches.map(() => noUpdate());
        if (switches.filter((value) => value === true).length < 2) { return unchanged; }
        const triggered = triggeredProps().map((name) => name.replace(/\.value$/, ''));
        const ids = window.dash_clientside.callback_context.inputs_list.map((input) => input.id);
        return switches.map((value, k) => (
            value === true && !triggered.includes(ids[k]) ? false : noUpdate()));
    }

    // A random id of this browser, kept in local storage, so the server runs one job of it
    // at a time (see web/jobs.py).
    function sessionId(storagePrefix, current) {
        if (typeof current === 'string' && /^[0-9a-f]{32}$/.test(current)) {
            return current;
        }
        const bytes = window.crypto.getRandomValues(new Uint8Array(16));
        return Array.from(bytes, (byte) => byte.toString(16).padStart(2, '0')).join('');
    }

    window.dash_clientside = window.dash_clientside || {};
    window.dash_clientside.superpixel_annotator = Object.assign(
        window.dash_clientside.superpixel_annotator || {}, {
            showOverlays, composeFigure, requestStale, requestBorders, requestThumbnails,
            publishState, publishMove, keepAnnotation, enterCase, restoreCase,
            installShortcuts, oneStrokeLevel, sessionId,
        });
})();
