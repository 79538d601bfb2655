"""The house's import rules, read from the source with ``ast`` (nothing is imported).

Imports run one way, each layer importing only from the layers below it:

    0  vireid (the package root), constants, records, errors, choices, fields, outputs, files
    1  datasets          raw layout → records
    2  shards            records → tar + .idx + manifest
    3  loader, model, fake
                         manifest → batches; the network; fake raw trees (fake writes a
                         dataset's layout with shards' output-path checks). The three never
                         import one another.
    4  eval              features, protocols, metrics (uses the loader)
    5  train             config, engine, runner (uses model and eval)
    6  export            ONNX/TorchScript graphs per modality, parity, vireid-test --model
    7  cli               typer apps; nothing imports them (not benchmarks or tools either)

Every import counts: module level, inside functions (the lazy ones) and under
``TYPE_CHECKING``. Heavy or interface-only dependencies stay in one place: ``nvidia.dali`` in
``vireid/loader/``, ``numba`` in ``vireid/loader/fused.py``, ``typer`` and ``click`` in
``vireid/cli/``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "vireid"
LAYERS = {"base": 0, "datasets": 1, "shards": 2, "loader": 3, "model": 3, "fake": 3,
          "eval": 4, "train": 5, "export": 6, "cli": 7}
BASE_MODULES = {"constants", "records", "errors", "choices", "fields", "outputs", "files"}
CONFINED = {  # third-party top-level package → where it may be imported
    "nvidia": "vireid/loader/",
    "numba": "vireid/loader/fused.py",
    "typer": "vireid/cli/",
    "click": "vireid/cli/",
    "onnx": "vireid/export/",
    "onnxruntime": "vireid/export/",
    "onnxscript": "vireid/export/",
}


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(path: Path) -> list[tuple[int, str]]:
    """(line, dotted name) of every import in ``path``, however deep in the tree it sits.

    ``from a import b`` yields ``a.b`` (``b`` may be a submodule); relative imports are
    resolved against the module's package.
    """
    package = module_name(path)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    names = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # from . import x / from ..y import x
                anchor = package.split(".")[:len(package.split(".")) + 1 - node.level]
                base = ".".join([*anchor, base] if base else anchor)
            names += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return names


def unit_of(dotted: str) -> str | None:
    """The layer unit of a ``vireid`` name: "base" or a subpackage; None outside vireid."""
    parts = dotted.split(".")
    if parts[0] != "vireid":
        return None
    if len(parts) > 1 and parts[1] in packages():
        return parts[1]
    return "base"  # the root itself, a base module or a name from vireid/__init__.py


def packages() -> set[str]:
    return {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}


def where(path: Path, line: int) -> str:
    return f"{path.relative_to(ROOT)}:{line}"


def test_every_package_and_top_level_module_has_a_layer():
    top = {p.stem for p in PACKAGE.glob("*.py") if p.name != "__init__.py"}
    assert top <= BASE_MODULES, f"place {sorted(top - BASE_MODULES)} in a layer"
    assert packages() <= set(LAYERS), f"place {sorted(packages() - set(LAYERS))} in a layer"


def test_the_walker_sees_lazy_and_type_checking_imports():
    lazy = {name for _, name in imported_names(PACKAGE / "loader" / "dali_pipes.py")}
    assert "nvidia.dali.fn" in lazy  # inside import_dali()
    hinted = {name for _, name in imported_names(PACKAGE / "shards" / "manifest_checks.py")}
    assert "vireid.shards.manifest.Manifest" in hinted  # under TYPE_CHECKING


def test_imports_run_one_way():
    upward = []
    for path in modules():
        own = unit_of(module_name(path))
        for line, name in imported_names(path):
            target = unit_of(name)
            if target is None or target == own:
                continue
            if LAYERS[target] >= LAYERS[own]:
                upward.append(f"{where(path, line)}: {own} imports {name} ({target})")
    assert upward == []


@pytest.mark.parametrize("folder", ["vireid", "benchmarks", "tools"])
def test_nothing_imports_the_cli(folder):
    offenders = [f"{where(path, line)}: {name}" for path in sorted((ROOT / folder).rglob("*.py"))
                 if not path.is_relative_to(PACKAGE / "cli")
                 for line, name in imported_names(path) if unit_of(name) == "cli"]
    assert offenders == []


@pytest.mark.parametrize("dependency", sorted(CONFINED))
def test_heavy_dependencies_stay_in_their_place(dependency):
    home = CONFINED[dependency]
    offenders = [f"{where(path, line)}: {name}" for path in modules()
                 if not str(path.relative_to(ROOT)).startswith(home)
                 for line, name in imported_names(path) if name.split(".")[0] == dependency]
    assert offenders == [], f"{dependency} belongs in {home} only"


LONGEST_FUNCTION = 80  # lines, decorators and docstring included


def test_no_function_is_longer_than_the_house_allows():
    """Long functions are where settings get read by string and routes decided twice: split
    them (docs/architecture.md)."""
    long = [f"{path.relative_to(ROOT)}:{node.lineno} {node.name} "
            f"({node.end_lineno - start + 1} lines)"
            for path in modules() for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            for start in [min([node.lineno, *(d.lineno for d in node.decorator_list)])]
            if node.end_lineno - start + 1 > LONGEST_FUNCTION]
    assert long == []
