# Bookable in a container: `bookable serve` on 0.0.0.0:3002, data in the /data volume.
#   docker build -t bookable .
#   docker run -p 3002:3002 -v bookable-data:/data bookable
# See README.md, "Deploying".

# Python 3.11 is the oldest the project supports (pyproject's requires-python) and the one CI runs.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/bookable
# Only what the wheel is built from: a change to the tests does not invalidate this layer.
COPY pyproject.toml README.md /src/
COPY src /src/src
RUN /opt/bookable/bin/pip install /src

FROM ${PYTHON_IMAGE}
# A fixed uid, so that a bind-mounted /data can be given to it (`chown 10001 ...`).
RUN groupadd --system --gid 10001 bookable \
    && useradd --system --uid 10001 --gid bookable --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin bookable \
    && mkdir -p /data/mail && chown -R bookable:bookable /data
COPY --from=build /opt/bookable /opt/bookable
# The SQLite file, the generated encryption key and the .eml folder all live in the volume
# (their defaults are relative to the working directory, which `docker run -w` could change).
ENV PATH=/opt/bookable/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    BOOKABLE_DATABASE_URL=sqlite:////data/bookable.db \
    BOOKABLE_ENCRYPTION_KEY_FILE=/data/bookable.key \
    BOOKABLE_EMAIL_DIR=/data/mail
WORKDIR /data
VOLUME /data
USER bookable
EXPOSE 3002
# The slim image has no curl: the standard library asks the liveness route.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:3002/healthz', timeout=4)"]
CMD ["bookable", "serve", "--host", "0.0.0.0"]
