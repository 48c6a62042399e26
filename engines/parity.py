"""Parity of an exported artefact (ONNX / TensorRT engine / checkpoint) with the PyTorch reference on
real images: what restore-parity runs.

``prepare_parity`` loads both runners and the degraded samples, ``run_parity`` runs them with
polygraphy's Comparator (our runners wrapped as polygraphy runners) and scores with our own
functions: PSNR of the artefact against PyTorch with peak 1.0 on outputs clamped to [0, 1], and the
task PSNR of both against the ground truth (``restormer_deploy.restormer.metrics.task_scores``, as restore-eval).
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

from restormer_deploy.engines.backends import BackendError, PyTorchRunner, Runner, as_polygraphy, load_runner
from restormer_deploy.export.contract import MAX_TASK_DROP_DB, PARITY_FLOORS
from restormer_deploy.restormer.degrade import parse_degradation
from restormer_deploy.restormer.errors import one_line
from restormer_deploy.restormer.evaluate import check_compatible
from restormer_deploy.restormer.imageio import ImageReadError, list_images, read_image
from restormer_deploy.restormer.metrics import PSNR_CAP, psnr_peak1, task_scores
from restormer_deploy.restormer.presets import ModelSpec
from restormer_deploy.restormer.tiling import pad_reflect, padded_size

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


def task_psnr(y: np.ndarray, gt: np.ndarray, *, border: int = 0, y_channel: bool = False) -> float:
    """(1, C, H, W) float output vs the uint ground truth: the output clamped, rounded to the ground
    truth's dtype and scored as restore-eval does."""
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


@dataclass
class ImageParity:
    """One image: the artefact against PyTorch, and (degraded samples) both against the ground truth."""

    name: str
    psnr_vs_reference: float
    finite: bool
    max_abs_err: float | None
    task_psnr_reference: float | None = None
    task_psnr_artifact: float | None = None
    task_psnr_drop: float | None = None

    def to_json(self) -> dict:
        row = asdict(self)
        if self.task_psnr_reference is None:
            for key in ("task_psnr_reference", "task_psnr_artifact", "task_psnr_drop"):
                del row[key]
        return row


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
    task_psnr_reference: float | None
    task_psnr_artifact: float | None
    task_psnr_drop: float | None
    unreadable: list[str]
    localize: DivergenceReport | None = None

    @property
    def has_task(self) -> bool:
        return self.task_psnr_reference is not None

    def to_json(self) -> dict:
        """The JSON of restore-parity --json (finite numbers only)."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["images"] = [r.to_json() for r in self.images]
        if self.localize is None:
            del data["localize"]
        else:
            data["localize"] = self.localize.to_json()
        return finite_json(data)


# --------------------------------------------------------------------------- the run


@dataclass
class ParityInputs:
    """Both runners (the reference loaded, ``keep_loaded``) and the samples they are compared on."""

    artifact_name: str
    reference_name: str
    artifact: Runner
    reference: PyTorchRunner
    degrade: str | None
    samples: list[ParitySample]
    unreadable: list[str] = field(default_factory=list)


def _check_same_model(art: Runner, ref: PyTorchRunner, artifact: str, reference: str) -> None:
    for key in ("in_channels", "out_channels", "scale", "needs_kernel"):
        if getattr(art.spec, key) != getattr(ref.spec, key):
            raise ValueError(f"{artifact} has {key}={getattr(art.spec, key)} but the reference "
                             f"{reference} has {getattr(ref.spec, key)}: not the same model")


def prepare_parity(artifact: str, reference: str, *, images: Path, weights=None, backend: str = "auto",
                   degrade: str | None = None, limit: int | None = None, crop: int | None = None, seed: int = 0,
                   threads: int | None = None,
                   on_unreadable: Callable[[Path, BaseException], None] | None = None) -> ParityInputs:
    """Load both runners and the samples; ValueError / BackendError / OSError on unusable input.
    ``degrade`` defaults to the reference preset's protocol; unreadable images are reported to
    ``on_unreadable`` and listed in ``unreadable``."""
    art = load_runner(artifact, backend, threads=threads)
    ref = PyTorchRunner(reference, weights=weights)
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
    if threads:
        import torch

        torch.set_num_threads(threads)
    ref.keep_loaded = True
    ref.activate()  # load the weights now so that a bad file is a usage error
    return ParityInputs(artifact_name=artifact, reference_name=reference, artifact=art, reference=ref,
                        degrade=spec_text, samples=samples, unreadable=unreadable)


def compare_image(sample: ParitySample, y_artifact: np.ndarray, y_reference: np.ndarray) -> ImageParity:
    """Both outputs, already cropped to the image: PSNR vs PyTorch and the task PSNRs."""
    finite = bool(np.isfinite(y_artifact).all())
    row = ImageParity(
        name=sample.name, psnr_vs_reference=psnr_peak1(y_artifact, y_reference) if finite else 0.0, finite=finite,
        max_abs_err=float(np.max(np.abs(y_artifact - y_reference))) if finite and y_artifact.size else None)
    if sample.gt is not None:
        row.task_psnr_reference = task_psnr(y_reference, sample.gt, border=sample.border, y_channel=sample.y_channel)
        row.task_psnr_artifact = task_psnr(np.nan_to_num(y_artifact), sample.gt, border=sample.border,
                                           y_channel=sample.y_channel)
        row.task_psnr_drop = row.task_psnr_reference - row.task_psnr_artifact
    return row


def _compare_all(inputs: ParityInputs, feeds: list, sizes: list, floor: float) -> tuple[list[ImageParity], bool]:
    """Comparator.run on both runners and our compare function; BackendError on any runtime failure."""
    from polygraphy.comparator import Comparator

    rows: list[ImageParity] = []
    s = inputs.reference.spec.scale

    def compare(res_art, res_ref):
        i = len(rows)
        h, w = sizes[i]
        ya = np.asarray(next(iter(res_art.values())), np.float32)[..., : h * s, : w * s]
        yr = np.asarray(next(iter(res_ref.values())), np.float32)[..., : h * s, : w * s]
        rows.append(compare_image(inputs.samples[i], ya, yr))
        return OrderedDict(output=rows[-1].psnr_vs_reference >= floor and rows[-1].finite)

    art, ref = inputs.artifact, inputs.reference
    ref.deactivate()
    runners = [as_polygraphy(art, f"artifact[{art.name}]"), as_polygraphy(ref, "reference[torch-cpu]")]
    try:
        results = Comparator.run(runners, data_loader=feeds)
        accuracy = Comparator.compare_accuracy(results, compare_func=compare)
    except Exception as exc:  # any runtime failure (ONNX Runtime, polygraphy's wrapper): one line
        raise BackendError(f"inference failed: {one_line(exc)}") from None
    return rows, bool(accuracy)


def run_parity(inputs: ParityInputs, *, min_psnr: float | None = None, max_drop: float = MAX_TASK_DROP_DB,
               localize: bool = False, verbose: bool = False) -> ParityReport:
    """Run both runners on every sample and judge: PSNR vs PyTorch >= the floor on every image (by
    the artefact's precision unless ``min_psnr``) and a task-PSNR drop <= ``max_drop``."""
    from polygraphy.logger import G_LOGGER

    if not verbose:
        G_LOGGER.module_severity = G_LOGGER.WARNING
    precision = inputs.artifact.precision
    floor = parity_floor(precision, min_psnr)
    spec = inputs.reference.spec
    feeds, sizes = zip(*(make_feed(spec, sample) for sample in inputs.samples))
    rows, accuracy = _compare_all(inputs, list(feeds), list(sizes), floor)

    psnrs = [r.psnr_vs_reference for r in rows]
    has_task = bool(rows) and rows[0].task_psnr_reference is not None
    task_ref = float(np.mean([r.task_psnr_reference for r in rows])) if has_task else None
    task_art = float(np.mean([r.task_psnr_artifact for r in rows])) if has_task else None
    drop = (task_ref - task_art) if has_task else None
    report = ParityReport(
        artifact=inputs.artifact_name, reference=inputs.reference_name, backend=inputs.artifact.name,
        precision=precision, degrade=inputs.degrade, images=rows, threshold_psnr=floor, max_drop=max_drop,
        passed=accuracy and min(psnrs) >= floor and (drop is None or drop <= max_drop),
        min_psnr_vs_reference=float(min(psnrs)), mean_psnr_vs_reference=float(np.mean(psnrs)),
        task_psnr_reference=task_ref, task_psnr_artifact=task_art, task_psnr_drop=drop,
        unreadable=inputs.unreadable)
    if localize:
        try:
            report.localize = localize_divergence(inputs.artifact_name, inputs.reference, feeds[0], threshold=floor)
        except Exception as exc:  # diagnostics never change the verdict
            report.localize = DivergenceReport(error=one_line(exc))
    return report


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
