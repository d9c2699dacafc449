// The plotly.js traces the annotator draws, on top of plotly.js's core (cartesian axes,
// shapes and the drawing tools, the modebar, hover, and the `scatter` trace that
// dash-slicer's position indicators use). The 3D scene comes with mesh3d.
const Plotly = require('plotly.js/lib/core');

Plotly.register([
    require('plotly.js/lib/image'), // slices and their overlays
    require('plotly.js/lib/bar'), // the statistics chart
    require('plotly.js/lib/mesh3d'), // the 3D view
]);

module.exports = Plotly;
