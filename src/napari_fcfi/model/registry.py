"""Named models: the bundled default and the official FCFI release checkpoints.

A registry entry says where a model file comes from. The bundled model ships inside the package;
official checkpoints are downloaded once with pooch into the user cache
(``pooch.os_cache("napari-fcfi")``, or the folder named by the environment variable
``NAPARI_FCFI_CACHE``). Setting ``NAPARI_FCFI_OFFLINE=1`` forbids downloads altogether.

The official release is hosted on Google Drive (links from the official README). Drive serves small
files directly but answers large ones (the 224 MB ResNet-101) with an HTML "virus scan" page that
pooch cannot get past. Every download is therefore checked (not HTML, expected size, sha256 where
known) and a failed one ends in :class:`ModelDownloadError` telling the user how to fetch the file
by hand: put it into the cache folder under the registry's file name, or pass its path to
``load_model``.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "ModelEntry",
    "ModelDownloadError",
    "REGISTRY",
    "BUNDLED_WEIGHTS",
    "cache_dir",
    "get_entry",
    "registry_names",
    "cached_file",
    "fetch",
    "list_models",
]

CACHE_ENV_VAR = "NAPARI_FCFI_CACHE"
OFFLINE_ENV_VAR = "NAPARI_FCFI_OFFLINE"

#: The model shipped inside the package (written by the training room with ``save_model``).
BUNDLED_WEIGHTS = Path(__file__).resolve().parent.parent / "weights" / "fcfi_default.safetensors"

#: Relative tolerance of the size check for files without a published sha256.
SIZE_TOLERANCE = 0.01

_OFFICIAL_README = "https://github.com/veizgyauzgyauz/FCFI#pre-trained-models"


class ModelDownloadError(RuntimeError):
    """A registered model could not be downloaded (offline, blocked URL, wrong content)."""


@dataclass(frozen=True)
class ModelEntry:
    """One named model.

    ``url`` is None for the bundled model. ``sha256`` is None where the publisher gives no checksum;
    ``size_bytes`` (when known, checked to within :data:`SIZE_TOLERANCE`) then catches error pages and
    truncated downloads, and the strict checkpoint loader does the rest. ``kind`` is ``"bundled"`` (our
    safetensors inside the package) or ``"official"`` (an official ``.pth`` checkpoint).
    """

    name: str
    description: str
    arch: str
    kind: str
    filename: str
    url: str | None = None
    sha256: str | None = None
    size_bytes: int | None = None  # approximate (see SIZE_TOLERANCE) unless sha256 is given
    homepage: str | None = None


#: Earlier bundled defaults kept for one release: ``weights/fcfi_default_v<N>.safetensors`` is
#: registered as ``default-v<N>`` (written by ``scripts/line_report.py ship``).
PREVIOUS_BUNDLED = re.compile(r"fcfi_default_v(\d+)\.safetensors")


def _previous_bundled() -> list[ModelEntry]:
    found = []
    for path in BUNDLED_WEIGHTS.parent.glob("fcfi_default_v*.safetensors"):
        match = PREVIOUS_BUNDLED.fullmatch(path.name)
        if match:
            found.append((int(match.group(1)), path.name))
    return [
        ModelEntry(
            name=f"default-v{version}",
            description=f"an earlier bundled default (bundled model v{version}); kept for one release",
            arch="hrnet",
            kind="bundled",
            filename=filename,
        )
        for version, filename in sorted(found)
    ]


REGISTRY: dict[str, ModelEntry] = {
    entry.name: entry
    for entry in (
        ModelEntry(
            name="default",
            description="napari-fcfi bundled default model (see its metadata and weights/README.md)",
            arch="hrnet",
            kind="bundled",
            filename=BUNDLED_WEIGHTS.name,
        ),
        *_previous_bundled(),
        ModelEntry(
            name="fcfi-hrnet18s-cocolvis",
            description=(
                "official FCFI release: HRNet-18 (full depth, called 'HRNet18s') + OCR-48, "
                "trained on COCO+LVIS (CVPR 2023)"
            ),
            arch="hrnet",
            kind="official",
            filename="fcfi_hrnet18s_cocolvis.pth",
            # Link as given in the official README; no checksum is published. Size: the file the
            # official scripts write for this config (docs/official_checkpoints; README: 39.5 MB).
            url="https://drive.google.com/u/0/uc?id=1RzUKXWIydewf6qZy48HyLoU21arOVZg2&export=download",
            sha256=None,
            size_bytes=41_490_790,
            homepage=_OFFICIAL_README,
        ),
        ModelEntry(
            name="fcfi-resnet101-sbd",
            description="official FCFI release: ResNet-101 DeepLabV3+, trained on SBD (CVPR 2023)",
            arch="deeplab",
            kind="official",
            filename="fcfi_resnet101_sbd.pth",
            url="https://drive.google.com/u/0/uc?id=1bxfaDRZAv7qNfHZXtVeNken2ndpFJ7BF&export=download",
            sha256=None,
            size_bytes=234_893_181,
            homepage=_OFFICIAL_README,
        ),
    )
}


def cache_dir() -> Path:
    """Folder for downloaded weights: ``$NAPARI_FCFI_CACHE`` or pooch's per-user cache."""
    override = os.environ.get(CACHE_ENV_VAR)
    if override:
        return Path(override).expanduser()
    import pooch

    return Path(pooch.os_cache("napari-fcfi"))


def registry_names() -> list[str]:
    return list(REGISTRY)


def get_entry(name: str) -> ModelEntry:
    """The registry entry called ``name``; KeyError listing the known names otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"no registered model {name!r}; known: {', '.join(REGISTRY)}") from None


def _entry_path(entry: ModelEntry) -> Path:
    """Bundled models live beside :data:`BUNDLED_WEIGHTS` (the default is that file); others in the cache."""
    if entry.kind != "bundled":
        return cache_dir() / entry.filename
    return BUNDLED_WEIGHTS if entry.name == "default" else BUNDLED_WEIGHTS.parent / entry.filename


def cached_file(name: str) -> Path | None:
    """Path of the model's file if it is already on disk (bundled or in the cache), else None."""
    path = _entry_path(get_entry(name))
    return path if path.is_file() else None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _manual_instructions(entry: ModelEntry) -> str:
    target = cache_dir() / entry.filename
    return (
        f"Download it by hand from {entry.url} (a browser gets past Google Drive's confirmation page; "
        f"see also {entry.homepage}), then either save it as {target} or pass the file's path to "
        "load_model(...) / the plugin's model chooser."
    )


def _problem_with_file(entry: ModelEntry, path: Path) -> str | None:
    """Why ``path`` is not the expected file (None when it looks right)."""
    with open(path, "rb") as handle:
        head = handle.read(512).lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")) or b"<html" in head:
        return "the server sent an HTML page instead of the checkpoint (Google Drive confirmation page?)"
    size = path.stat().st_size
    # torch.save archives embed the file's own name in every entry, so the same weights saved under
    # another name differ by a few hundred bytes: the size is only checked to within a tolerance.
    if entry.size_bytes is not None and abs(size - entry.size_bytes) > SIZE_TOLERANCE * entry.size_bytes:
        return f"the file has {size:,} bytes, expected about {entry.size_bytes:,}"
    if entry.sha256 is not None:
        actual = _sha256(path)
        if actual != entry.sha256:
            return f"sha256 {actual} does not match the registered {entry.sha256}"
    return None


def fetch(name: str, *, progressbar: bool = False) -> Path:
    """Local path of the registered model ``name``, downloading it into the cache when needed.

    Raises FileNotFoundError when the bundled weights are missing, :class:`ModelDownloadError` when a
    download is impossible (offline, ``NAPARI_FCFI_OFFLINE`` set, URL not downloadable, wrong
    content). A cached file that fails the size/sha256 check is reported, never silently replaced.
    """
    entry = get_entry(name)
    if entry.kind == "bundled":
        path = _entry_path(entry)
        if not path.is_file():
            raise FileNotFoundError(
                f"the bundled weights are missing: {path} does not exist. This installation "
                f"ships without the {entry.name!r} model; pass a registry name "
                f"({', '.join(n for n in REGISTRY if n != entry.name)}) or a checkpoint path instead."
            )
        return path

    target = cache_dir() / entry.filename
    if target.is_file():
        problem = _problem_with_file(entry, target)
        if problem:
            raise ModelDownloadError(
                f"cached file {target} for {name!r} is not the expected checkpoint: {problem}. "
                "Delete it and try again. " + _manual_instructions(entry)
            )
        return target

    if entry.url is None:  # pragma: no cover - every downloadable entry has a URL
        raise ModelDownloadError(f"model {name!r} has no download URL")
    if os.environ.get(OFFLINE_ENV_VAR, "").strip() not in ("", "0"):
        raise ModelDownloadError(
            f"model {name!r} is not in the cache ({target}) and downloads are disabled "
            f"({OFFLINE_ENV_VAR} is set). " + _manual_instructions(entry)
        )

    import pooch

    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        downloaded = Path(
            pooch.retrieve(
                url=entry.url,
                known_hash=f"sha256:{entry.sha256}" if entry.sha256 else None,
                fname=entry.filename,
                path=target.parent,
                progressbar=progressbar,
            )
        )
    except Exception as error:  # network errors come from requests, hash errors as ValueError
        raise ModelDownloadError(
            f"could not download model {name!r} from {entry.url}: {type(error).__name__}: {error}. "
            "Are you offline? " + _manual_instructions(entry)
        ) from error

    problem = _problem_with_file(entry, downloaded)
    if problem:
        downloaded.unlink(missing_ok=True)  # never leave a bad file where the next call would trust it
        raise ModelDownloadError(
            f"the download of {name!r} from {entry.url} failed: {problem}. " + _manual_instructions(entry)
        )
    return downloaded


def list_models() -> list[dict[str, Any]]:
    """Every registered model with its on-disk status.

    Each dict has the :class:`ModelEntry` fields (name, description, arch, kind, filename, url,
    sha256, size_bytes, homepage) plus ``path`` (where the file is or would be) and ``available``
    (True when the file is on disk, i.e. loading needs no download).
    """
    rows = []
    for entry in REGISTRY.values():
        path = _entry_path(entry)
        row = asdict(entry)
        row["path"] = str(path)
        row["available"] = path.is_file()
        rows.append(row)
    return rows
