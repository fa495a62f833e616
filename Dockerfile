# syntax=docker/dockerfile:1
# One production image for every Tailor process; the command picks the service
# (`serve <service>`, `migrate <service>`). Build stage: Tailor and only its runtime
# dependencies, at the versions of constraints.txt (the lock file), in a virtualenv.
FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY services services
COPY gateway gateway
COPY tailor_cli tailor_cli
COPY sim sim
COPY protocols protocols
# No `[local]` extra: no nats-server binary, no SMTP sink. The simulators are removed
# from the installed package (the CLI imports them only for `tailor demo`).
RUN python -m venv /opt/tailor \
 && /opt/tailor/bin/pip install --constraint constraints.txt . \
 && rm -rf /opt/tailor/lib/python3.11/site-packages/sim \
 && find /opt/tailor -name "__pycache__" -prune -exec rm -rf {} +

FROM python:3.11-slim-bookworm
ENV PATH=/opt/tailor/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    TAILOR_MIGRATE_ON_START=false
RUN useradd --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin tailor
COPY --from=build /opt/tailor /opt/tailor
# The protocol with its model and REDCap project beside it: a deployment mounts its own
# protocol file over /app/protocols/perpain-pilot.yaml (relative paths stay valid).
COPY --from=build /src/protocols /app/protocols
WORKDIR /app
USER 10001:10001
EXPOSE 8000 9100
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status != 200)"]
ENTRYPOINT ["tailor"]
CMD ["serve", "gateway", "--host", "0.0.0.0", "--port", "8000"]
