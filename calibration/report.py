"""The INT8 report: a dict (``int8_report``; it is the JSON, under ``int8`` in restore-export's);
``restormer_deploy.cli.int8_report`` prints it."""

from __future__ import annotations

import onnx

from restormer_deploy.calibration.data import ImageSet
from restormer_deploy.calibration.options import Int8Options
from restormer_deploy.calibration.qdq import Layer, qdq_summary
from restormer_deploy.calibration.ranges import Ranges
from restormer_deploy.calibration.search import SearchResult


def int8_report(*, opts: Int8Options, calib: ImageSet, search: ImageSet, ranges: Ranges, layers: list[Layer],
                found: SearchResult, excluded: dict[str, str], model: onnx.ModelProto, seconds: float) -> dict:
    """Settings, scores, the decision of every layer and the Q/DQ counts of ``model``."""
    total_macs = sum(l.macs for l in layers) or 1
    chosen = {l.name for l in found.chosen}
    reasons = {**excluded, **found.kept}
    amax = ranges.amax
    cache = str(opts.calib_cache) if opts.calib_cache else None
    return {
        "calibration": {"dir": str(opts.calib_dir), **calib.describe(), "crop": opts.calib_size or None,
                        "degrade": ranges.settings["degrade"], "seed": opts.seed, "method": opts.calib_method,
                        "cache": cache, "cache_state": ranges.cache_state},
        "search": {"dir": str(opts.search_dir or opts.calib_dir), **search.describe(),
                   "crop": opts.search_size or None},
        "fallback": opts.fallback,
        "psnr_budget_db": opts.psnr_budget,
        "psnr": {"fp32_vs_gt": found.fp32_psnr, "int8_vs_gt": found.int8_psnr, "int8_vs_fp32": found.int8_vs_fp32,
                 "drop_db": found.drop_db, "within_budget": found.within(opts.psnr_budget)},
        "mac_reference_size": opts.mac_size,
        "int8_mac_share": sum(l.macs for l in found.chosen) / total_macs,
        "total_macs": total_macs,
        "layers_total": len(layers),
        "layers_int8": len(found.chosen),
        "excluded": {name: reasons[name] for name in reasons if name not in chosen},
        "greedy_steps": found.steps,
        "layers": [
            {
                "name": l.name, "op": l.op_type, "nodes": len(l.nodes), "macs": l.macs,
                "mac_share": l.macs / total_macs,
                "precision": "int8" if l.name in chosen else opts.fallback,
                "reason": reasons.get(l.name, ""),
                "input_amax": {t: amax.get(t) for t in l.inputs},
                "output_amax": {t: amax.get(t) for t in l.outputs},
                "sensitivity_db": found.sensitivity.get(l.name),
            }
            for l in layers
        ],
        "qdq": qdq_summary(model),
        "seconds": seconds,
    }
