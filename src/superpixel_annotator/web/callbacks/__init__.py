"""The annotator's callbacks, one module per feature; each has ``register(app, ...)``."""
