"""The architecture check `make lint` runs: layers that point one way, no import cycles, and no hidden imports.

1. ``lint-imports`` (import-linter) with the contracts in ``pyproject.toml``: the layers
   ``pipeline > api > classifiers | storage > simulator | surveys > features`` and no import cycle at any depth.
   The installed package maps ``alert_broker.<sub>`` onto the repository's top-level folders; import-linter
   finds modules by walking the package's folder, so it is given a view of the package as it is installed:
   a temporary ``alert_broker/`` whose subpackages are links to those folders.
2. Imports inside functions: only for heavy or optional third-party modules, each with a one-line reason in a
   trailing ``# lazy: ...`` comment, and never of the project's own modules (a lazy project import is how a
   cycle or a layer violation hides from the import graph).

    python -m tests.architecture          # exit status 1 and a report when anything is broken
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "alert_broker"
LAZY_MARK = "# lazy:"


def package_dirs(pyproject: Path = REPO / "pyproject.toml") -> dict[str, Path]:
    """``alert_broker.<sub>`` -> its folder, from ``[tool.setuptools.package-dir]``."""
    config = tomllib.loads(pyproject.read_text())
    mapping = config["tool"]["setuptools"]["package-dir"]
    return {name: (REPO / folder).resolve() for name, folder in mapping.items()}


def package_view(dest: Path) -> Path:
    """A folder holding ``alert_broker/`` as it is installed: the root package's files plus one link per
    mapped subpackage. Returns ``dest`` (put it first on the import path)."""
    dirs = package_dirs()
    root = dest / PACKAGE
    root.mkdir(parents=True)
    for item in dirs[PACKAGE].iterdir():
        if item.is_file():
            shutil.copy2(item, root / item.name)
    for name, folder in dirs.items():
        if name != PACKAGE:
            os.symlink(folder, root / name.split(".", 1)[1], target_is_directory=True)
    return dest


def run_import_linter() -> tuple[bool, str]:
    """import-linter's contracts from pyproject.toml over the installed view of the package."""
    exe = Path(sys.executable).with_name("lint-imports")
    with tempfile.TemporaryDirectory(prefix="alert-broker-lint-") as tmp:
        view = package_view(Path(tmp))
        # lint-imports puts its working folder first on the import path: run it in the view
        proc = subprocess.run(
            [str(exe), "--no-cache", str(REPO / "pyproject.toml")],
            cwd=view,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(view)},
            check=False,
        )
    return proc.returncode == 0, proc.stdout + proc.stderr


def _module_of(node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.ImportFrom):
        return ["." * node.level + (node.module or "")]
    return [alias.name for alias in node.names]


def function_imports(path: Path) -> list[tuple[int, str, str]]:
    """(line, module, line text) of every import inside a function of ``path``."""
    text = path.read_text()
    lines = text.splitlines()
    out = []
    for fn in ast.walk(ast.parse(text)):
        if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            for node in ast.walk(fn):
                if isinstance(node, ast.Import | ast.ImportFrom):
                    for module in _module_of(node):
                        out.append((node.lineno, module, lines[node.lineno - 1]))
    return sorted(set(out))


def lazy_import_problems() -> list[str]:
    """Imports inside functions that are project modules or carry no ``# lazy:`` reason."""
    problems = []
    for folder in package_dirs().values():
        for path in sorted(folder.rglob("*.py")):
            rel = path.relative_to(REPO)
            for line, module, source in function_imports(path):
                if module.startswith(".") or module == PACKAGE or module.startswith(PACKAGE + "."):
                    problems.append(
                        f"{rel}:{line}: imports the project's own module {module} inside a function; import it "
                        "at the top (a lazy project import hides cycles and layer violations)"
                    )
                elif LAZY_MARK not in source:
                    problems.append(
                        f"{rel}:{line}: imports {module} inside a function without a reason; import it at the "
                        f"top, or say why it must wait in a trailing '{LAZY_MARK} ...' comment"
                    )
    return problems


def main() -> int:
    ok, report = run_import_linter()
    problems = lazy_import_problems()
    if not ok:
        print(report)
    for p in problems:
        print(p)
    if ok and not problems:
        print("architecture: layers kept, no import cycles, every lazy import has a reason")
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
