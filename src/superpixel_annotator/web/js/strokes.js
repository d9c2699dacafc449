// Strokes in the browser: drawing, and the new labels on screen at once.
//
// A view in drawing mode takes the pointer from Plotly: the stroke is drawn on a canvas over
// the plot, and on release the canvas shows at once what the stroke labels on that slice,
// computed from the slice's superpixel ids (fetched when the pointer enters the view). The
// stroke then goes to the server (the view's "stroke" store), whose answer is the annotation
// itself; the canvas is cleared once the view shows that answer.
//
// The canvas reproduces the server's rule (core/annotation.py, Annotation.paint): the voxels
// along the polyline, sampled config.samples times per voxel, select their superpixels, or at
// the coarse level every superpixel of their coarse regions; the eraser shows the slice
// without colour. At the grow level the canvas shows the superpixels crossed, and the server's
// answer adds those the label grows into. With the brush the canvas shows the voxels within
// config.brushRadius mm of the path, and the server's answer keeps those that look like the
// voxels under it (core/brush.py). Each view's "stroke-config" store gives its component
// ids and constants.
(function () {
    'use strict';

    // Installs the pointer handlers of one view (once per graph element); returns nothing.
    function installStrokes(geometry, config) {
        const views = window._superpixelStrokeViews = window._superpixelStrokeViews || {};
        const view = views[config.graph] = views[config.graph] || {ids: null, images: new Map()};
        view.config = config;
        view.geometry = geometry;
        if (!window._superpixelStrokesInstalled) {
            window._superpixelStrokesInstalled = true;
            installStrokeHandlers(views);
        }
        return window.dash_clientside.no_update;
    }

    function installStrokeHandlers(views) {
        const api = window.dash_component_api;
        const prop = (id, name) => {
            const layout = api.getLayout(id);
            return layout ? layout.props[name] : undefined;
        };
        // The view under an event: React may replace a graph's element, so look it up each time.
        const find = (event) => {
            const root = event.target.closest && event.target.closest('.dash-graph');
            const view = root && views[root.id];
            return view ? [root, view] : [null, null];
        };
        const plot = (root) => root.querySelector(':scope > div:last-child');
        const canvasOf = (root, view) => {
            if (!view.canvas || view.canvas.parentNode !== root) {
                view.canvas = document.createElement('canvas');
                view.canvas.style.cssText = 'position:absolute;pointer-events:none;z-index:5;';
                if (getComputedStyle(root).position === 'static') { root.style.position = 'relative'; }
                root.insertBefore(view.canvas, root.firstChild);  // the plot stays the last child
            }
            return view.canvas;
        };
        // The plot area, relative to root and to the window, with the axes' transforms.
        const frame = (root) => {
            const gd = plot(root);
            if (!gd || !gd._fullLayout || !gd._fullLayout.xaxis) { return null; }
            const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
            const gdRect = gd.getBoundingClientRect(), rootRect = root.getBoundingClientRect();
            return {gd: gd, xa: xa, ya: ya, left: gdRect.left - rootRect.left + xa._offset,
                    top: gdRect.top - rootRect.top + ya._offset, width: xa._length,
                    height: ya._length, screenLeft: gdRect.left + xa._offset,
                    screenTop: gdRect.top + ya._offset};
        };
        const fitCanvas = (canvas, f) => {
            const ratio = window.devicePixelRatio || 1;
            canvas.style.left = f.left + 'px';
            canvas.style.top = f.top + 'px';
            canvas.style.width = f.width + 'px';
            canvas.style.height = f.height + 'px';
            canvas.width = Math.round(f.width * ratio);
            canvas.height = Math.round(f.height * ratio);
            const context = canvas.getContext('2d');
            context.setTransform(ratio, 0, 0, ratio, 0, 0);
            return context;
        };
        const colour = (view, label) => view.config.colors[String(label)] || '#ffffff';

        // The superpixel ids of the slice on screen, asked for when the pointer comes near.
        const wantIds = (view) => {
            const caseData = prop(view.config.case, 'data');
            const index = prop(view.config.slider, 'value');
            if (!caseData || typeof index !== 'number') { return; }
            const key = caseData.key + ':' + index;
            if ((view.ids && view.ids.key === key) || view.idsWanted === key) { return; }
            view.idsWanted = key;
            window.dash_clientside.set_props(view.config.idsRequest, {data: [index, caseData.key]});
        };
        const sliceImage = (view, gd) => {
            const source = gd.data && gd.data[0] && gd.data[0].source;
            if (!source) { return null; }
            let image = view.images.get(source);
            if (!image) {
                image = new Image();
                image.src = source;
                view.images.clear();
                view.images.set(source, image);
            }
            return image.complete && image.naturalWidth ? image : null;
        };

        document.addEventListener('pointerover', (event) => {
            const [root, view] = find(event);
            if (view && !view.points) { wantIds(view); }
        });
        document.addEventListener('pointerdown', (event) => {
            const [root, view] = find(event);
            if (!view || event.button !== 0) { return; }
            const f = frame(root);
            if (!f || f.gd._fullLayout.dragmode !== 'drawopenpath') { return; }
            const x = event.clientX - f.screenLeft, y = event.clientY - f.screenTop;
            if (x < 0 || y < 0 || x > f.width || y > f.height) { return; }
            event.preventDefault();
            event.stopPropagation();
            // A dataset case another user is editing is read-only here.
            if (prop(view.config.readOnly, 'data')) { return; }
            wantIds(view);
            sliceImage(view, f.gd);
            view.frame = f;
            view.context = fitCanvas(canvasOf(root, view), f);
            view.label = prop(view.config.label, 'value');
            view.points = [[x, y]];
            window._superpixelStrokeActive = view;
        }, true);
        document.addEventListener('pointermove', (event) => {
            const view = window._superpixelStrokeActive;
            if (!view) { return; }
            const f = view.frame, context = view.context;
            const last = view.points[view.points.length - 1];
            const point = [event.clientX - f.screenLeft, event.clientY - f.screenTop];
            view.points.push(point);
            context.strokeStyle = colour(view, view.label);
            context.lineWidth = 3;
            context.lineCap = 'round';
            context.beginPath();
            context.moveTo(last[0], last[1]);
            context.lineTo(point[0], point[1]);
            context.stroke();
        }, true);
        const finish = () => {
            const view = window._superpixelStrokeActive;
            if (!view) { return; }
            window._superpixelStrokeActive = null;
            const points = view.points, f = view.frame;
            view.points = null;
            const data = points.map(([x, y]) => [f.xa.p2d(x), f.ya.p2d(y)]);
            const path = 'M' + data.map(([x, y]) => x.toFixed(3) + ',' + y.toFixed(3)).join('L');
            const index = prop(view.config.slider, 'value');
            showStroke(view, f, data, index);
            window.dash_clientside.set_props(view.config.stroke, {data: {path: path, index: index}});
        };
        document.addEventListener('pointerup', finish, true);
        document.addEventListener('pointercancel', finish, true);

        // What the stroke labels on this slice, drawn over the view at once.
        const showStroke = (view, f, data, index) => {
            const context = view.context;
            context.clearRect(0, 0, f.width, f.height);
            const caseData = prop(view.config.case, 'data');
            const ids = view.ids;
            if (!ids || !caseData || ids.key !== caseData.key + ':' + index) { return; }
            const g = view.geometry, width = ids.width, height = ids.height;
            const clip = (value, size) => Math.min(Math.max(value, 0), size - 1);
            const voxels = data.map(([x, y]) => [clip((y - g.y0) / g.dy, height),
                                                 clip((x - g.x0) / g.dx, width)]);
            const hit = new Set();
            const brush = prop(view.config.brush, 'value') === true;
            const brushed = new Set();
            const radii = [view.config.brushRadius / Math.abs(g.dy),
                           view.config.brushRadius / Math.abs(g.dx)];
            const reach = radii.map(Math.floor);
            const visit = (row, col) => {
                const r = Math.round(row), c = Math.round(col);
                if (!brush) {
                    const id = ids.pixels[r * width + c];
                    if (id > 0) { hit.add(id); }
                    return;
                }
                for (let dr = -reach[0]; dr <= reach[0]; dr++) {
                    for (let dc = -reach[1]; dc <= reach[1]; dc++) {
                        const inside = (dr / radii[0]) ** 2 + (dc / radii[1]) ** 2 <= 1;
                        const rr = r + dr, cc = c + dc;
                        if (inside && rr >= 0 && rr < height && cc >= 0 && cc < width) {
                            brushed.add(rr * width + cc);
                        }
                    }
                }
            };
            visit(voxels[0][0], voxels[0][1]);
            for (let k = 1; k < voxels.length; k++) {
                const [r0, c0] = voxels[k - 1], [r1, c1] = voxels[k];
                const span = Math.max(Math.abs(r1 - r0), Math.abs(c1 - c0));
                const steps = Math.max(1, Math.ceil(span * view.config.samples));
                for (let s = 1; s <= steps; s++) {
                    visit(r0 + (r1 - r0) * s / steps, c0 + (c1 - c0) * s / steps);
                }
            }
            if (!hit.size && !brushed.size) { return; }
            let selected = hit;
            const crossedOnly = [view.config.fine, view.config.grow].some(
                (id) => prop(id, 'value') === true);
            if (!crossedOnly && !brush) {
                const regions = new Set([...hit].map((id) => ids.coarse.get(id)));
                const inRegion = (id) => regions.has(ids.coarse.get(id));
                selected = new Set([...ids.coarse.keys()].filter(inRegion));
            }
            const mask = new ImageData(width, height);
            for (let p = 0; p < ids.pixels.length; p++) {
                if (selected.has(ids.pixels[p]) || brushed.has(p)) { mask.data[4 * p + 3] = 255; }
            }
            const layer = document.createElement('canvas');
            layer.width = width;
            layer.height = height;
            const layerContext = layer.getContext('2d');
            layerContext.putImageData(mask, 0, 0);
            const image = sliceImage(view, f.gd);
            layerContext.globalCompositeOperation = 'source-in';
            if (image) { layerContext.drawImage(image, 0, 0, width, height); }
            if (view.label > 0) {
                layerContext.globalCompositeOperation = image ? 'source-atop' : 'source-in';
                layerContext.globalAlpha = image ? prop(view.config.opacity, 'value') : 1;
                layerContext.fillStyle = colour(view, view.label);
                layerContext.fillRect(0, 0, width, height);
            }
            const x0 = f.xa.d2p(g.x0 - 0.5 * g.dx), x1 = f.xa.d2p(g.x0 + (width - 0.5) * g.dx);
            const y0 = f.ya.d2p(g.y0 - 0.5 * g.dy), y1 = f.ya.d2p(g.y0 + (height - 0.5) * g.dy);
            context.imageSmoothingEnabled = false;
            context.drawImage(layer, x0, y0, x1 - x0, y1 - y0);
            view.painted = {at: performance.now(), ids: [...selected]};
        };
    }

    // Decodes the superpixel ids of a slice (an RGB PNG, id = r + 256 g + 65536 b) for the view.
    function receiveIds(ids, config) {
        const view = (window._superpixelStrokeViews || {})[config.graph];
        if (!view || !ids || !ids.uri) { return window.dash_clientside.no_update; }
        const image = new Image();
        image.onload = () => {
            const canvas = document.createElement('canvas');
            canvas.width = image.naturalWidth;
            canvas.height = image.naturalHeight;
            const context = canvas.getContext('2d', {willReadFrequently: true});
            context.drawImage(image, 0, 0);
            const rgba = context.getImageData(0, 0, canvas.width, canvas.height).data;
            const pixels = new Int32Array(canvas.width * canvas.height);
            for (let p = 0; p < pixels.length; p++) {
                pixels[p] = rgba[4 * p] | (rgba[4 * p + 1] << 8) | (rgba[4 * p + 2] << 16);
            }
            const coarse = new Map(ids.ids.map((id, k) => [id, ids.coarse[k]]));
            view.ids = {key: ids.key + ':' + ids.index, width: canvas.width,
                        height: canvas.height, pixels: pixels, coarse: coarse};
        };
        image.src = ids.uri;
        return window.dash_clientside.no_update;
    }

    // Once the view shows the server's annotation (or another slice), the canvas has served:
    // it is cleared after the view's next redraw (called by showOverlays, annotator.js).
    function clearAfterRedraw(config) {
        const view = (window._superpixelStrokeViews || {})[config.graph];
        const root = document.getElementById(config.graph);
        if (view && view.canvas && !view.points && root) {
            const clear = () => view.points || view.canvas.getContext('2d').clearRect(
                0, 0, view.canvas.width, view.canvas.height);
            const gd = root.querySelector(':scope > div:last-child');
            if (gd && gd.once) { gd.once('plotly_afterplot', clear); } else { clear(); }
        }
    }

    window.dash_clientside = window.dash_clientside || {};
    window.dash_clientside.superpixel_annotator = Object.assign(
        window.dash_clientside.superpixel_annotator || {},
        {installStrokes, receiveIds, clearAfterRedraw});
})();
