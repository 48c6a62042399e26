"""Per-layer sensitivity and the greedy mixed-precision search.

Sensitivity: for every candidate layer, the task-PSNR loss on the search images when only that layer
is INT8. Greedy: start with every candidate in INT8 and move the most sensitive one back to higher
precision until the loss of the whole model is within the budget. Every variant runs in ONNX Runtime
on the CPU as the FP32-fallback graph (FP16 changes the result by far less than INT8 does).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx

from restormer_deploy.calibration.data import ImageSet
from restormer_deploy.calibration.qdq import Layer
from restormer_deploy.export.ort_session import cpu_session
from restormer_deploy.restormer.imageio import from_float
from restormer_deploy.restormer.metrics import psnr_peak1, task_scores

TASK_PSNR_CAP = 100.0  # dB: an image restored exactly does not outweigh the others


def run_set(sess, images: ImageSet) -> list[np.ndarray]:
    """The session's outputs on every image (HxWxC float32, the padding cut off)."""
    outs = []
    for arrays, (h, w) in zip(images.inputs, images.sizes):
        feeds = {}
        for meta, value in zip(sess.get_inputs(), arrays):
            feeds[meta.name] = value.astype(np.float16 if meta.type == "tensor(float16)" else np.float32)
        y = sess.run(None, feeds)[0].astype(np.float32)[0, :, :h, :w]
        outs.append(y.transpose(1, 2, 0))
    return outs


def task_psnr(outputs: list[np.ndarray], images: ImageSet) -> float:
    """Mean PSNR of the outputs (rounded to 8 bits, as ``restore-eval``) against the ground truths."""
    values = [min(task_scores(from_float(y), gt, border=border, y_channel=y_channel, with_ssim=False)[0], TASK_PSNR_CAP)
              for y, gt, (border, y_channel) in zip(outputs, images.targets, images.scoring)]
    return float(np.mean(values))


def psnr_vs(outputs: list[np.ndarray], refs: list[np.ndarray]) -> float:
    """Mean PSNR (peak 1, clamped to [0, 1]) of outputs against reference outputs."""
    return float(np.mean([psnr_peak1(a, b) for a, b in zip(outputs, refs)]))


@dataclass(kw_only=True)
class SearchResult:
    chosen: list[Layer]                   # the layers left in INT8
    fp32_psnr: float                      # task PSNR of the FP32 graph
    int8_psnr: float                      # ... of the chosen mix
    int8_vs_fp32: float                   # PSNR of the mix's outputs against the FP32 outputs
    sensitivity: dict[str, float] = field(default_factory=dict)  # layer -> dB lost when only it is INT8
    kept: dict[str, str] = field(default_factory=dict)           # layer -> why the greedy step kept it out
    steps: list[dict] = field(default_factory=list)

    @property
    def drop_db(self) -> float:
        return self.fp32_psnr - self.int8_psnr

    def within(self, budget: float) -> bool:
        return self.drop_db <= budget


def greedy_search(graph: onnx.ModelProto, candidates: list[Layer], images: ImageSet, *,
                  quantize: Callable[[list[Layer]], onnx.ModelProto], budget: float, sensitivity: bool = True,
                  threads: int = 1, log=print) -> SearchResult:
    """The INT8 layers among ``candidates`` (``quantize(layers)``: the Q/DQ graph of those layers)."""
    fp32_out = run_set(cpu_session(graph, threads=threads), images)
    fp32_psnr = task_psnr(fp32_out, images)

    def evaluate(chosen: list[Layer]) -> tuple[float, float]:
        outs = run_set(cpu_session(quantize(chosen), threads=threads), images)
        return task_psnr(outs, images), psnr_vs(outs, fp32_out)

    scores: dict[str, float] = {}
    if sensitivity and candidates:
        log(f"sensitivity of {len(candidates)} layers on {len(images.names)} search images ...")
        for layer in candidates:
            scores[layer.name] = fp32_psnr - evaluate([layer])[0]
    chosen = list(candidates)
    int8_psnr, int8_vs_fp32 = evaluate(chosen)
    result = SearchResult(chosen=chosen, fp32_psnr=fp32_psnr, int8_psnr=int8_psnr, int8_vs_fp32=int8_vs_fp32,
                          sensitivity=scores, steps=[{"kept": [], "drop_db": fp32_psnr - int8_psnr}])
    if sensitivity:
        order = sorted(candidates, key=lambda l: -scores[l.name])
        while result.drop_db > budget and chosen:
            worst = next(l for l in order if l in chosen)
            chosen.remove(worst)
            result.kept[worst.name] = f"sensitivity {scores[worst.name]:.3f} dB"
            result.int8_psnr, result.int8_vs_fp32 = evaluate(chosen)
            result.steps.append({"kept": worst.name, "drop_db": result.drop_db})
    if not result.within(budget):
        log(f"warning: INT8 loses {result.drop_db:.2f} dB on the search images, over the {budget} dB budget")
    return result
