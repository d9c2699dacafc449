# syntax=docker/dockerfile:1
# The annotator for a team: gunicorn with several workers behind one port (docs/deployment.md).
#   docker build -t superpixel-annotator .
#   docker run -p 8050:8050 superpixel-annotator                       # the bundled sample
#   docker run -p 8050:8050 -v "$PWD/scans:/data:ro" superpixel-annotator /data/case.nii.gz
# Environment: PORT, WEB_CONCURRENCY (workers, default 2), GUNICORN_CMD_ARGS; superpixels are
# cached in /var/cache/superpixel-annotator (mount a volume there to keep them across runs).
# Several hosts: the same image, with SUPERPIXEL_ANNOTATOR_CELERY_BROKER=redis://... and a
# shared cache, also runs the Celery workers:
#   docker run --entrypoint celery IMAGE --app superpixel_annotator.wsgi:celery_app worker

ARG PYTHON_IMAGE=python:3.11-slim

# -- builder: wheels of the project and of everything it runs with ----------------------------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore
WORKDIR /build
# .dockerignore admits only what the wheel needs: pyproject.toml, README.md, src, assets,
# sample_data.
COPY . .
RUN pip wheel --wheel-dir /wheels ".[serve,celery]"

# -- runtime: the installed wheels, no sources, no build tools ---------------------------------
FROM ${PYTHON_IMAGE}
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
# Only the wheels, and offline: nothing can come from elsewhere than the builder.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links /wheels "superpixel-annotator[serve,celery]"
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    SUPERPIXEL_ANNOTATOR_CACHE=/var/cache/superpixel-annotator
RUN groupadd --system --gid 10001 annotator \
    && useradd --system --uid 10001 --gid annotator --create-home --home-dir /home/annotator \
        annotator \
    && install -d -o annotator -g annotator "$SUPERPIXEL_ANNOTATOR_CACHE"
USER 10001:10001
WORKDIR /home/annotator
# Build-time smoke test through the entry point: gunicorn loads its config and the sample app,
# which also caches the sample's superpixels in the image.
RUN GUNICORN_CMD_ARGS="--check-config" python -m superpixel_annotator.serve
EXPOSE 8050
HEALTHCHECK --interval=30s --timeout=5s --start-period=300s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/' % os.environ.get('PORT', '8050'), timeout=4)"]
ENTRYPOINT ["python", "-m", "superpixel_annotator.serve"]
CMD []
