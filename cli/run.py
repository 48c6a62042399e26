"""restore-run: restore image files with a preset, a checkpoint, an ONNX model or a TensorRT engine."""

from __future__ import annotations

import glob
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

import numpy as np
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cli.common import EXIT_BAD_INPUT, check_output_folder, check_tiling, fail, out, run, write_json
from engines.backends import BACKENDS, BackendError, load_runner
from engines.shard import parse_shard, shard_slice
from restormer.tiling import restore_array
from restormer.checkpoints import WeightsError
from restormer.degrade import SPEC_GRAMMAR, BicubicSR, load_kernel, parse_degradation
from restormer.imageio import (IMAGE_EXTENSIONS, ImageReadError, list_images, read_icc_profile, read_image,
                               read_image_alpha, storable_path, write_image)
from restormer.metrics import psnr, ssim

EPILOG = f"""
[bold]Examples[/]

  restore-run converse-dncnn noisy/*.png -o restored/

  restore-run model.onnx photos/ -o out/ --tile 256 --tile-overlap 32 --json run.json

  restore-run model.onnx photos/ -o out/ --shard ${{SLURM_ARRAY_TASK_ID}}/8   [dim](worker I of 8; docs/SCALE_OUT.md)[/]

  restore-run converse-dncnn ../shared/data/denoise/Set12 -o demo/ --degrade noise:25

  restore-run restormer-denoise-color --weights gaussian_color_denoising_blind.pth in.tif -o out/ --backend torch-cpu

INPUT is a file, a folder (its images, sorted) or a glob. PNG/JPEG/BMP/TIFF, 8 or 16 bit, grey
or RGB (converted to the model's channels; a grey input gives a grey output); the alpha channel is
passed through unchanged (nearest-upscaled for super-resolution); EXIF orientation is applied.
Each output has the input's name, format and bit depth, in OUTDIR; existing outputs are skipped
unless --overwrite; an input is never overwritten; files appear atomically.

--degrade SPEC ({SPEC_GRAMMAR}) degrades each input first (a demo): both the degraded
input (NAME_degraded.EXT) and the restored image are written, and PSNR/SSIM against the original
are reported. --gt DIR scores against same-named ground-truth images instead.

Backends: {", ".join(BACKENDS)}; auto = ONNX Runtime TensorRT EP > CUDA EP > CPU for .onnx (as installed), TensorRT for .engine/.plan, CUDA > CPU for PyTorch.

Exit status: 0 every image restored (or skipped); 2 when any image failed (bad input: the others are
still processed, the failures listed) and on bad usage (unknown model, no inputs, bad option).
"""

app = typer.Typer(add_completion=False, rich_markup_mode="rich", context_settings={"help_option_names": ["-h", "--help"]})


@dataclass
class Item:
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
            d["psnr"] = self.psnr if math.isfinite(self.psnr) else 200.0
            d["ssim"] = self.ssim
        d.update(self.extra)
        return d


class ItemError(Exception):
    """One image failed; the message is one line."""


def expand_inputs(inputs: list[str]) -> list[Path]:
    """Files, folders (their images) and globs, in order, without duplicates; missing files are kept
    (they fail as items)."""
    found: list[Path] = []
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
    seen, unique = set(), []
    for p in found:
        key = os.path.abspath(p)
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique


def _peak(dtype) -> float:
    return 255.0 if np.dtype(dtype) == np.uint8 else 65535.0


def _to_uint(x: np.ndarray, dtype, inplace: bool = False) -> np.ndarray:
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


def _score(restored: np.ndarray, gt: np.ndarray, border: int = 0) -> tuple[float, float]:
    """PSNR/SSIM on the 0-255 scale (16-bit data rescaled)."""
    a = restored.astype(np.float64) * (255.0 / _peak(restored.dtype))
    b = gt.astype(np.float64) * (255.0 / _peak(gt.dtype))
    if a.shape != b.shape:
        raise ItemError(f"ground truth is {gt.shape[1]}x{gt.shape[0]}, the output {restored.shape[1]}x{restored.shape[0]}")
    return psnr(a, b, border), ssim(a, b, border) if min(a.shape[:2]) - 2 * border >= 7 else float("nan")


def _find_gt(gt_dir: Path, name: Path) -> Path:
    exact = gt_dir / name.name
    if exact.is_file():
        return exact
    for ext in IMAGE_EXTENSIONS:
        for cand in (gt_dir / (name.stem + ext), gt_dir / (name.stem + ext.upper())):
            if cand.is_file():
                return cand
    raise ItemError(f"no ground truth for {name.name} in {gt_dir}")


class Restorer:
    def __init__(self, runner, tile, overlap, batch, degradation, kernel, seed, gt_dir, outdir, overwrite,
                 max_pixels: int | None = None):
        self.runner, self.spec = runner, runner.spec
        self.tile, self.overlap, self.batch = tile, overlap, batch
        self.degradation, self.kernel, self.seed = degradation, kernel, seed
        self.gt_dir, self.outdir, self.overwrite = gt_dir, outdir, overwrite
        self.max_pixels = max_pixels  # None: the module's limit ($RESTORE_MAX_PIXELS or 200 MP)

    def outputs(self, path: Path) -> list[Path]:
        """Every file restoring ``path`` writes: the result, and with --degrade the degraded input."""
        names = [path.name] + ([f"{path.stem}_degraded{path.suffix}"] if self.degradation is not None else [])
        return [self.outdir / n for n in names]

    def plan(self, paths: list[Path], inputs: set[str]) -> dict[Path, str]:
        """Before anything is written: the items whose outputs would hit an input or another item's
        output (first come, first served), with the reason."""
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
                if key in inputs:
                    conflicts[path] = f"refusing to overwrite the input {target} (choose another -o)"
                elif key in owner:
                    conflicts[path] = f"{target.name} is already written for {owner[key].name}"
            if path not in conflicts:
                owner.update({os.path.abspath(t): path for t in self.outputs(path)})
        return conflicts

    def process(self, path: Path, item: Item, inputs: set[str], conflicts: dict[Path, str], on_tile=None) -> None:
        spec = self.spec
        target = self.outdir / path.name
        item.output = str(target)
        if path in conflicts:
            raise ItemError(conflicts[path])
        existing = [t.name for t in self.outputs(path) if t.exists()]
        if existing and not self.overwrite:
            item.status = "skipped"
            item.error = f"output exists: {', '.join(existing)} (use --overwrite)"
            return
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            raise ItemError(f"{path}: not an image file type ({', '.join(IMAGE_EXTENSIONS)})")
        img, alpha = read_image_alpha(path, max_pixels=self.max_pixels)
        icc = read_icc_profile(path)
        in_channels = img.shape[2]
        model_img = img if in_channels == spec.in_channels else (
            np.repeat(img, 3, axis=2) if spec.in_channels == 3 else _grey(img))
        dtype = img.dtype
        kernel = self.kernel
        gt = None
        border = 0
        if self.degradation is not None:
            sample = self.degradation.apply(model_img, self.seed)
            x = sample.lq.transpose(2, 0, 1)
            gt, border = sample.gt, sample.border
            if sample.kernel is not None:
                kernel = sample.kernel
            if isinstance(self.degradation, BicubicSR) or sample.gt.shape[:2] != img.shape[:2]:
                alpha = None  # the demo's crop/downscale would misalign it
            degraded = _to_uint(x, dtype)
            # e.g. a 16-bit grey PNG degraded for a colour model: 16-bit RGB goes to .tif, not .png
            degraded_path = storable_path(self.outdir / f"{path.stem}_degraded{path.suffix}", degraded)
            self._write(degraded_path, degraded, None, inputs, icc)
            item.extra["degraded"] = str(degraded_path)
            del degraded
        else:
            x = model_img.transpose(2, 0, 1).astype(np.float32)
            x /= np.float32(_peak(dtype))
        # Only the float input, the output accumulator and the blend weights may be image-sized
        # while tiles run (benchmarks/tile_memory.py): drop the decoded image before, the input after.
        del img, model_img
        if spec.needs_kernel and kernel is None:
            raise ItemError(f"{spec.name} needs a blur kernel: pass --kernel FILE or --degrade blur:FILE")

        def fn(t):
            return self.runner.run(t, kernel) if spec.needs_kernel else self.runner.run(t)

        y = restore_array(fn, spec, x, tile=self.tile, overlap=self.overlap, batch=self.batch, on_tile=on_tile)
        del x
        if not np.isfinite(y).all():
            bad = int((~np.isfinite(y)).sum())
            raise ItemError(f"the model produced {bad} NaN/Inf values; nothing written")
        result = _to_uint(y, dtype, inplace=True)
        del y
        if in_channels == 1 and result.shape[2] == 3:
            result = _grey(result)
        if alpha is not None and spec.scale > 1:
            alpha = np.repeat(np.repeat(alpha, spec.scale, 0), spec.scale, 1)
        if alpha is not None and alpha.shape[:2] != result.shape[:2]:
            alpha = None
        if self.gt_dir is not None:
            gt_path = _find_gt(self.gt_dir, path)
            gt = read_image(gt_path, channels=result.shape[2], max_pixels=self.max_pixels)
            border = spec.scale if spec.scale > 1 else 0
        if gt is not None:
            gt_cmp = gt if gt.shape[2] == result.shape[2] else _grey(gt)
            item.psnr, item.ssim = _score(result, gt_cmp, border)
        self._write(target, result, alpha, inputs, icc)

    def _write(self, target: Path, img: np.ndarray, alpha, inputs: set[str], icc: bytes | None = None) -> None:
        if os.path.abspath(target) in inputs:
            raise ItemError(f"refusing to overwrite the input {target}")
        try:
            write_image(target, img, alpha, icc_profile=icc)
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise ItemError(reason if reason.startswith("cannot write") else f"cannot write {target}: {reason}") from None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text


@app.command(help=__doc__.strip() if __doc__ else None, epilog=EPILOG)
def main(
    model: str = typer.Argument(..., help="Preset, .safetensors checkpoint, .onnx model or TensorRT .engine/.plan."),
    inputs: List[str] = typer.Argument(..., help="Image files, folders or globs."),
    outdir: Path = typer.Option(..., "-o", "--out", help="Output folder (created if missing)."),
    tile: Optional[int] = typer.Option(None, "--tile", min=8, help="Tile size in input pixels (default: whole image)."),
    tile_overlap: int = typer.Option(32, "--tile-overlap", min=0, help="Overlap of neighbouring tiles (blended)."),
    batch: int = typer.Option(1, "--batch", min=1, help="Tiles per forward call."),
    backend: str = typer.Option("auto", "--backend", help=f"One of {', '.join(BACKENDS)}."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="Weights for a preset (.pth or .safetensors)."),
    degrade: Optional[str] = typer.Option(None, "--degrade", help=f"Demo: degrade each input first ({SPEC_GRAMMAR})."),
    kernel_file: Optional[str] = typer.Option(None, "--kernel", help="Blur kernel FILE[:INDEX] for non-blind deblurring models."),
    gt: Optional[Path] = typer.Option(None, "--gt", help="Folder of ground-truth images (same names): report PSNR/SSIM."),
    seed: int = typer.Option(0, "--seed", help="Noise seed for --degrade."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="CPU threads (PyTorch / ONNX Runtime)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs (default: skip them)."),
    shard: Optional[str] = typer.Option(None, "--shard", help="I/N: process only slice I (from 0) of N of the sorted inputs (array jobs, docs/SCALE_OUT.md)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write images[{input, output, status, seconds}] here."),
    max_pixels: Optional[int] = typer.Option(None, "--max-pixels", min=0, help="Refuse images over this many pixels, checked from the header before decoding (default 200000000, or $RESTORE_MAX_PIXELS; 0: no limit)."),
) -> None:
    try:
        if backend not in BACKENDS:
            raise ValueError(f"unknown --backend {backend!r}; choose from {', '.join(BACKENDS)}")
        check_tiling(tile, tile_overlap)
        degradation = parse_degradation(degrade) if degrade else None
        kernel = None
        if kernel_file:
            path, colon, idx = kernel_file.rpartition(":")
            kernel = (load_kernel(path, int(idx)) if colon and idx.isdigit() else load_kernel(kernel_file)).astype(np.float32)
        if gt is not None and not gt.is_dir():
            raise ValueError(f"--gt {gt}: not a folder")
        if json_out and not json_out.parent.is_dir():
            raise ValueError(f"cannot write {json_out}: folder {json_out.parent} does not exist")
        paths = expand_inputs(inputs)
        if not paths:
            raise ValueError(f"no input images matched {' '.join(inputs)}")
        if shard is not None:  # engines/shard.py; a slice may be empty when N exceeds the image count
            paths = shard_slice(paths, *parse_shard(shard))
        if outdir.exists() and not outdir.is_dir():
            raise ValueError(f"-o {outdir}: exists and is not a folder")
        runner = load_runner(model, backend, weights=weights, threads=threads)
        if runner.spec.in_channels not in (1, 3):
            raise ValueError(f"{runner.spec.name} takes {runner.spec.in_channels} channels: restore-run handles grey/RGB models")
        runner.activate()
        outdir.mkdir(parents=True, exist_ok=True)  # only once the model is known to load
    except (ValueError, FileNotFoundError, NotADirectoryError, WeightsError, BackendError, OSError) as exc:
        raise fail(_one_line(exc))

    out.print(f"[bold]{runner.spec.name}[/] on {runner.describe()}: {len(paths)} image(s) -> {outdir}"
              + (f", tiles {tile} overlap {tile_overlap}" if tile else ""))
    restorer = Restorer(runner, tile, tile_overlap, batch, degradation, kernel, seed, gt, outdir, overwrite, max_pixels)
    input_set = {os.path.abspath(p) for p in paths}
    conflicts = restorer.plan(paths, input_set)
    items: list[Item] = []
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    try:
        with Progress(*columns, console=out, transient=True) as progress:
            task = progress.add_task("restoring", total=len(paths))
            tiles = progress.add_task("  tiles", total=1, visible=False)

            def on_tile(done, total):
                progress.update(tiles, completed=done, total=total, visible=total > 1)
            for path in paths:
                item = Item(str(path))
                items.append(item)
                progress.update(task, description=path.name)
                t0 = time.perf_counter()
                try:
                    restorer.process(path, item, input_set, conflicts, on_tile)
                    if item.status == "pending":
                        item.status = "ok"
                except (ItemError, ImageReadError, FileNotFoundError, IsADirectoryError, ValueError, OSError,
                        RuntimeError, MemoryError) as exc:
                    item.status, item.error = "error", _one_line(exc)
                    progress.console.print(f"[red]error:[/] {path}: {item.error}", highlight=False, soft_wrap=True)
                item.seconds = time.perf_counter() - t0
                progress.update(tiles, visible=False)
                progress.advance(task)
    finally:
        runner.deactivate()

    table = Table("input", "status", "s", "PSNR", "SSIM", "note", title=f"{runner.spec.name} ({runner.describe()})")
    for it in items:
        colour = {"ok": "green", "skipped": "yellow", "error": "red"}[it.status]
        table.add_row(Path(it.input).name, f"[{colour}]{it.status}[/]", f"{it.seconds:.2f}",
                      f"{it.psnr:.2f}" if it.psnr is not None else "", f"{it.ssim:.4f}" if it.ssim is not None and math.isfinite(it.ssim) else "",
                      it.error or "")
    counts = {s: sum(it.status == s for it in items) for s in ("ok", "skipped", "error")}
    scored = [it.psnr for it in items if it.psnr is not None and math.isfinite(it.psnr)]
    if scored:
        table.add_row("[bold]mean[/]", "", "", f"{np.mean(scored):.2f}", "", "")
    out.print(table)
    out.print(f"{counts['ok']} restored, {counts['skipped']} skipped, {counts['error']} failed")
    if json_out:
        summary = {
            "model": model, "backend": runner.name, "precision": runner.precision, "outdir": str(outdir),
            "tile": tile, "tile_overlap": tile_overlap, "degrade": degrade, "shard": shard,
            "ok": counts["ok"], "skipped": counts["skipped"], "failed": counts["error"],
            "images": [it.to_json() for it in items],
        }
        for it in summary["images"]:
            if "ssim" in it and it["ssim"] is not None and not math.isfinite(it["ssim"]):
                it["ssim"] = None
        write_json(json_out, summary)
    if counts["error"]:  # a failed image is bad input (DESIGN: exit 2); the rest were still processed
        raise typer.Exit(EXIT_BAD_INPUT)


def entry() -> None:
    run(app)


if __name__ == "__main__":
    entry()

