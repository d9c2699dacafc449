// Saving the annotation of a dataset case on the server (see web/callbacks/dataset.py).
//
// Every change is saved without a click, a moment after the last stroke, as a new version
// of the case. Each save names the version it started from, and the server refuses one
// that would overwrite a newer version (another tab or user saved meanwhile). So each case
// has one queue here: one save in flight at a time, the next naming the version the
// previous one made. This browser's local storage keeps, next to the annotation, which
// version it started from and whether it holds changes not saved yet; when the case is
// opened again, those changes win over the server's copy and are saved (or refused, with
// the conflict shown, when the server moved on meanwhile).
(function () {
    'use strict';
    const noUpdate = () => window.dash_clientside.no_update;
    const SAVE_DELAY_MS = 1000;
    const queues = {};

    const metaKey = (prefix, key) => prefix + key + ':dataset';
    function readMeta(prefix, key) {
        try {
            return JSON.parse(window.localStorage.getItem(metaKey(prefix, key)));
        } catch (error) {
            return null;
        }
    }
    function writeMeta(prefix, key, meta) {
        try {
            window.localStorage.setItem(metaKey(prefix, key), JSON.stringify(meta));
        } catch (error) {}
    }
    function readLocal(prefix, key) {
        try {
            return window.localStorage.getItem(prefix + key);
        } catch (error) {
            return null;
        }
    }

    function queueOf(config, name) {
        const id = config.id + ':' + name;
        queues[id] = queues[id] || {name: name, base: null, timer: null, inFlight: false,
                                    again: false, done: false, latest: null, sent: null};
        return queues[id];
    }

    // The annotation a dataset case starts with, and the store naming the case and the
    // version it is based on. Called by enterCase (annotator.js).
    function enterDatasetCase(caseData, prefix, config) {
        const dataset = caseData.dataset;
        const shown = window._superpixelDatasetShown = window._superpixelDatasetShown || {};
        if (dataset.pending) {
            shown[config.id] = null;
            return {state: caseData.state || null, datasetCase: null};
        }
        const queue = queueOf(config, dataset.name);
        queue.base = Math.max(queue.base || 0, dataset.base || 0) || null;
        queue.key = caseData.key;
        queue.token = dataset.token;
        queue.prefix = prefix;
        let state = caseData.state || null;
        let dirty = dataset.version !== dataset.base;
        const meta = readMeta(prefix, caseData.key);
        const local = readLocal(prefix, caseData.key);
        if (!dirty && !dataset.restored && meta && meta.name === dataset.name && meta.dirty &&
                local) {
            state = local;
            queue.base = meta.version;
            dirty = true;
        }
        queue.entered = dirty ? null : state;
        shown[config.id] = dataset.name;
        writeMeta(prefix, caseData.key, {name: dataset.name, version: queue.base, dirty: dirty});
        try {
            window.localStorage.setItem(prefix + 'dataset-case', dataset.name);
        } catch (error) {}
        if (dirty) {
            schedule(queue, state, config, false);
        }
        return {state: state, datasetCase: {name: dataset.name, version: queue.base}};
    }

    // A changed annotation of the dataset case shown is saved a moment later.
    function autosave(state, caseData, prefix, config) {
        const dataset = caseData && caseData.dataset;
        if (!dataset || dataset.pending || typeof state !== 'string') {
            return;
        }
        const queue = queueOf(config, dataset.name);
        if (queue.key !== caseData.key || state === queue.entered) {
            return;
        }
        queue.entered = null;
        writeMeta(prefix, caseData.key, {name: dataset.name, version: queue.base, dirty: true});
        schedule(queue, state, config, false);
    }

    function schedule(queue, state, config, done) {
        queue.latest = state;
        queue.done = queue.done || done;
        clearTimeout(queue.timer);
        queue.timer = setTimeout(() => send(queue, config), done ? 0 : SAVE_DELAY_MS);
    }

    function send(queue, config) {
        if (queue.inFlight) {
            queue.again = true;
            return;
        }
        queue.inFlight = true;
        queue.sent = queue.latest;
        const done = queue.done;
        queue.done = false;
        status(config, 'Saving…');
        const body = {name: queue.name, key: queue.key, token: queue.token, base: queue.base,
                      state: queue.sent, done: done};
        fetch(config.saveUrl, {method: 'POST', headers: {'Content-Type': 'application/json'},
                               body: JSON.stringify(body), credentials: 'same-origin'})
            .then((response) => response.json())
            .catch(() => ({ok: false, message: 'Not saved: the server did not answer. ' +
                           'Your changes are kept in this browser and saved with the next.'}))
            .then((answer) => answered(queue, config, answer, done));
    }

    function answered(queue, config, answer, done) {
        queue.inFlight = false;
        const setProps = window.dash_clientside.set_props;
        const current = (window._superpixelDatasetShown || {})[config.id] === queue.name;
        if (answer.ok) {
            queue.base = answer.version;
            const clean = queue.latest === queue.sent;
            writeMeta(queue.prefix, queue.key,
                      {name: queue.name, version: answer.version, dirty: !clean});
            if (current) {
                status(config, answer.status);
                setProps(config.ids['dataset-case'], {data: {name: queue.name,
                                                             version: answer.version}});
                setProps(config.ids['keep-mine'], {style: {display: 'none'}});
            }
            if (!clean || queue.again) {
                queue.again = false;
                send(queue, config);
            }
            return;
        }
        queue.again = false;
        queue.done = queue.done || done;
        queue.conflict = answer.conflict ? answer.version : null;
        if (current) {
            status(config, 'Not saved');
            setProps(config.ids.message, {children: answer.message, is_open: true,
                                          color: 'danger'});
            setProps(config.ids['keep-mine'],
                     {style: {display: answer.conflict ? 'inline-block' : 'none'}});
        }
    }

    function status(config, text) {
        window.dash_clientside.set_props(config.ids['save-status'], {children: text});
    }

    function shownQueue(config) {
        const name = (window._superpixelDatasetShown || {})[config.id];
        return name ? queueOf(config, name) : null;
    }

    // "Mark as done": the annotation shown, saved now as the case's final version.
    function markDone(clicks, state, config) {
        const queue = shownQueue(config);
        if (clicks && queue && typeof state === 'string') {
            schedule(queue, state, config, true);
        }
        return noUpdate();
    }

    // After a conflict, the user keeps their annotation: saved after the newer version.
    function keepMine(clicks, state, config) {
        const queue = shownQueue(config);
        if (clicks && queue && queue.conflict && typeof state === 'string') {
            queue.base = queue.conflict;
            queue.conflict = null;
            schedule(queue, state, config, false);
        }
        return noUpdate();
    }

    // A click on a row of the case list opens its case (once per annotator).
    function installCaseList(config) {
        const installed = window._superpixelCaseLists = window._superpixelCaseLists || {};
        if (config && !installed[config.id]) {
            installed[config.id] = true;
            document.addEventListener('click', (event) => {
                const row = event.target.closest && event.target.closest('[data-dataset-case]');
                const list = document.getElementById(config.ids.cases);
                if (row && list && list.contains(row)) {
                    window.dash_clientside.set_props(config.ids['dataset-open'],
                                                     {data: {name: row.dataset.datasetCase}});
                }
            });
        }
        return noUpdate();
    }

    // On page load: the dataset case this browser showed last (the server opens the first
    // unfinished one when there is none, or when the dataset no longer has it).
    function startDataset(prefix, caseData) {
        if (!caseData || !caseData.dataset) {
            return noUpdate();
        }
        let name = null;
        try {
            name = window.localStorage.getItem(prefix + 'dataset-case');
        } catch (error) {}
        return {name: name};
    }

    window.dash_clientside = window.dash_clientside || {};
    window.dash_clientside.superpixel_annotator = Object.assign(
        window.dash_clientside.superpixel_annotator || {}, {
            enterDatasetCase, autosave, markDone, keepMine, installCaseList, startDataset,
        });
})();
