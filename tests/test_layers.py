"""The package's rooms import only from rooms below them (docs/architecture.md, "Layers").

Every ``import`` of our own modules counts: at module level and inside functions, so a lazy import
cannot hide an upward dependency or a cycle. Rooms on the same level (``bench`` and ``plugin``;
``model`` and ``sample_data``) do not import each other.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import napari_fcfi

PACKAGE = "napari_fcfi"
PACKAGE_DIR = Path(napari_fcfi.__file__).resolve().parent

#: Level of each room, lowest first. ``__init__`` is the package facade (``napari_fcfi.finetune``...),
#: ``cli`` the ``fcfi`` command that dispatches to the rooms' CLIs.
ROOM_LEVELS: dict[str, int] = {
    "model": 0,
    "sample_data": 0,
    "engine": 1,
    "annotation": 2,
    "evaluation": 3,
    "training": 4,
    "bench": 5,
    "plugin": 5,
    "__init__": 6,
    "cli": 7,
}


def module_name(path: Path, package_dir: Path = PACKAGE_DIR) -> str:
    parts = [PACKAGE, *path.relative_to(package_dir).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def room_of(module: str) -> str:
    """``napari_fcfi.engine.session`` -> ``engine``; ``napari_fcfi`` -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imported_modules(source: str, module: str, is_package: bool) -> list[tuple[int, str]]:
    """``(line, module)`` of every import of our own package in ``source``, wherever it stands."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((node.lineno, target))
    return [(line, name) for line, name in found if name == PACKAGE or name.startswith(PACKAGE + ".")]


def upward_imports(source: str, module: str, is_package: bool = False) -> list[str]:
    """The imports of ``source`` (the code of ``module``) that reach a room not below its own."""
    room = room_of(module)
    bad = []
    for line, target in imported_modules(source, module, is_package):
        target_room = room_of(target)
        if target_room != room and ROOM_LEVELS[target_room] >= ROOM_LEVELS[room]:
            bad.append(f"{module}:{line} ({room}) imports {target} ({target_room})")
    return bad


def package_modules() -> list[Path]:
    return sorted(PACKAGE_DIR.rglob("*.py"))


def test_every_room_has_a_level():
    rooms = {room_of(module_name(path)) for path in package_modules()}
    assert rooms <= set(ROOM_LEVELS), f"rooms without a level: {sorted(rooms - set(ROOM_LEVELS))}"
    assert {"model", "engine", "annotation", "evaluation", "training", "plugin"} <= rooms


def test_no_room_imports_from_a_room_above_or_beside_it():
    bad = []
    for path in package_modules():
        bad += upward_imports(path.read_text(encoding="utf-8"), module_name(path), path.name == "__init__.py")
    assert not bad, "imports against the layer order:\n" + "\n".join(bad)


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        ("napari_fcfi.engine.x", "def f():\n    from napari_fcfi.annotation import journal\n", 1),
        ("napari_fcfi.evaluation.x", "import napari_fcfi.training.finetune\n", 1),
        ("napari_fcfi.evaluation.x", "from ..training import finetune\n", 1),
        ("napari_fcfi.plugin.x", "from napari_fcfi.bench import timing\n", 1),
        ("napari_fcfi.model.x", "from napari_fcfi import finetune\n", 1),
        ("napari_fcfi.training.x", "from napari_fcfi.evaluation import robot\nfrom . import data\n", 0),
        ("napari_fcfi.plugin.x", "import napari\nfrom napari_fcfi.engine.clicks import Click\n", 0),
    ],
)
def test_the_rule_finds_upward_imports_wherever_they_stand(module, source, expected):
    assert len(upward_imports(source, module)) == expected
