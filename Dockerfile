FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY modelwatch ./modelwatch
COPY collector ./collector
COPY evaluators ./evaluators
COPY alerts ./alerts
COPY retrain ./retrain
COPY dashboards ./dashboards
COPY demo ./demo
RUN pip install --no-cache-dir .
EXPOSE 8000
CMD ["modelwatch", "serve", "--host", "0.0.0.0", "--no-migrate"]
