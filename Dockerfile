# The worker image for docker-compose.yml: the package with its core dependencies (RocksDB tables
# included). Not the [local] extra: the local development broker has no place in production.
#
# The base image is pinned by digest (a tag moves with every rebuild of the image). The digest below is
# one that python:3.11-slim has been published under (taken from published pins: these machines cannot
# reach Docker Hub to read or pull it). .ci/pin-base-image writes the digest the tag has now (README,
# "Supply chain"); run it where the registry is reachable. Another digest can be given with
# `docker build --build-arg PYTHON_BASE_DIGEST=sha256:…`.
ARG PYTHON_BASE_DIGEST=sha256:9c900dea9e8fb7e16277c179b555cc72d29a352dbc33cff48ad5a0412fd5bfc7
FROM python:3.11-slim@${PYTHON_BASE_DIGEST}

WORKDIR /app
# Every dependency from the lock, each checked against its hashes; then the package itself, built with
# the locked setuptools and installing nothing more.
COPY requirements/image.lock ./requirements/
RUN pip install --no-cache-dir --require-hashes -r requirements/image.lock
COPY pyproject.toml README.md ./
COPY domain ./domain
COPY workers ./workers
COPY schemas ./schemas
COPY examples ./examples
RUN pip install --no-cache-dir --no-deps --no-build-isolation . \
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
# /health over HTTPS when the worker has a certificate (OMS_WEB_TLS_CERTFILE); the probe asks the
# container itself and reads no data, so it does not check the certificate's name.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s \
  CMD python -c "import os,ssl,sys,urllib.request as u; t=bool(os.environ.get('OMS_WEB_TLS_CERTFILE')); c=ssl._create_unverified_context() if t else None; sys.exit(u.urlopen(('https' if t else 'http')+'://127.0.0.1:'+os.environ.get('OMS_WEB_PORT','6066')+'/health',context=c).status!=200)"
ENTRYPOINT ["oms-postsales"]
CMD ["worker"]
