# skiplock: the HTTP API by default; the same image runs workers and migrations.
#
#   docker build -t skiplock .
#   docker run --rm -e DATABASE_URL=… skiplock skiplock migrate
#   docker run -d -p 8000:8000 -e DATABASE_URL=… -v skiplock-storage:/var/lib/skiplock/storage skiplock
#   docker run -d --no-healthcheck -e DATABASE_URL=… -v skiplock-storage:/var/lib/skiplock/storage \
#       skiplock skiplock worker
#
# The base image is pinned to a patch release so a rebuild gets the same Python; bump it
# on purpose (tests/test_dockerfile.py checks it stays pinned).

# --- build: the wheel, from exactly the files the wheel needs -----------------------------
FROM python:3.11.13-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY service ./service
COPY sql ./sql
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# --- run: the package, Graphviz and ffmpeg (the built-in diagram and video types) ---------
FROM python:3.11.13-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SKIPLOCK_STORAGE_DIR=/var/lib/skiplock/storage
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends graphviz ffmpeg \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /wheels /tmp/wheels
RUN pip install --no-cache-dir /tmp/wheels/skiplock-*.whl && rm -rf /tmp/wheels
# A fixed uid, so a mounted storage volume can be chowned to it on the host.
RUN groupadd --gid 10001 skiplock \
    && useradd --uid 10001 --gid skiplock --no-create-home --shell /usr/sbin/nologin skiplock \
    && mkdir -p /var/lib/skiplock/storage \
    && chown -R skiplock:skiplock /var/lib/skiplock
# Assets are files here: the API serves them and workers write them, so every container
# of one deployment mounts the same volume.
VOLUME ["/var/lib/skiplock/storage"]
WORKDIR /var/lib/skiplock
USER skiplock
EXPOSE 8000
# slim images have no curl; urlopen raises (exit 1) on a 503 or no answer. Workers serve no
# HTTP: run them with --no-healthcheck.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
# Or `skiplock worker` (with the same image and DATABASE_URL) for a worker process.
CMD ["skiplock", "serve", "--host", "0.0.0.0", "--port", "8000"]
