# syntax=docker/dockerfile:1
# One image for every modelwatch process: the API (`serve`), the evaluation and
# delivery worker (`worker`), migrations (`db upgrade`) and the rest of the CLI.
# The entrypoint is the CLI, so a container's command is a verb and its options:
#   docker build -t modelwatch .
#   docker run -p 127.0.0.1:8000:8000 modelwatch serve --host 0.0.0.0 --insecure
# (`serve` refuses to listen beyond loopback while no API key exists unless given
# --insecure; create keys with `docker run ... modelwatch keys create`.)

FROM python:3.11-slim AS build
WORKDIR /src
COPY . .
# A wheel built by pip from the source tree; the runtime stage installs only that.
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels \
    && useradd --system --uid 10001 --create-home --home-dir /var/lib/modelwatch modelwatch
USER modelwatch
# The embedded SQLite default (sqlite:///modelwatch.db) lands here; mount a volume
# to keep it, or set MODELWATCH_DATABASE_URL to a PostgreSQL server.
WORKDIR /var/lib/modelwatch
EXPOSE 8000
# slim has no curl: the standard library asks /healthz. Processes that serve no HTTP
# (worker, migrations) disable this check in docker-compose.yml.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
ENTRYPOINT ["modelwatch"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
