# The reference users API (stack/api) under uvicorn, run as an unprivileged user.
# Build context: stack/  (docker build -f stack/docker/api.Dockerfile stack)
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}

RUN set -eux; \
    apt-get update; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv tini; \
    rm -rf /var/lib/apt/lists/*; \
    python3 -m venv /opt/venv; \
    useradd --system --no-create-home --home-dir /app --shell /usr/sbin/nologin app

# requirements first: a change to the code alone reuses the installed packages
COPY api/requirements.txt /app/requirements.txt
RUN /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check -q -r /app/requirements.txt
COPY api/users_api /app/users_api

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    APP_NAME=users-api
WORKDIR /app
USER app
ENTRYPOINT ["tini", "--"]
CMD ["python", "-m", "uvicorn", "users_api.main:app", "--host", "0.0.0.0", "--port", "8000", \
     "--timeout-graceful-shutdown", "3", "--no-server-header"]
