// The plotly.js traces the annotator draws, on top of plotly.js's core (cartesian axes,
// shapes and the drawing tools, the modebar, hover, and the `scatter` trace that
// dash-slicer's position indicators use).
const Plotly = require('plotly.js/lib/core');

Plotly.register([
    require('plotly.js/lib/image'), // slices and their overlays
    require('plotly.js/lib/bar'), // the statistics chart
]);

// mesh3d, for the 3D view, brings plotly.js's 3D scene: about half of the time the bundle
// takes to start. The bundler runs a module's code when it is first required, so it is
// registered when a figure first has a mesh3d trace (dcc.Graph draws with Plotly.react).
const react = Plotly.react;
let mesh3d = null;
Plotly.react = function (gd, figure, ...rest) {
    const traces = (Array.isArray(figure) ? figure : figure && figure.data) || [];
    if (!mesh3d && traces.some((trace) => trace && trace.type === 'mesh3d')) {
        mesh3d = require('plotly.js/lib/mesh3d');
        Plotly.register(mesh3d);
    }
    return react.call(this, gd, figure, ...rest);
};

module.exports = Plotly;
