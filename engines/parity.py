"""Parity of what restore-run runs (ONNX / TensorRT engine / a preset's cached export) with the
PyTorch reference on real images: what restore-parity runs.

``prepare_parity`` resolves MODEL exactly as restore-run does (``resolve_artifact``: for a preset or
checkpoint the verified cached FP32 export of ``engines.export_cache``) and loads the reference and
the degraded samples; ``run_parity`` runs both through restore-run's tiling (``choose_tiling`` /
``restore_array``: the same tiles, the same padding), PyTorch also on the whole image (the tiling's
own cost), and scores with our own functions: PSNR of the artefact against PyTorch with peak 1.0 on
outputs clamped to [0, 1], and the task PSNR and SSIM of both against the ground truth
(``restormer_deploy.restormer.metrics.task_scores``, as restore-eval). Every floor holds per image.
An FP16 ONNX file is also run under emulated FP16 arithmetic (``EmulatedFp16Runner``), judged apart.
``localize_divergence`` compares the custom nodes of an ONNX graph with the matching PyTorch modules.
"""

from __future__ import annotations

import contextlib
import math
from collections import OrderedDict
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable

import numpy as np

from restormer_deploy.engines.backends import (BACKENDS, BackendError, OnnxRuntimeRunner, PyTorchRunner, Runner,
                                               artifact_kind, load_runner)
from restormer_deploy.export.contract import MAX_TASK_DROP_DB, PARITY_FLOORS
from restormer_deploy.restormer.degrade import parse_degradation
from restormer_deploy.restormer.errors import one_line
from restormer_deploy.restormer.evaluate import check_compatible
from restormer_deploy.restormer.imageio import ImageReadError, list_images, read_image
from restormer_deploy.restormer.metrics import PSNR_CAP, psnr_peak1, task_scores
from restormer_deploy.restormer.presets import ModelSpec
from restormer_deploy.restormer.tiling import choose_tiling, pad_reflect, padded_size, restore_array

CUSTOM_OPS = ("Converse2D", "TransposedAttention")


def parity_floor(precision: str, override: float | None = None) -> float:
    """The PSNR floor against PyTorch: ``override``, else the contract's floor for ``precision``."""
    return override if override is not None else PARITY_FLOORS.get(precision, PARITY_FLOORS["fp32"])


# --------------------------------------------------------------------------- samples


@dataclass(frozen=True, eq=False)
class ParitySample:
    """One network input (float32 HxWxC in [0, 1]) and, when degraded, its ground truth."""

    name: str
    lq: np.ndarray
    kernel: np.ndarray | None = None
    gt: np.ndarray | None = None   # uint HxWxC; None: the image is fed as is (no task PSNR)
    border: int = 0
    y_channel: bool = False


def _center_crop(img: np.ndarray, crop: int | None) -> np.ndarray:
    if not crop:
        return img
    h, w = img.shape[:2]
    top, left = max((h - crop) // 2, 0), max((w - crop) // 2, 0)
    return img[top:top + crop, left:left + crop]


def load_samples(paths, spec: ModelSpec, degradation, *, seed: int = 0, crop: int | None = None,
                 on_unreadable: Callable[[Path, BaseException], None] | None = None) -> list[ParitySample]:
    """The images as samples. An unreadable one is passed to ``on_unreadable`` and skipped (as
    restore-eval does) instead of ending the run; without ``on_unreadable`` it raises."""
    channels = min(spec.in_channels, 3)
    samples = []
    for p in map(Path, paths):
        try:
            img = read_image(p, channels=channels)
        except (ImageReadError, OSError, ValueError) as exc:
            if on_unreadable is None:
                raise
            on_unreadable(p, exc)
            continue
        img = _center_crop(img, crop)
        if degradation is None:
            x = np.float32(img / (255.0 if img.dtype == np.uint8 else 65535.0))
            samples.append(ParitySample(name=p.name, lq=x))
        else:
            s = degradation.apply(img, seed)
            samples.append(ParitySample(name=p.name, lq=s.lq, kernel=s.kernel, gt=s.gt, border=s.border,
                                        y_channel=s.y_channel))
    return samples


def make_feed(spec: ModelSpec, sample: ParitySample) -> tuple[OrderedDict, tuple[int, int]]:
    """The runners' feed (reflect-padded to the model's multiple) and the unpadded (H, W)."""
    x = np.ascontiguousarray(sample.lq.transpose(2, 0, 1)[None], dtype=np.float32)
    h, w = x.shape[-2:]
    m = max(spec.pad_multiple, 1)
    x = pad_reflect(x, padded_size(h, m, 16), padded_size(w, m, 16))
    feed = OrderedDict(input=x)
    if spec.needs_kernel:
        feed["kernel"] = np.ascontiguousarray(sample.kernel[None, None], dtype=np.float32)
    return feed, (h, w)


# --------------------------------------------------------------------------- scores


def task_psnr_ssim(y: np.ndarray, gt: np.ndarray, *, border: int = 0, y_channel: bool = False) -> tuple[float, float]:
    """(1, C, H, W) float output vs the uint ground truth: the output clamped, rounded to the ground
    truth's dtype and scored as restore-eval does: (PSNR, SSIM; NaN for an image under SSIM's window)."""
    peak = 255.0 if gt.dtype == np.uint8 else 65535.0
    img = (np.clip(y[0].transpose(1, 2, 0), 0, 1) * peak).round().astype(gt.dtype)
    psnr, ssim = task_scores(img, gt, border=border, y_channel=y_channel, with_ssim=True)
    return float(psnr), float(ssim)


def task_psnr(y: np.ndarray, gt: np.ndarray, *, border: int = 0, y_channel: bool = False) -> float:
    """The PSNR of ``task_psnr_ssim`` alone."""
    peak = 255.0 if gt.dtype == np.uint8 else 65535.0
    img = (np.clip(y[0].transpose(1, 2, 0), 0, 1) * peak).round().astype(gt.dtype)
    return float(task_scores(img, gt, border=border, y_channel=y_channel, with_ssim=False)[0])


def snr_db(got: np.ndarray, ref: np.ndarray) -> float:
    """Signal-to-error ratio of an intermediate tensor (features are not images: no peak, no clamp)."""
    err = float(np.sum((got.astype(np.float64) - ref.astype(np.float64)) ** 2))
    sig = float(np.sum(ref.astype(np.float64) ** 2))
    if err <= sig * 10 ** (-PSNR_CAP / 10):
        return PSNR_CAP
    return float(10 * math.log10(max(sig, 1e-30) / err))


def finite_json(obj):
    """JSON has no inf/NaN: +inf (identical images) -> the 200 dB cap, NaN / -inf -> null."""
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [finite_json(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return PSNR_CAP if obj == math.inf else None
    return obj


def _without_none(obj) -> dict:
    return {k: v for k, v in asdict(obj).items() if v is not None}


# --------------------------------------------------------------------------- reports

MAX_SSIM_DROP = None  # no SSIM floor in the contract: the task SSIM drop is reported, judged with --max-ssim-drop
FP16_ARITHMETIC = ("FP16 arithmetic emulated on the CPU: every FP16 tensor of the file rounded to binary16 where it "
                   "is produced (export/islands.emulate_fp16), FP32 islands in FP32, as a GPU computes it")


@dataclass
class ImageParity:
    """One image: the artefact against PyTorch on the same tiles, PyTorch tiled against PyTorch whole
    (the tiling's own cost), (degraded samples) both against the ground truth, and (FP16 files) the
    file under FP16 arithmetic against PyTorch; ``passed``: every floor holds on this image."""

    name: str
    psnr_vs_reference: float
    finite: bool
    max_abs_err: float | None
    tile: int | None = None
    tile_overlap: int | None = None
    psnr_tiled_vs_whole: float | None = None
    task_psnr_reference: float | None = None
    task_psnr_artifact: float | None = None
    task_psnr_drop: float | None = None
    ssim_reference: float | None = None
    ssim_artifact: float | None = None
    ssim_drop: float | None = None
    psnr_fp16_arithmetic: float | None = None
    passed: bool = True

    def to_json(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None or k in ("max_abs_err", "tile")}


@dataclass
class Fp16Arithmetic:
    """The FP16-arithmetic check of an FP16 ONNX file, apart from the run's own verdict; ``passed``
    None when it could not run (``note`` says why)."""

    floor: float
    note: str
    passed: bool | None = None
    worst: float | None = None
    mean: float | None = None

    def to_json(self) -> dict:
        return asdict(self)


# the per-image values summarised as worst and mean, and which end is the worst
SUMMARISED = {"psnr_vs_reference": min, "task_psnr_drop": max, "ssim_drop": max, "psnr_tiled_vs_whole": min,
              "psnr_fp16_arithmetic": min}


def summarise(rows: list[ImageParity]) -> tuple[dict, dict]:
    """(worst, mean) over the images of every value that the rows have."""
    worst, mean = {}, {}
    for key, pick in SUMMARISED.items():
        values = [getattr(r, key) for r in rows if getattr(r, key) is not None and not math.isnan(getattr(r, key))]
        if values:
            worst[key], mean[key] = float(pick(values)), float(np.mean(values))
    return worst, mean


@dataclass


class NodeDivergence:
    """One custom node of the ONNX graph against the matching PyTorch module."""

    node: str
    op: str
    index: int             # k-th node of this op <-> k-th call of the PyTorch module
    snr_db: float | None = None
    error: str | None = None

    def to_json(self) -> dict:
        return _without_none(self)


@dataclass
class DivergenceReport:
    """``localize_divergence``'s answer; ``error`` alone when it could not compare."""

    nodes: list[NodeDivergence] = field(default_factory=list)
    first_diverging: NodeDivergence | None = None
    message: str | None = None
    error: str | None = None

    @property
    def text(self) -> str:
        return self.message or self.error or ""

    def to_json(self) -> dict:
        if self.error is not None:
            return {"error": self.error}
        return {"nodes": [n.to_json() for n in self.nodes],
                "first_diverging": self.first_diverging.to_json() if self.first_diverging else None,
                "message": self.message}



@dataclass
class ParityReport:
    artifact: str
    reference: str
    backend: str
    precision: str
    degrade: str | None
    images: list[ImageParity]
    threshold_psnr: float
    max_drop: float
    passed: bool
    min_psnr_vs_reference: float
    mean_psnr_vs_reference: float
    task_psnr_reference: float | None   # means over the images (each image's own values are in ``images``)
    task_psnr_artifact: float | None
    task_psnr_drop: float | None
    unreadable: list[str]
    artifact_file: str | None = None    # the file that ran (for a preset or checkpoint: restore-run's cached export)
    resolved: str = ""                  # how MODEL was resolved, as restore-run resolves it
    provider: str | None = None         # ONNX Runtime's execution provider
    arithmetic: str = ""                # the precision that actually computed
    tiling: str = ""
    max_ssim_drop: float | None = MAX_SSIM_DROP
    run_passed: bool = True             # the run's own verdict (every floor on every image)
    worst: dict = field(default_factory=dict)
    mean: dict = field(default_factory=dict)
    fp16_arithmetic: Fp16Arithmetic | None = None
    held_out: str | None = None         # INT8: whether the images were outside the calibration set
    localize: DivergenceReport | None = None

    @property
    def has_task(self) -> bool:
        return self.task_psnr_reference is not None

    def to_json(self) -> dict:
        """The JSON of restore-parity --json (finite numbers only)."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["images"] = [r.to_json() for r in self.images]
        if data["held_out"] is None:
            del data["held_out"]
        for key in ("localize", "fp16_arithmetic"):
            if data[key] is None:
                del data[key]
            else:
                data[key] = data[key].to_json()
        return finite_json(data)


# --------------------------------------------------------------------------- what runs


def _identity(model: str, weights) -> tuple[str, str | None]:
    """What a PyTorch model is, to tell a model from itself: the resolved file or the preset name, and
    the resolved weights file."""
    def norm(p):
        return str(Path(p).resolve()) if p is not None and Path(str(p)).exists() else (str(p) if p is not None else None)
    return norm(model), norm(weights)


def resolve_artifact(artifact: str, backend: str = "auto", *, reference: str, weights=None,
                     threads: int | None = None) -> tuple[Runner, str | None, str]:
    """MODEL as restore-run resolves it: (runner, the file that runs or None for PyTorch, how). A
    preset or checkpoint under ``auto`` is the verified cached FP32 export restore-run uses
    (``engines.export_cache.fast_runner``: reused, or made and verified now). ``weights`` (the
    reference's) apply to the artefact when it names the reference's model. ValueError when the
    artefact would be PyTorch running the reference itself."""
    from restormer_deploy.engines.export_cache import fast_runner

    if backend not in BACKENDS:
        raise ValueError(f"unknown --backend {backend!r}; choose from {', '.join(BACKENDS)}")
    kind = artifact_kind(artifact)
    if kind != "torch":
        return load_runner(artifact, backend, threads=threads), artifact, f"the file {artifact}"
    own = weights if artifact == reference else None
    if backend == "auto":
        runner, notice = fast_runner(artifact, weights=own, threads=threads)
    else:
        runner, notice = load_runner(artifact, backend, weights=own, threads=threads), None
    if isinstance(runner, OnnxRuntimeRunner):
        return runner, str(runner.path), notice or f"the cached export {runner.path}"
    if _identity(artifact, own) == _identity(reference, weights):
        why = (f"--backend {backend} runs it on PyTorch" if backend != "auto" else
               f"restore-run {artifact} runs PyTorch here ({notice or 'no ONNX export is made for it on this machine'})")
        raise ValueError(f"{artifact} against --reference {reference} compares PyTorch with itself ({why}): "
                         "pass an .onnx file or engine, or omit --backend to check the cached export restore-run uses")
    return runner, None, f"PyTorch ({runner.name})"


def arithmetic(runner: Runner) -> tuple[str | None, str]:
    """(execution provider, what computes) of an activated runner."""
    precision = runner.precision
    if isinstance(runner, PyTorchRunner):
        return None, f"{precision.upper()} (PyTorch on {runner.device})"
    if runner.name == "tensorrt":
        return None, (f"TensorRT kernels built with {precision.upper()} enabled (TensorRT picks each layer's "
                      "precision; FP32 islands stay FP32)")
    session = getattr(runner, "_session", None)
    provider = session.get_providers()[0] if session is not None else None
    if precision == "fp32":
        return provider, "FP32"
    if runner.name == "ort-cpu":
        return provider, {
            "fp16": "FP16 weights and activations stored, arithmetic in FP32 (ONNX Runtime's CPU provider casts "
                    "to FP32 around operators without FP16 kernels and drops the casts between them)",
            "int8": "INT8 weights and activations quantized (Q/DQ): integer kernels where ONNX Runtime's CPU "
                    "provider fuses Q/DQ pairs, FP32 elsewhere",
        }.get(precision, precision)
    return provider, f"{precision.upper()} kernels of {provider} where it has them (FP32 islands in FP32)"


class EmulatedFp16Runner(Runner):
    """An FP16 ONNX file under FP16 arithmetic on the CPU (``export.islands.emulate_fp16``): every FP16
    tensor rounded to binary16 where it is produced; ValueError from ``activate`` when the graph
    cannot be emulated (subgraphs)."""

    name = "fp16-emulated"

    def __init__(self, path: str, spec: ModelSpec, threads: int | None = None) -> None:
        super().__init__()
        self.path, self.spec, self.threads, self.precision = path, spec, threads, "fp16"

    def _activate(self) -> None:
        import onnx

        from restormer_deploy.export.islands import emulate_fp16
        from restormer_deploy.export.ort_session import cpu_session

        emulated = emulate_fp16(onnx.load(self.path))
        self._session = cpu_session(emulated.SerializeToString(), threads=self.threads or 1, level="disable")
        self._names = {i.name.removesuffix("__in32"): i.name for i in self._session.get_inputs()}
        self.input_names = list(self._names)
        self.output_names = [self._session.get_outputs()[0].name]
        self._input_meta = {n: (np.dtype(np.float32), (None,) * 4) for n in self.input_names}

    def _deactivate(self) -> None:
        self._session = None

    def _infer(self, feed):
        out = self._session.run(self.output_names, {self._names[k]: v.astype(np.float32) for k, v in feed.items()})
        return {self.output_names[0]: out[0]}


# --------------------------------------------------------------------------- the run


@dataclass
class ParityInputs:
    """Both runners (the reference loaded, ``keep_loaded``), the samples they are compared on, and
    the tiling restore-run would use (``tile``/``overlap`` as its --tile/--tile-overlap)."""

    artifact_name: str
    reference_name: str
    artifact: Runner
    reference: PyTorchRunner
    degrade: str | None
    samples: list[ParitySample]
    unreadable: list[str] = field(default_factory=list)
    artifact_file: str | None = None
    resolved: str = ""
    tile: int | None = None
    overlap: int | None = None
    threads: int | None = None


def _check_same_model(art: Runner, ref: PyTorchRunner, artifact: str, reference: str) -> None:
    for key in ("in_channels", "out_channels", "scale", "needs_kernel"):
        if getattr(art.spec, key) != getattr(ref.spec, key):
            raise ValueError(f"{artifact} has {key}={getattr(art.spec, key)} but the reference "
                             f"{reference} has {getattr(ref.spec, key)}: not the same model")


def prepare_parity(artifact: str, reference: str, *, images: Path, weights=None, backend: str = "auto",
                   degrade: str | None = None, limit: int | None = None, crop: int | None = None, seed: int = 0,
                   threads: int | None = None, tile: int | None = None, overlap: int | None = None,
                   on_unreadable: Callable[[Path, BaseException], None] | None = None) -> ParityInputs:
    """Resolve the artefact as restore-run does (``resolve_artifact``), load the reference and the
    samples; ValueError / BackendError / OSError on unusable input. ``degrade`` defaults to the
    reference preset's protocol; unreadable images are reported to ``on_unreadable`` and listed in
    ``unreadable``."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    ref = PyTorchRunner(reference, weights=weights)
    art, artifact_file, resolved = resolve_artifact(artifact, backend, reference=reference, weights=weights,
                                                    threads=threads)
    spec = ref.spec
    _check_same_model(art, ref, artifact, reference)
    spec_text = degrade or spec.degrade or (art.spec.degrade if art.spec else None)
    degradation = parse_degradation(spec_text) if spec_text else None
    if degradation is not None:
        check_compatible(spec, degradation)
    elif spec.needs_kernel:
        raise ValueError(f"{spec.name} needs a blur kernel: pass --degrade blur:KERNELFILE[:INDEX]+noise:SIGMA")
    paths = list_images(images)[:limit]
    if not paths:
        raise ValueError(f"no images (png/jpg/bmp/tif) in {images}")
    unreadable: list[str] = []

    def skipped(path: Path, exc: BaseException) -> None:
        unreadable.append(str(path))
        if on_unreadable is not None:
            on_unreadable(path, exc)

    samples = load_samples(paths, spec, degradation, seed=seed, crop=crop, on_unreadable=skipped)
    if not samples:
        raise ValueError(f"none of the {len(paths)} image(s) in {images} could be read")
    ref.keep_loaded = True
    ref.activate()  # load the weights now so that a bad file is a usage error
    art.activate()
    return ParityInputs(artifact_name=artifact, reference_name=reference, artifact=art, reference=ref,
                        degrade=spec_text, samples=samples, unreadable=unreadable, artifact_file=artifact_file,
                        resolved=resolved, tile=tile, overlap=overlap, threads=threads)


def compare_image(sample: ParitySample, y_artifact: np.ndarray, y_reference: np.ndarray) -> ImageParity:
    """Both outputs ((1, C, H, W), cropped to the image): PSNR vs PyTorch, the task PSNRs and SSIMs."""
    finite = bool(np.isfinite(y_artifact).all())
    row = ImageParity(
        name=sample.name, psnr_vs_reference=psnr_peak1(y_artifact, y_reference) if finite else 0.0, finite=finite,
        max_abs_err=float(np.max(np.abs(y_artifact - y_reference))) if finite and y_artifact.size else None)
    if sample.gt is not None:
        kw = dict(border=sample.border, y_channel=sample.y_channel)
        row.task_psnr_reference, row.ssim_reference = task_psnr_ssim(y_reference, sample.gt, **kw)
        row.task_psnr_artifact, row.ssim_artifact = task_psnr_ssim(np.nan_to_num(y_artifact), sample.gt, **kw)
        row.task_psnr_drop = row.task_psnr_reference - row.task_psnr_artifact
        if math.isfinite(row.ssim_reference) and math.isfinite(row.ssim_artifact):
            row.ssim_drop = row.ssim_reference - row.ssim_artifact
        else:
            row.ssim_reference = row.ssim_artifact = None
    return row


def _tiled(runner: Runner, spec: ModelSpec, sample: ParitySample, tile: int | None, overlap: int) -> np.ndarray:
    """The runner over the sample as restore-run runs it (``restore_array``), as (1, C, sH, sW)."""
    x = np.ascontiguousarray(sample.lq.transpose(2, 0, 1), dtype=np.float32)

    def fn(t):
        return runner.run(t, sample.kernel) if spec.needs_kernel else runner.run(t)

    try:
        return restore_array(fn, spec, x, tile=tile, overlap=overlap)[None]
    except RuntimeError as exc:  # a shape the tiling did not expect: the runner's failure, one line
        raise BackendError(f"{runner.name}: {one_line(exc)}") from None


def _judge(row: ImageParity, floor: float, max_drop: float, max_ssim_drop: float | None) -> bool:
    return (row.finite and row.psnr_vs_reference >= floor
            and (row.task_psnr_drop is None or row.task_psnr_drop <= max_drop)
            and (row.ssim_drop is None or max_ssim_drop is None or row.ssim_drop <= max_ssim_drop))


def _fp16_runner(inputs: ParityInputs) -> tuple[Runner | None, str]:
    """The emulated runner of an FP16 ONNX file, or (None, why there is none)."""
    path = inputs.artifact_file
    if not path or not str(path).lower().endswith(".onnx"):
        return None, "an engine hides its graph" if path else "PyTorch runs no file"
    runner = EmulatedFp16Runner(path, inputs.artifact.spec, threads=inputs.threads)
    try:
        runner.activate()
    except (ValueError, BackendError) as exc:
        return None, one_line(exc)
    return runner, FP16_ARITHMETIC


def run_parity(inputs: ParityInputs, *, min_psnr: float | None = None, max_drop: float = MAX_TASK_DROP_DB,
               max_ssim_drop: float | None = MAX_SSIM_DROP, fp16_arithmetic: bool = True, localize: bool = False,
               verbose: bool = False) -> ParityReport:
    """Run the artefact and PyTorch on the same tiles (restore-run's tiling of each image) and
    judge every image: PSNR vs PyTorch >= the floor (by the artefact's precision unless
    ``min_psnr``), task-PSNR drop <= ``max_drop``, task-SSIM drop <= ``max_ssim_drop`` (when given:
    the contract has no SSIM floor, the drop is always reported). PyTorch
    also runs whole (the tiling's own cost, reported, not judged). An FP16 ONNX file is also run
    under emulated FP16 arithmetic against PyTorch (``fp16_arithmetic``), its verdict apart."""
    art, ref = inputs.artifact, inputs.reference
    precision = art.precision
    floor = parity_floor(precision, min_psnr)
    spec = art.spec
    s = spec.scale
    emulated, note = _fp16_runner(inputs) if fp16_arithmetic and precision == "fp16" else (None, "")
    rows: list[ImageParity] = []
    choices = set()
    for sample in inputs.samples:
        h, w = sample.lq.shape[:2]
        tiling = choose_tiling(spec, h, w, inputs.tile, inputs.overlap)
        tile = tiling.tile or None
        one_tile = tile is None or (h <= tile and w <= tile)  # a tile the image fits in runs it whole
        choices.add((tile, tiling.overlap if tile else None, tiling.reason))
        y_art = _tiled(art, spec, sample, tile, tiling.overlap)[..., : h * s, : w * s]
        y_ref = _tiled(ref, spec, sample, tile, tiling.overlap)[..., : h * s, : w * s]
        row = compare_image(sample, y_art, y_ref)
        row.tile, row.tile_overlap = tile, tiling.overlap if tile else None
        row.psnr_tiled_vs_whole = PSNR_CAP if one_tile else psnr_peak1(y_ref, _tiled(ref, spec, sample, None, 0))
        if emulated is not None:
            y16 = _tiled(emulated, spec, sample, tile, tiling.overlap)
            row.psnr_fp16_arithmetic = psnr_peak1(y16, y_ref) if np.isfinite(y16).all() else 0.0
        row.passed = _judge(row, floor, max_drop, max_ssim_drop)
        rows.append(row)
    if emulated is not None:
        emulated.deactivate()

    worst, mean = summarise(rows)
    run_passed = all(r.passed for r in rows)
    fp16 = None
    if precision == "fp16" and fp16_arithmetic:
        fp16 = Fp16Arithmetic(floor=PARITY_FLOORS["fp16"], note=note)
        if emulated is not None:
            fp16.worst, fp16.mean = worst["psnr_fp16_arithmetic"], mean["psnr_fp16_arithmetic"]
            fp16.passed = fp16.worst >= fp16.floor
    has_task = rows[0].task_psnr_reference is not None
    task_ref = float(np.mean([r.task_psnr_reference for r in rows])) if has_task else None
    task_art = float(np.mean([r.task_psnr_artifact for r in rows])) if has_task else None
    provider, computed = arithmetic(art)
    report = ParityReport(
        artifact=inputs.artifact_name, reference=inputs.reference_name, backend=art.name,
        precision=precision, degrade=inputs.degrade, images=rows, threshold_psnr=floor, max_drop=max_drop,
        passed=run_passed and (fp16 is None or fp16.passed is not False),
        min_psnr_vs_reference=worst["psnr_vs_reference"], mean_psnr_vs_reference=mean["psnr_vs_reference"],
        task_psnr_reference=task_ref, task_psnr_artifact=task_art,
        task_psnr_drop=(task_ref - task_art) if has_task else None, unreadable=inputs.unreadable,
        artifact_file=inputs.artifact_file, resolved=inputs.resolved, provider=provider, arithmetic=computed,
        tiling=describe_tiling(choices), max_ssim_drop=max_ssim_drop, run_passed=run_passed, worst=worst,
        mean=mean, fp16_arithmetic=fp16, held_out=held_out(art, rows))
    if localize:
        try:
            if not inputs.artifact_file:
                raise ValueError("--localize needs an .onnx artefact (PyTorch runs no graph)")
            feed, _ = make_feed(ref.spec, inputs.samples[0])
            report.localize = localize_divergence(inputs.artifact_file, ref, feed, threshold=floor)
        except Exception as exc:  # diagnostics never change the verdict
            report.localize = DivergenceReport(error=one_line(exc))
    return report


CALIBRATION_IMAGES_KEY = "int8_calibration_images"  # JSON list of the calibration images' file names


def held_out(runner: Runner, rows: list[ImageParity]) -> str | None:
    """INT8 files: whether the images judged are held out from the calibration set (the file's
    ``int8_calibration_images`` record), in words; None for other precisions."""
    if runner.precision != "int8":
        return None
    import json

    text = getattr(runner, "metadata", {}).get(CALIBRATION_IMAGES_KEY)
    try:
        names = set(json.loads(text)) if text else None
    except (TypeError, ValueError):
        names = None
    if names is None:
        return ("not known: the file does not list its calibration images; judge INT8 on images that were not "
                "calibrated on")
    overlap = sorted(r.name for r in rows if r.name in names)
    if not overlap:
        return f"yes: none of the {len(rows)} image(s) is one of the file's {len(names)} calibration images"
    return f"no: {len(overlap)} of the {len(rows)} image(s) were calibrated on ({', '.join(overlap[:3])}...): use others"


def describe_tiling(choices: set) -> str:
    """The tilings used, in words: 'tiles 256 overlap 32 (the model's)', 'whole images', or both."""
    words = {"requested": "--tile", "model": "the model's", "auto": "automatic", "whole": "whole"}
    parts = sorted({f"tiles {t} overlap {o} ({words.get(r, r)})" if t else "whole images" for t, o, r in choices})
    return "; ".join(parts)


# --------------------------------------------------------------------------- restore-run --verify


class TileVerifier:
    """restore-run --verify N: the runner, keeping ``n`` of the tiles it is called on, drawn uniformly
    over the whole batch (reservoir sampling, seeded), with its outputs; ``verify()`` runs them in
    PyTorch and compares (PSNR peak 1.0, clamped), so the proof covers the user's own images.
    Stands in for the runner in a ``Restorer`` (``spec``, ``run``)."""

    def __init__(self, runner: Runner, reference: PyTorchRunner, n: int, *, floor: float, seed: int = 0) -> None:
        self.runner, self.reference, self.n, self.floor = runner, reference, n, floor
        self.spec = runner.spec
        self.kept: list[tuple] = []
        self.seen = 0
        self._rng = np.random.default_rng(seed)

    def run(self, x: np.ndarray, kernel: np.ndarray | None = None) -> np.ndarray:
        y = self.runner.run(x, kernel) if kernel is not None else self.runner.run(x)
        for b in range(x.shape[0]):
            k = None if kernel is None else np.asarray(kernel)
            if k is not None and k.ndim == 4 and k.shape[0] == x.shape[0]:
                k = k[b:b + 1]
            item = (x[b:b + 1].copy(), k, np.asarray(y[b:b + 1], np.float32).copy())
            if len(self.kept) < self.n:
                self.kept.append(item)
            else:
                j = int(self._rng.integers(0, self.seen + 1))
                if j < self.n:
                    self.kept[j] = item
            self.seen += 1
        return y

    def verify(self) -> dict:
        """{tiles, of, worst_psnr, mean_psnr, floor, passed, reference}; no tiles: passed, figures None."""
        psnrs = []
        with self.reference:
            for x, k, y in self.kept:
                want = self.reference.run(x, k) if k is not None else self.reference.run(x)
                psnrs.append(psnr_peak1(y, want) if np.isfinite(y).all() else 0.0)
        worst = float(min(psnrs)) if psnrs else None
        return finite_json({"tiles": len(psnrs), "of": self.seen, "worst_psnr": worst,
                            "mean_psnr": float(np.mean(psnrs)) if psnrs else None, "floor": self.floor,
                            "passed": worst is None or worst >= self.floor, "reference": self.reference.model})


def tile_verifier(runner: Runner, n: int, *, model: str, weights=None, reference: str | None = None,
                  seed: int = 0) -> TileVerifier:
    """The ``TileVerifier`` of restore-run --verify N for MODEL running on ``runner``: the reference is
    ``reference``, else MODEL itself on PyTorch (a preset or checkpoint), else the preset an ONNX file
    or engine names. ValueError when there is nothing to compare (PyTorch itself) or no reference."""
    from restormer_deploy.export.contract import ENGINE_PARITY_FLOORS
    from restormer_deploy.restormer.presets import PRESETS

    if isinstance(runner, PyTorchRunner) and reference is None:
        raise ValueError(f"--verify: {model} runs on PyTorch here, the reference itself: nothing to verify")
    if reference is None:
        reference = model if artifact_kind(model) == "torch" else runner.spec.name
        if reference not in PRESETS and artifact_kind(model) != "torch":
            raise ValueError(f"--verify: {model} names {reference!r}, not a preset: pass --verify-reference "
                             "MODEL (its preset or checkpoint)")
    ref = PyTorchRunner(reference, weights=weights if reference == model else None)
    _check_same_model(runner, ref, model, reference)
    floors = ENGINE_PARITY_FLOORS if runner.name == "tensorrt" else PARITY_FLOORS
    return TileVerifier(runner, ref, n, floor=floors.get(runner.precision, floors["fp32"]), seed=seed)


# --------------------------------------------------------------------------- localisation


def _onnx_custom_outputs(artifact: str) -> tuple[list, bytes | None]:
    """The custom nodes of the graph, and the model with their outputs exposed as graph outputs
    (None when there are no such nodes)."""
    import onnx

    from restormer_deploy.engines.tensorrt.lint import aborts_inference

    model = onnx.load(artifact)
    nodes = [n for n in model.graph.node if n.op_type in CUSTOM_OPS]
    if not nodes:
        return nodes, None
    try:  # (a crafted Split can make onnx's C++ inference abort the process: skipped then)
        inferred = {} if aborts_inference(model) else {
            vi.name: vi for vi in onnx.shape_inference.infer_shapes(model).graph.value_info}
    except Exception:
        inferred = {}
    known = {o.name for o in model.graph.output}
    for n in nodes:
        if n.output[0] not in known:
            vi = inferred.get(n.output[0]) or onnx.helper.make_tensor_value_info(n.output[0], onnx.TensorProto.FLOAT, None)
            model.graph.output.append(vi)
    return nodes, model.SerializeToString()


def _run_onnx(model: bytes, names: list[str], feed: dict) -> list[np.ndarray]:
    from restormer_deploy.export.ort_session import cpu_session

    session = cpu_session(model, threads=0, level="all")  # ONNX Runtime's defaults: a diagnostic, not a benchmark
    dtypes = {i.name: (np.float16 if i.type == "tensor(float16)" else np.float32) for i in session.get_inputs()}
    return session.run(names, {k: v.astype(dtypes.get(k, np.float32)) for k, v in feed.items()})


def _hook_points(net) -> list[tuple[str, object, bool]]:
    """(op, module, record its input) for every PyTorch module whose forward computes a custom op:
    Converse2D / ConverseDataStep return converse2d's output; Attention feeds transposed_attention's
    output straight into its ``project_out``."""
    from restormer_deploy.restormer.converse_arch import Converse2D, ConverseDataStep
    from restormer_deploy.restormer.restormer_arch import Attention

    points = []
    for module in net.modules():
        if isinstance(module, (Converse2D, ConverseDataStep)):
            points.append(("Converse2D", module, False))
        elif isinstance(module, Attention):
            points.append(("TransposedAttention", module.project_out, True))
    return points


@contextlib.contextmanager
def _recording(net):
    """Record, in call order, the PyTorch tensor of every custom op (forward hooks, removed on exit)."""
    calls: dict[str, list[np.ndarray]] = {op: [] for op in CUSTOM_OPS}
    handles = []

    def hook(op: str, of_input: bool):
        def record(_module, args, output):
            y = args[0] if of_input else output
            calls[op].append(y.detach().float().cpu().numpy())
        return record

    try:
        for op, module, of_input in _hook_points(net):
            handles.append(module.register_forward_hook(hook(op, of_input)))
        yield calls
    finally:
        for handle in handles:
            handle.remove()


def _match_nodes(nodes, values, calls, threshold: float) -> DivergenceReport:
    report, seen, first = [], {op: 0 for op in CUSTOM_OPS}, None
    for node, got in zip(nodes, values):
        k = seen[node.op_type]
        seen[node.op_type] += 1
        entry = NodeDivergence(node=node.name or node.output[0], op=node.op_type, index=k)
        if k >= len(calls[node.op_type]) or calls[node.op_type][k].shape != got.shape:
            entry.error = "no matching PyTorch call"
        else:
            entry.snr_db = snr_db(np.asarray(got, np.float32), calls[node.op_type][k])
            if first is None and entry.snr_db < threshold:
                first = entry
        report.append(entry)
    message = (f"first diverging node: {first.node} ({first.op} #{first.index}), "
               f"SNR {first.snr_db:.1f} dB < {threshold:g} dB" if first else
               f"all {len(report)} custom nodes agree with PyTorch (SNR >= {threshold:g} dB)")
    return DivergenceReport(nodes=report, first_diverging=first, message=message)


def localize_divergence(artifact: str, ref: PyTorchRunner, feed: dict, *, threshold: float) -> DivergenceReport:
    """Expose the outputs of the custom nodes of the ONNX graph, record the matching PyTorch tensors
    (k-th Converse2D node <-> k-th Converse2D computation, likewise TransposedAttention) on the same
    input, and report the first whose signal-to-error ratio is below ``threshold`` dB."""
    import torch

    if not artifact.lower().endswith(".onnx"):
        return DivergenceReport(error="--localize needs an .onnx artefact (engines hide their intermediate tensors)")
    nodes, model = _onnx_custom_outputs(artifact)
    if not nodes:
        return DivergenceReport(message="no Converse2D/TransposedAttention nodes in the graph (inlined or matmul "
                                        "lowering): nothing to localize")
    values = _run_onnx(model, [n.output[0] for n in nodes], feed)
    ref.activate()
    with _recording(ref.net) as calls, torch.inference_mode():
        ref.infer({k: np.asarray(v, np.float32) for k, v in feed.items()})
    return _match_nodes(nodes, values, calls, threshold)
