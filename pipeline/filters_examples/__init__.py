"""The shipped example filters (docs/filters.md): ``*.toml`` declarative rules and ``*.py`` Python filters, loaded
from this folder by path with ``alert_broker.pipeline.filters.example_filters()`` (``load_filters``). A package
only so that the wheel installs the ``.py`` examples; nothing imports these modules by name."""
