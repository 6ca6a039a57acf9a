"""The plugin's helpers reach the controller only through :class:`AnnotationHost`'s public names."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import napari_fcfi.plugin as plugin

PLUGIN_DIR = Path(plugin.__file__).resolve().parent
HELPERS = [
    "commit_flow",
    "propagating",
    "points_sync",
    "undoing",
    "stack_tools",
    "segment_all_panel",
    "recovery_banner",
]


def private_uses(source: str) -> list[str]:
    """``controller._x`` / ``self.controller._x`` / ``owner.controller._x`` in ``source``, with lines."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Attribute) or not node.attr.startswith("_"):
            continue
        base = node.value
        name = base.id if isinstance(base, ast.Name) else base.attr if isinstance(base, ast.Attribute) else ""
        if name == "controller":
            found.append(f"{node.lineno}: {ast.unparse(node)}")
    return found


@pytest.mark.parametrize("helper", HELPERS)
def test_helpers_use_no_private_member_of_the_controller(helper):
    source = (PLUGIN_DIR / f"{helper}.py").read_text(encoding="utf-8")
    assert not private_uses(source), f"{helper}.py: {private_uses(source)}"
    # Typed with the interface, not Any (points_sync gets two callbacks instead of the controller).
    assert "AnnotationHost" in source or helper == "points_sync"
    assert "controller: Any" not in source


@pytest.mark.parametrize(
    "module", sorted(p.stem for p in PLUGIN_DIR.glob("*.py") if p.stem not in ("controller", "__init__"))
)
def test_no_plugin_module_but_the_controller_uses_its_private_members(module):
    assert not private_uses((PLUGIN_DIR / f"{module}.py").read_text(encoding="utf-8"))


def test_the_check_finds_private_uses():
    source = "def f(controller):\n    controller._status('x')\n    self.controller._state = 1\n"
    assert len(private_uses(source)) == 2
