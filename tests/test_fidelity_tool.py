"""scripts/check_official.py: one tool, four fidelity checks (the checks themselves need the official code)."""

from __future__ import annotations

import importlib
import sys

import pytest

from helpers.paths import REPO_ROOT


@pytest.fixture
def tool(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO_ROOT / "scripts"))
    module = importlib.import_module("check_official")
    yield module
    for name in [n for n in sys.modules if n == "check_official" or n.startswith("fidelity")]:
        del sys.modules[name]


def test_the_tool_lists_its_four_checks(tool, capsys):
    with pytest.raises(SystemExit) as exit_info:
        tool.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for check in ("hrnet", "deeplab", "protocol", "checkpoints"):
        assert check in out


def test_a_folder_that_is_not_the_official_code_is_refused_clearly(tool, tmp_path):
    with pytest.raises(SystemExit, match="not a checkout of the official FCFI code"):
        tool.main(["deeplab", "--official-repo", str(tmp_path)])
