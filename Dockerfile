# The worker image for docker-compose.yml: the package with its core dependencies (RocksDB tables
# included). Not the [local] extra: the local development broker has no place in production.
FROM python:3.11-slim

WORKDIR /app
COPY pyproject.toml README.md ./
COPY domain ./domain
COPY workers ./workers
COPY schemas ./schemas
COPY examples ./examples
RUN pip install --no-cache-dir . \
 && useradd --uid 10001 --create-home oms \
 && mkdir -p /var/lib/oms-postsales && chown oms /var/lib/oms-postsales

USER oms
# The API listens beyond the container's loopback, so the worker needs OMS_API_TOKEN (at least 24
# characters) at run time: `docker run -e OMS_API_TOKEN=$(openssl rand -hex 16) …`. It is never baked
# into the image; without it the worker stops at start with one line naming the setting.
ENV OMS_WEB_HOST=0.0.0.0 \
    OMS_WEB_PORT=6066 \
    OMS_DATA_DIR=/var/lib/oms-postsales \
    OMS_STORE=rocksdb://
EXPOSE 6066
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s \
  CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:6066/health').status != 200)"
ENTRYPOINT ["oms-postsales"]
CMD ["worker"]
