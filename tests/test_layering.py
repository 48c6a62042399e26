"""The package layering and the packaging of the one import namespace, ``restormer_deploy``.

Layers (import-linter contracts in pyproject.toml, imports inside functions included):
cli > calibration | engines > export > restormer; calibration and engines are independent; no import
of the old top-level names (cli, export, ...); no import cycles between sibling modules or packages.

import-linter finds a package's modules from its folder on disk. The editable install maps
``restormer_deploy.<name>`` to the folders of the checkout it was made from, which need not be this
one, so the check runs on a throw-away ``restormer_deploy/`` of links to this checkout's five folders,
put first on the path.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NS = "restormer_deploy"
NAMES = ("restormer", "export", "engines", "calibration", "cli")
SKIP = {"__pycache__", "build"}


def _linked_tree(tmp: Path) -> Path:
    ns = tmp / NS
    ns.mkdir()
    for name in NAMES:
        (ns / name).symlink_to(ROOT / name, target_is_directory=True)
    return tmp


def test_layering_contracts_are_kept(tmp_path):
    try:
        import importlinter  # noqa: F401
    except ImportError:  # a guard, so not a skip: make test and CI install the dev extra
        pytest.fail("import-linter is missing: pip install -e '.[dev]'")
    tree = _linked_tree(tmp_path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tree), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    p = subprocess.run([sys.executable, "-c", "from importlinter.cli import lint_imports_command as c; c()",
                        str(ROOT / "pyproject.toml"), "--no-cache"],
                       cwd=tree, env=env, capture_output=True, text=True, timeout=300)
    report = p.stdout[max(p.stdout.find("Contracts"), 0):] + p.stderr
    assert p.returncode == 0, f"lint-imports (import-linter) failed:\n{report}"
    assert "0 broken" in p.stdout and "Analyzed" in p.stdout, report


def _folders_with_python() -> set[str]:
    found = set()
    for name in NAMES:
        for path in (ROOT / name).rglob("*.py"):
            rel = path.relative_to(ROOT).parts[:-1]
            if not SKIP.intersection(rel) and not any(p.startswith(".") for p in rel):
                found.add(".".join(rel))
    return found


def test_every_package_folder_is_shipped():
    """pyproject.toml lists the packages by hand (package-dir needs it): a folder with Python files
    missing from the list would be left out of the wheel."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert setuptools["package-dir"] == {f"{NS}.{n}": n for n in NAMES}
    listed = set(setuptools["packages"])
    assert all(p.startswith(f"{NS}.") for p in listed)
    listed = {p.removeprefix(f"{NS}.") for p in listed}
    missing = _folders_with_python() - listed
    assert not missing, f"add to [tool.setuptools] packages in pyproject.toml: {sorted(f'{NS}.{m}' for m in missing)}"
    gone = {p for p in listed if not (ROOT / p.replace(".", "/")).is_dir()}
    assert not gone, f"listed in pyproject.toml but no such folder: {sorted(gone)}"


def test_nothing_imports_the_old_top_level_names():
    """Run from the repository root, an old top-level name would still find its folder and load a second
    copy of a module (two error classes of one name). The packages are covered by the contracts; this
    covers the tests, scripts and benchmarks (imports inside functions too)."""
    bad = []
    for folder in ("tests", "scripts", "benchmarks"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and not node.level:
                    names = [node.module or ""]
                else:
                    continue
                bad += [f"{path.relative_to(ROOT)}:{node.lineno}: {n}" for n in names if n.split(".")[0] in NAMES]
    assert not bad, f"import these through {NS}. (python rename.py fixes them):\n" + "\n".join(bad)
