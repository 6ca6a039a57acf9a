"""Image and mask files matched by name in the folder layouts of the datasets (see :mod:`.datasets`)."""

from __future__ import annotations

from pathlib import Path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
TIFF_SUFFIXES = (".tif", ".tiff")


def find_by_stem(folder: Path) -> dict[str, Path]:
    """Image files of ``folder`` by stem."""
    return {p.stem: p for p in sorted(folder.iterdir()) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES}


def require_dir(path: Path, what: str) -> Path:
    """``path``, or a ValueError naming ``what`` when it is not a folder."""
    if not path.is_dir():
        raise ValueError(f"{what}: folder {path} does not exist")
    return path


def pairs_from_dirs(images_dir: Path, masks_dir: Path, name: str) -> list[tuple[str, Path, Path]]:
    """``(stem, image, mask)`` of same-stem files in two folders; every image needs a mask."""
    images = find_by_stem(require_dir(images_dir, name))
    masks = find_by_stem(require_dir(masks_dir, name))
    pairs = []
    for stem, image_path in images.items():
        mask_path = masks.get(stem)
        if mask_path is None:
            raise ValueError(f"{name}: no mask for image {image_path} in {masks_dir}")
        pairs.append((stem, image_path, mask_path))
    return pairs


def pairs_from_suffixes(
    folder: Path, image_tag: str, mask_tag: str, name: str
) -> list[tuple[str, Path, Path]]:
    """``(stem, image, mask)`` of ``<stem><image_tag>.*`` / ``<stem><mask_tag>.*`` files in one folder."""
    images: dict[str, Path] = {}
    masks: dict[str, Path] = {}
    for path in sorted(require_dir(folder, name).iterdir()):
        if not path.is_file() or path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if path.stem.endswith(image_tag):
            images[path.stem[: -len(image_tag)]] = path
        elif path.stem.endswith(mask_tag):
            masks[path.stem[: -len(mask_tag)]] = path
    pairs = []
    for stem, image_path in sorted(images.items()):
        if stem not in masks:
            raise ValueError(f"{name}: no {mask_tag} file for image {image_path}")
        pairs.append((stem, image_path, masks[stem]))
    return pairs


def instance_folder_pairs(path: str | Path) -> list[tuple[str, Path, Path]]:
    """``(id, image path, labels path)`` of an instance folder of ``<id>_image.*`` / ``<id>_labels.*`` files."""
    return pairs_from_suffixes(Path(path), "_image", "_labels", f"instance folder {path}")


def instance_folder_ids(path: str | Path) -> list[str]:
    """Sorted ids ``<id>`` of an instance folder holding ``<id>_image.*`` and ``<id>_labels.*`` files."""
    return [p[0] for p in instance_folder_pairs(path)]
