FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    QUARRY_DATA_DIR=/data HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
WORKDIR /srv/quarry

# CPU torch first, so no requirement pulls a CUDA build
RUN pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY migrations ./migrations
COPY ui ./ui
RUN pip install --no-cache-dir -e .

VOLUME /data
EXPOSE 8000
CMD ["quarry", "serve", "--host", "0.0.0.0", "--port", "8000"]
