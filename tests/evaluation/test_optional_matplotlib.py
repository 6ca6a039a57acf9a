"""matplotlib is the optional [eval] extra: without it `fcfi eval` stops at once and says what to install."""

import sys

import pytest

from napari_fcfi.cli import main


def test_fcfi_eval_without_matplotlib_names_the_extra_before_evaluating(tmp_path, monkeypatch):
    # None in sys.modules makes `import matplotlib` fail as on a machine without it.
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.delitem(sys.modules, "napari_fcfi.evaluation.plots", raising=False)
    out = tmp_path / "results"
    with pytest.raises(ImportError, match=r'pip install "napari-fcfi\[eval\]"'):
        main(["eval", "--baseline", "random-walker", "--stacks", "sample", "--out", str(out)])
    assert not out.exists()  # nothing was evaluated or written
