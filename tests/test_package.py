"""The package, its CLI and its napari manifest are wired correctly."""

import subprocess
import sys

import pytest

from napari_fcfi.cli import SUBCOMMANDS, main


def test_fcfi_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as excinfo:
        main(["--help"])
    assert excinfo.value.code == 0
    out = capsys.readouterr().out
    for name in SUBCOMMANDS:
        assert name in out


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_every_subcommand_has_help(name, capsys):
    with pytest.raises(SystemExit) as excinfo:
        main([name, "--help"])
    assert excinfo.value.code == 0
    assert f"fcfi {name}" in capsys.readouterr().out


def test_console_script_runs():
    result = subprocess.run(
        [sys.executable, "-m", "napari_fcfi.cli", "--version"], capture_output=True, text=True, check=True
    )
    assert "napari-fcfi" in result.stdout


def test_version_is_the_installed_distributions():
    """Defined once: the git tag the package was built from, read back from its metadata."""
    from importlib.metadata import version

    import napari_fcfi

    assert napari_fcfi.__version__ == version("napari-fcfi")


def test_manifest_validates_and_is_installed():
    import npe2

    manifest = npe2.PluginManifest.from_distribution("napari-fcfi")
    assert manifest.name == "napari-fcfi"
    command_ids = {c.id for c in manifest.contributions.commands}
    assert "napari-fcfi.make_widget" in command_ids
    result = subprocess.run(
        [sys.executable, "-m", "npe2", "validate", "napari-fcfi"], check=False, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_readme_python_snippets_run_as_written(tmp_path, monkeypatch):
    """The README's Python blocks, in order, in one namespace (a short adaptation budget)."""
    import re

    from helpers.paths import REPO_ROOT

    text = (REPO_ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    assert len(blocks) >= 2
    monkeypatch.chdir(tmp_path)  # files the snippets write land here
    namespace: dict = {}
    for block in blocks:
        code = compile(block.replace("time_budget_s=60", "steps=2"), "README.md", "exec")
        exec(code, namespace)
    assert namespace["mask"].shape == (256, 256) and namespace["masks"]
    assert (tmp_path / "my_model.safetensors").exists() and (tmp_path / "my_model.md").exists()
