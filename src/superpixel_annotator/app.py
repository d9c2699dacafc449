"""The standalone app, importable as before (see :mod:`.web.app`)."""

from .web.app import (
    celery_manager,
    create_app,
    resource_dir,
    sample_path,
    serve_without_polyfill,
    use_local_bootstrap,
)

__all__ = [
    "celery_manager",
    "create_app",
    "resource_dir",
    "sample_path",
    "serve_without_polyfill",
    "use_local_bootstrap",
]
