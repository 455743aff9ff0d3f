"""Every third-party package the code imports directly is declared in pyproject.toml."""

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("src", "stages", "tests", "benchmarks", "scripts")
# this repo's own: the package and every module file of FOLDERS (tests import their siblings' helpers)
LOCAL = {"voicegender"} | {p.stem for folder in FOLDERS for p in (ROOT / folder).rglob("*.py")}


def imported_top_level_modules() -> dict[str, str]:
    """Top-level module -> one file importing it, over every .py file of FOLDERS."""
    found = {}
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    found.setdefault(name.split(".")[0], str(path.relative_to(ROOT)))
    return found


def declared_distributions() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    return {_normalise(re.split(r"[\s<>=!~\[;]", r, maxsplit=1)[0]) for r in requirements}


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_directly_imported_package_is_declared():
    declared = declared_distributions()
    distributions = packages_distributions()  # module -> the installed distributions providing it
    missing = []
    for module, where in imported_top_level_modules().items():
        if module in sys.stdlib_module_names or module in LOCAL:
            continue
        provided_by = {_normalise(d) for d in distributions.get(module, [module])}
        if not provided_by & declared:
            missing.append(f"{module} (imported in {where})")
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"
