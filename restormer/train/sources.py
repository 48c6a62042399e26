"""Data sources of a config (folders, image files, ``skimage:`` photos) -> decoded images.

``skimage:`` is the colour photographs shipped inside the scikit-image package (no download);
``skimage:NAME,NAME`` picks files of its data folder by name (e.g. ``skimage:camera,coffee``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from restormer_deploy.restormer.imageio import IMAGE_EXTENSIONS, ImageReadError, list_images, read_image

# The colour photographs among skimage's bundled data (synthetic charts and near-duplicates left out).
SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "hubble_deep_field", "ihc", "motorcycle_left", "retina", "rocket")


def skimage_dir() -> Path:
    import skimage

    return Path(skimage.__file__).resolve().parent / "data"


def _skimage_files(names: str) -> list[Path]:
    folder = skimage_dir()
    wanted = [n.strip() for n in names.split(",") if n.strip()] or list(SKIMAGE_PHOTOS)
    files = []
    for name in wanted:
        hits = sorted(p for p in folder.glob(name + ".*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not hits:
            raise FileNotFoundError(f"skimage:{name}: no image named {name} in {folder}")
        files.append(hits[0])
    return files


def source_files(sources: list[str]) -> list[Path]:
    """Every image file of the sources, in order, without duplicates."""
    files: list[Path] = []
    for src in sources:
        if src.startswith("skimage:"):
            files += _skimage_files(src[len("skimage:"):])
            continue
        path = Path(src).expanduser()
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            found = list_images(path)
            if not found:
                raise FileNotFoundError(f"no images (png/jpg/bmp/tif) in data folder {path}")
            files += found
        else:
            raise FileNotFoundError(f"data source not found: {src}")
    seen, unique = set(), []
    for f in files:
        if f.resolve() not in seen:
            seen.add(f.resolve())
            unique.append(f)
    return unique


def pair_files(lq_dirs: list[str], gt_dirs: list[str], warn: Callable[[str], None]) -> list[tuple[Path, Path]]:
    """(LQ, GT) files matched by name without extension, folder by folder."""
    pairs = []
    for lq_dir, gt_dir in zip(lq_dirs, gt_dirs):
        gts = source_files([gt_dir])
        lqs = {p.stem: p for p in source_files([lq_dir])}
        missing = [g.name for g in gts if g.stem not in lqs]
        if missing:
            warn(f"{len(missing)} of {len(gts)} images in {gt_dir} have no match in {lq_dir} (e.g. {missing[0]}); skipped")
        pairs += [(lqs[g.stem], g) for g in gts if g.stem in lqs]
    if not pairs:
        raise FileNotFoundError(f"no LQ/GT pairs with matching file names in {lq_dirs} / {gt_dirs}")
    return pairs


@dataclass
class Loaded:
    images: list = field(default_factory=list)  # arrays (or paths when not cached), or (lq, gt) pairs
    names: list[str] = field(default_factory=list)
    sizes: list[tuple[int, int]] = field(default_factory=list)  # (height, width) of each (ground-truth) image
    unreadable: int = 0
    grey_skipped: int = 0


def load(path: Path, channels: int, grey_to_rgb: bool) -> np.ndarray | None:
    """HxWxC uint8/uint16 with ``channels`` channels; None for a grey image a colour model must skip."""
    img = read_image(path, channels=1 if channels == 1 else None)
    if channels == 3 and img.shape[2] == 1:
        return np.repeat(img, 3, axis=2) if grey_to_rgb else None
    return img


def load_all(items: list, channels: int, grey_to_rgb: bool, cache: bool, warn: Callable[[str], None]) -> Loaded:
    """Decode every file (or (lq, gt) pair); unreadable ones are skipped with a warning and counted."""
    out = Loaded()
    for item in items:
        paths = item if isinstance(item, tuple) else (item,)
        try:
            imgs = [load(p, channels, grey_to_rgb) for p in paths]
        except (ImageReadError, OSError) as exc:
            warn(f"skipped unreadable image: {str(exc).splitlines()[0]}")
            out.unreadable += 1
            continue
        if any(i is None for i in imgs):
            out.grey_skipped += 1
            continue
        out.images.append((tuple(imgs) if len(imgs) > 1 else imgs[0]) if cache else item)
        out.names.append(paths[-1].name)
        out.sizes.append(imgs[-1].shape[:2])
    if out.grey_skipped:
        warn(f"skipped {out.grey_skipped} grey image(s) for a colour model (set data.grey_to_rgb=true to use them)")
    return out
