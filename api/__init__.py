"""Access for astronomers: a read-only HTTP query API and web explorer over the broker's PostgreSQL summaries and
Parquet lake (``broker serve``), a Python client for it, and the lake's analysis-ready tables
(``broker lake publish``).

Modules: ``db`` (a small pool of read-only PostgreSQL connections), ``cone`` (HEALPix ranges of a cone),
``stamps`` (FITS cutouts to PNG), ``upload`` (a CSV of positions to cross-match), ``formats`` (tables as CSV
or VOTable files), ``data`` (every query the API answers, as plain Python), ``app`` (the FastAPI application and
the explorer's pages), ``server`` (uvicorn), ``client`` (the Python client: HTTP + pandas only)
and ``publish`` (the analysis-ready lake tables). Importing this package loads none of them.
"""
