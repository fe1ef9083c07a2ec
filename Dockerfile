# One image for every role (api, worker, reaper): the role is the `trainctl` command it runs.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /app
# torch first, in its own layer: it is by far the largest dependency and changes least often.
# GPU hosts: build with --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 (or your CUDA).
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
RUN pip install --index-url "${TORCH_INDEX}" --extra-index-url https://pypi.org/simple torch==2.13.0

COPY pyproject.toml README.md alembic.ini ./
COPY training ./training
COPY api ./api
COPY worker ./worker
COPY trainctl ./trainctl
COPY migrations ./migrations
RUN pip install . \
    && useradd --create-home --uid 10001 trainctl \
    && mkdir -p /data && chown trainctl /data

USER trainctl
ENV TRAINCTL_DATA_DIR=/data
EXPOSE 8000
CMD ["trainctl", "api", "--host", "0.0.0.0", "--port", "8000"]
