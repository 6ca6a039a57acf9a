"""Shared fixtures: torch threads, paths to the read-only shared data, tiny models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from helpers.paths import SHARED_DATA


@pytest.fixture(autouse=True, scope="session")
def _journals_in_a_temporary_folder(tmp_path_factory):
    """Tests never leave recovery journals in the user's cache (they would be offered for restore)."""
    import os

    from napari_fcfi.annotation.journal import RECOVERY_ENV_VAR

    previous = os.environ.get(RECOVERY_ENV_VAR)
    os.environ[RECOVERY_ENV_VAR] = str(tmp_path_factory.mktemp("recovery"))
    yield
    if previous is None:
        os.environ.pop(RECOVERY_ENV_VAR, None)
    else:
        os.environ[RECOVERY_ENV_VAR] = previous


@pytest.fixture(autouse=True, scope="session")
def _limit_torch_threads():
    try:
        import torch
    except ImportError:  # pragma: no cover
        return
    torch.set_num_threads(2)
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """The plugin sets torch's (process-wide) thread count for CPU inference; restore it."""
    try:
        import torch
    except ImportError:  # pragma: no cover
        yield
        return
    previous = torch.get_num_threads()
    yield
    torch.set_num_threads(previous)


def _torch_threads(count: int):
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def one_torch_thread():
    """Tiny tensors: a second intra-op thread only spins (10x slower on a busy 2-core machine)."""
    yield from _torch_threads(1)


@pytest.fixture(scope="module")
def one_torch_thread_per_module():
    """``one_torch_thread`` for a whole module (``pytestmark = pytest.mark.usefixtures(...)``)."""
    yield from _torch_threads(1)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def dsb_dir() -> Path:
    path = SHARED_DATA / "dsb2018_train"
    if not path.is_dir():
        pytest.skip("shared dsb2018_train data not present")
    return path


@pytest.fixture(scope="session")
def grabcut_dir() -> Path:
    path = SHARED_DATA / "grabcut"
    if not path.is_dir():
        pytest.skip("shared grabcut data not present")
    return path


@pytest.fixture(scope="session")
def tiny_fcfi_net():
    """A small random FCFI network (HRNet-W8 tiny), seeded: real code paths, meaningless output."""
    import torch

    from napari_fcfi.model.networks import build_preset

    torch.manual_seed(0)
    return build_preset("hrnet8-small-tiny").eval()
