# The broker image (driver, scheduler and workers all run it). It installs the package as a wheel would, with
# the shipped models inside it (alert_broker/models), so the image classifies out of the box.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY alert_broker ./alert_broker
COPY pipeline ./pipeline
COPY features ./features
COPY surveys ./surveys
COPY simulator ./simulator
COPY classifiers ./classifiers
COPY storage ./storage
COPY models ./models
COPY api ./api
RUN pip install --no-cache-dir -c constraints.txt . \
    && python -c "from alert_broker.pipeline.driver import RunModels; from alert_broker.pipeline.config import load_settings; print(RunModels.of(load_settings(env={})))" \
    && useradd -m broker \
    && mkdir -p /var/cache/numba && chown broker /var/cache/numba
# numba's compiled kernels, cached at build time so a worker (an autoscaled one in a burst) is ready in seconds
ENV NUMBA_CACHE_DIR=/var/cache/numba
USER broker
RUN broker warm
ENTRYPOINT []
