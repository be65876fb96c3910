"""alert_broker: an ALeRCE-style astronomical alert broker on Dask (docs/architecture.md).

Installed, the project is this one package. Its subpackages live in the repository's top-level folders, mapped
here by ``pyproject.toml`` (``alert_broker.pipeline`` is ``pipeline/``, and so on), in layers that only point
down:

- ``alert_broker.pipeline``: sources, the driver, Dask tasks and steps, sinks, the CLI (``broker``);
- ``alert_broker.classifiers`` and ``alert_broker.storage``: models and training; the lake, history store,
  PostgreSQL, raw archive and catalogues;
- ``alert_broker.simulator`` and ``alert_broker.surveys``: simulated nights; survey adapters (packets -> tables);
- ``alert_broker.features``: pure science on columnar data (no I/O);
- ``alert_broker.models``: the shipped, trained models (package data).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("alert-broker")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
