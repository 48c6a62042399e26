"""Restoring image files with a runner: what restore-run does for each input, without the display.

``expand_inputs`` turns files, folders and globs into the list of inputs; a ``Restorer`` first
``plan``s the batch (which items would overwrite an input or another item's output), then
``restore``s each path into an ``Item`` (ok, skipped or error: one image failing does not stop the
others). Outputs keep the input's name, format and bit depth; grey inputs give grey outputs; the
alpha channel is passed through; files appear atomically (``restormer_deploy.restormer.imageio.write_image``).
"""

from __future__ import annotations

import glob
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from restormer_deploy.restormer.degrade import BicubicSR, Degradation
from restormer_deploy.restormer.errors import BadInput, one_line
from restormer_deploy.restormer.fileio import check_output_folder
from restormer_deploy.restormer.imageio import (IMAGE_EXTENSIONS, list_images, read_icc_profile, read_image, read_image_alpha,
                               storable_path, write_image)
from restormer_deploy.restormer.metrics import PSNR_CAP, task_scores
from restormer_deploy.restormer.tiling import Tiling, choose_tiling, restore_array

# What fails one item (and not the batch): bad files, runtime errors of the backend, memory.
ITEM_ERRORS = (ValueError, OSError, RuntimeError, MemoryError)


@dataclass
class Item:
    """One input of a batch and what became of it."""

    input: str
    output: str | None = None
    status: str = "pending"  # ok | skipped | error
    seconds: float = 0.0
    error: str | None = None
    psnr: float | None = None
    ssim: float | None = None
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        d = {"input": self.input, "output": self.output, "status": self.status, "seconds": round(self.seconds, 4)}
        if self.error:
            d["error"] = self.error
        if self.psnr is not None:
            d["psnr"] = self.psnr if math.isfinite(self.psnr) else PSNR_CAP
            d["ssim"] = self.ssim if self.ssim is not None and math.isfinite(self.ssim) else None
        d.update(self.extra)
        return d


class ItemError(BadInput):
    """One image failed; the message is one line."""


GREY_MODEL_NOTE = "grey model: colour input converted to luma (BT.601)"


def missing_reason(text: str) -> str:
    """Why a path given as an input is not there, in the words of its form."""
    if text.endswith(("/", os.sep)):
        return "no such folder"
    return "no such file" if Path(text).suffix.lower() in IMAGE_EXTENSIONS else "no such file or folder"


def expand_inputs(inputs: list[str]) -> list[Path]:
    """Files, folders (their images) and globs, in order, without duplicates; missing files are kept
    (they fail as items, "no such file"), unless nothing given exists: then BadInput, before any work."""
    found: list[Path] = []
    missing: list[str] = []
    for text in inputs:
        path = Path(text)
        if path.is_dir():
            found.extend(list_images(path))
        elif path.exists():
            found.append(path)
        elif any(ch in text for ch in "*?["):
            found.extend(Path(p) for p in sorted(glob.glob(text)) if Path(p).is_file()
                         and Path(p).suffix.lower() in IMAGE_EXTENSIONS)
        else:
            found.append(path)
            missing.append(text)
    if missing and len(missing) == len(found):
        raise BadInput("; ".join(f"{missing_reason(text)}: {text}" for text in missing))
    seen, unique = set(), []
    for p in found:
        key = os.path.abspath(p)
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique


def _peak(dtype) -> float:
    return 255.0 if np.dtype(dtype) == np.uint8 else 65535.0


def _to_uint(x: np.ndarray, dtype, *, inplace: bool = False) -> np.ndarray:
    """(C, H, W) float -> HxWxC uint, clipped and rounded; ``inplace`` reuses x as scratch (no float temporaries)."""
    y = x if inplace else x.copy()
    np.clip(y, 0, 1, out=y)
    y *= _peak(dtype)
    np.rint(y, out=y)
    return y.transpose(1, 2, 0).astype(dtype)


def _grey(img: np.ndarray) -> np.ndarray:
    if img.shape[2] == 1:
        return img
    luma = np.round(np.dot(img.astype(np.float64), [0.299, 0.587, 0.114]))
    return luma.astype(img.dtype)[..., None]


def _find_gt(gt_dir: Path, name: Path) -> Path:
    exact = gt_dir / name.name
    if exact.is_file():
        return exact
    for ext in IMAGE_EXTENSIONS:
        for cand in (gt_dir / (name.stem + ext), gt_dir / (name.stem + ext.upper())):
            if cand.is_file():
                return cand
    raise ItemError(f"no ground truth for {name.name} in {gt_dir}")


@dataclass
class _Job:
    """One decoded input, ready for the model (the decoded image itself is not kept: see ``_prepare``)."""

    x: np.ndarray | None  # (C, H, W) float32 in [0, 1]
    dtype: np.dtype
    in_channels: int
    alpha: np.ndarray | None
    icc: bytes | None
    kernel: np.ndarray | None
    gt: np.ndarray | None = None
    border: int = 0


class Restorer:
    """Restores files with an activated runner into ``outdir``.

    ``tile``: None for the model's recommended tiling (``restormer_deploy.restormer.tiling.choose_tiling``,
    per image: automatic tiles when the whole image would not fit in memory), 0 for the whole image,
    N for tiles of N; ``overlap`` None for the model's. ``on_notice(line)`` gets each distinct notice
    of the choice once (automatic tiling, a whole image that may not fit); the tiling used is in
    ``Item.extra`` (tile: null for the whole image)."""

    def __init__(self, runner, *, outdir: Path, tile: int | None = None, overlap: int | None = None, batch: int = 1,
                 degradation: Degradation | None = None, kernel: np.ndarray | None = None, seed: int = 0,
                 gt_dir: Path | None = None, overwrite: bool = False, max_pixels: int | None = None,
                 on_notice=None):
        self.runner, self.spec = runner, runner.spec
        self.tile, self.overlap, self.batch = tile, overlap, batch
        self.on_notice, self.notices = on_notice, set()
        self.degradation, self.kernel, self.seed = degradation, kernel, seed
        self.gt_dir, self.outdir, self.overwrite = gt_dir, Path(outdir), overwrite
        self.max_pixels = max_pixels  # None: the module's limit ($RESTORE_MAX_PIXELS or 200 MP)
        self.inputs: set[str] = set()
        self.conflicts: dict[Path, str] = {}

    @staticmethod
    def describe_tiling(spec, tile: int | None, overlap: int | None) -> str:
        """What a Restorer with ``tile``/``overlap`` does, for a header line: ', tiles 256 overlap 32 (...)' or ''."""
        if tile == 0:
            return ", whole images"
        choice = choose_tiling(spec, 1, 1, tile, overlap)  # a tile given or recommended does not depend on the image
        if choice.reason not in ("requested", "model"):  # per image (automatic tiles come with a notice)
            return ""
        return f", tiles {choice.tile} overlap {choice.overlap}" + (" (the model's; --tile 0: whole)" if tile is None else "")

    def outputs(self, path: Path) -> list[Path]:
        """Every file restoring ``path`` writes: the result, and with --degrade the degraded input."""
        names = [path.name] + ([f"{path.stem}_degraded{path.suffix}"] if self.degradation is not None else [])
        return [self.outdir / n for n in names]

    def plan(self, paths: list[Path]) -> dict[Path, str]:
        """Before anything is written: the items whose outputs would hit an input or another item's
        output (first come, first served), with the reason. Remembered for ``restore``."""
        self.inputs = {os.path.abspath(p) for p in paths}
        owner: dict[str, Path] = {}
        conflicts: dict[Path, str] = {}
        for path in paths:
            try:
                check_output_folder([path], self.outdir)  # the same check as restore-client's
            except ValueError as exc:
                conflicts[path] = str(exc)
                continue
            for target in self.outputs(path):
                key = os.path.abspath(target)
                if key in self.inputs:
                    conflicts[path] = f"refusing to overwrite the input {target} (choose another -o)"
                elif key in owner:
                    conflicts[path] = f"{target.name} is already written for {owner[key].name}"
            if path not in conflicts:
                owner.update({os.path.abspath(t): path for t in self.outputs(path)})
        self.conflicts = conflicts
        return conflicts

    def restore(self, path: Path, *, on_tile=None) -> Item:
        """Restore one input (after ``plan``); a failure is the item's error, not an exception."""
        item = Item(input=str(path))
        t0 = time.perf_counter()
        try:
            self.process(path, item, on_tile=on_tile)
            if item.status == "pending":
                item.status = "ok"
        except ITEM_ERRORS as exc:
            item.status, item.error = "error", one_line(exc)
        item.seconds = time.perf_counter() - t0
        return item

    def process(self, path: Path, item: Item, *, on_tile=None) -> None:
        """Restore one input into ``item``; raises on failure (``restore`` catches)."""
        target = self.outdir / path.name
        item.output = str(target)
        if path in self.conflicts:
            raise ItemError(self.conflicts[path])
        existing = [t.name for t in self.outputs(path) if t.exists()]
        if existing and not self.overwrite:
            item.status = "skipped"
            item.error = f"output exists: {', '.join(existing)} (use --overwrite)"
            return
        if not path.exists():
            raise ItemError(missing_reason(str(path)))
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            raise ItemError(f"{path}: not an image file type ({', '.join(IMAGE_EXTENSIONS)})")
        job = self._prepare(path, item)
        result = self._run(job, on_tile, self._tiling(job, item))
        alpha = job.alpha
        if alpha is not None and self.spec.scale > 1:
            alpha = np.repeat(np.repeat(alpha, self.spec.scale, 0), self.spec.scale, 1)
        if alpha is not None and alpha.shape[:2] != result.shape[:2]:
            alpha = None
        self._score(path, item, job, result)
        self._write(target, result, alpha, job.icc)

    def _prepare(self, path: Path, item: Item) -> _Job:
        """Decode ``path`` into the model's input (degraded first with --degrade, writing the degraded
        file). Only the float input leaves this function: the decoded image is dropped here, as only
        the float input, the output accumulator and the blend weights may be image-sized while tiles
        run (benchmarks/tile_memory.py)."""
        spec = self.spec
        img, alpha = read_image_alpha(path, max_pixels=self.max_pixels)
        job = _Job(x=None, dtype=img.dtype, in_channels=img.shape[2], alpha=alpha, icc=read_icc_profile(path),
                   kernel=self.kernel)
        model_img = img if job.in_channels == spec.in_channels else (
            np.repeat(img, 3, axis=2) if spec.in_channels == 3 else _grey(img))
        if job.in_channels == 3 and spec.in_channels == 1:
            item.extra["note"] = GREY_MODEL_NOTE
        if self.degradation is None:
            job.x = model_img.transpose(2, 0, 1).astype(np.float32)
            job.x /= np.float32(_peak(job.dtype))
            return job
        sample = self.degradation.apply(model_img, self.seed)
        job.x = sample.lq.transpose(2, 0, 1)
        job.gt, job.border = sample.gt, sample.border
        if sample.kernel is not None:
            job.kernel = sample.kernel
        if isinstance(self.degradation, BicubicSR) or sample.gt.shape[:2] != img.shape[:2]:
            job.alpha = None  # the demo's crop/downscale would misalign it
        degraded = _to_uint(job.x, job.dtype)
        # e.g. a 16-bit grey PNG degraded for a colour model: 16-bit RGB goes to .tif, not .png
        degraded_path = storable_path(self.outdir / f"{path.stem}_degraded{path.suffix}", degraded)
        self._write(degraded_path, degraded, None, job.icc)
        item.extra["degraded"] = str(degraded_path)
        # Restore what was saved (clipped, rounded): a re-run on NAME_degraded gives the same scores.
        job.x = degraded.transpose(2, 0, 1).astype(np.float32)
        job.x /= np.float32(_peak(job.dtype))
        return job

    def _tiling(self, job: _Job, item: Item) -> Tiling:
        tiling = choose_tiling(self.spec, *job.x.shape[-2:], self.tile, self.overlap)
        item.extra.update(tile=tiling.tile, tile_overlap=tiling.overlap if tiling.tile else None, tiling=tiling.reason)
        if tiling.notice and tiling.notice not in self.notices:
            self.notices.add(tiling.notice)
            if self.on_notice:
                self.on_notice(tiling.notice)
        return tiling

    def _run(self, job: _Job, on_tile, tiling: Tiling) -> np.ndarray:
        """The model on the job's input (tiled); the uint HxWxC result, grey for a grey input."""
        spec = self.spec
        if spec.needs_kernel and job.kernel is None:
            raise ItemError(f"{spec.name} needs a blur kernel: pass --kernel FILE or --degrade blur:FILE")

        def fn(t):
            return self.runner.run(t, job.kernel) if spec.needs_kernel else self.runner.run(t)

        x, job.x = job.x, None
        y = restore_array(fn, spec, x, tile=tiling.tile, overlap=tiling.overlap, batch=self.batch, on_tile=on_tile)
        del x
        if not np.isfinite(y).all():
            bad = int((~np.isfinite(y)).sum())
            raise ItemError(f"the model produced {bad} NaN/Inf values; nothing written")
        result = _to_uint(y, job.dtype, inplace=True)
        del y
        if job.in_channels == 1 and result.shape[2] == 3:
            result = _grey(result)
        return result

    def _score(self, path: Path, item: Item, job: _Job, result: np.ndarray) -> None:
        """PSNR/SSIM against the --gt image or the clean image of --degrade, when there is one."""
        gt, border = job.gt, job.border
        if self.gt_dir is not None:
            gt = read_image(_find_gt(self.gt_dir, path), channels=result.shape[2], max_pixels=self.max_pixels)
            border = self.spec.scale if self.spec.scale > 1 else 0
        if gt is not None:
            gt = gt if gt.shape[2] == result.shape[2] else _grey(gt)
            item.psnr, item.ssim = task_scores(result, gt, border=border)

    def _write(self, target: Path, img: np.ndarray, alpha, icc: bytes | None = None) -> None:
        if os.path.abspath(target) in self.inputs:
            raise ItemError(f"refusing to overwrite the input {target}")
        try:
            write_image(target, img, alpha, icc_profile=icc)
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise ItemError(reason if reason.startswith("cannot write") else f"cannot write {target}: {reason}") from None
