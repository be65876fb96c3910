"""Make sure Dask workers import *our* ``storage`` package.

A Dask worker puts its scratch folder first on ``sys.path``, and that folder holds a ``storage/`` sub-folder (its
spill space). With the project installed in editable mode (an import hook, not a ``sys.path`` entry) Python then
resolves ``import storage`` to that empty folder as a namespace package. This plugin, registered by the driver,
puts the folder that holds our packages first on each worker's ``sys.path`` (also for workers that join later).

This module must not import ``storage`` itself: it is what makes that import work.
"""

from __future__ import annotations

import os
import sys

from distributed.diagnostics.plugin import WorkerPlugin


class CodePath(WorkerPlugin):
    name = "alert-broker-code-path"

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def setup(self, worker) -> None:  # noqa: ARG002 - the plugin interface
        if not os.path.isfile(os.path.join(self.folder, "storage", "__init__.py")):
            return  # a remote worker with the project installed normally: nothing to fix
        if self.folder in sys.path:
            sys.path.remove(self.folder)
        sys.path.insert(0, self.folder)
        mod = sys.modules.get("storage")
        if mod is not None and getattr(mod, "__file__", None) is None:
            del sys.modules["storage"]  # a namespace package picked up from the scratch folder


def code_folder() -> str:
    """The folder that holds the ``pipeline``, ``features``, ``classifiers`` and ``storage`` packages."""
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
