# The broker image (driver, scheduler and workers all run it).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY pipeline ./pipeline
COPY features ./features
COPY classifiers ./classifiers
COPY storage ./storage
RUN pip install --no-cache-dir -c constraints.txt . && useradd -m broker
USER broker
ENTRYPOINT []
