# The callqueue application image: Celery workers, beat, Flower and the
# `python -m producers` tools (used by the healthchecks). docker-compose.yml
# runs every app service from this one image with a different command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONPATH=/app \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

COPY requirements.txt ./
RUN pip install --no-compile -r requirements.txt

RUN groupadd --system --gid 10001 callqueue \
    && useradd --system --uid 10001 --gid callqueue --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin callqueue \
    && install -d -o callqueue -g callqueue -m 0750 /var/lib/callqueue

COPY config/ ./config/
COPY workers/ ./workers/
COPY producers/ ./producers/
# The import package: callqueue.workers, callqueue.producers and callqueue.config link to the folders above.
COPY callqueue/ ./callqueue/

USER callqueue:callqueue

CMD ["celery", "-A", "callqueue.workers.app:app", "worker", "-Q", "assignments", "--loglevel", "INFO"]
