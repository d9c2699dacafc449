"""The annotator's domain: numpy in, numpy out; no Dash, Plotly or Flask import."""
