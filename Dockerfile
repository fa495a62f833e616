# One image for every Tailor process; the command picks the service.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 TAILOR_MIGRATE_ON_START=false
WORKDIR /app
COPY pyproject.toml README.md ./
COPY services services
COPY gateway gateway
COPY tailor_cli tailor_cli
COPY sim sim
COPY protocols protocols
RUN pip install --no-cache-dir . && useradd --uid 10001 tailor
USER 10001
ENTRYPOINT ["tailor"]
CMD ["serve", "gateway", "--host", "0.0.0.0", "--port", "8000"]
