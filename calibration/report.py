"""The INT8 report: the dict (``int8_report``; it is the JSON, under ``int8`` in restore-export's)
and its rich tables (``print_int8_report``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import onnx
from rich.console import Console
from rich.table import Table

from calibration.data import ImageSet
from calibration.qdq import Layer, qdq_summary

if TYPE_CHECKING:
    from calibration.int8 import Int8Options, Ranges
    from calibration.search import SearchResult


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


def _db(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def print_int8_report(console: Console, report: dict, max_rows: int = 25) -> None:
    cal, psnr = report["calibration"], report["psnr"]
    summary = Table("", "", title="INT8 calibration and search")
    summary.add_row("calibration", f"{cal['count']} images from {cal['dir']}, crop {cal['crop'] or 'full'}, "
                    f"degrade {cal['degrade']}, seed {cal['seed']}, method {cal['method']}")
    summary.add_row("range cache", f"{cal['cache'] or '-'} ({cal['cache_state']})")
    search = report["search"]
    summary.add_row("search", f"{search['count']} images from {search['dir']}, crop {search['crop'] or 'full'}")
    summary.add_row("fallback precision", report["fallback"])
    summary.add_row("layers in INT8", f"{report['layers_int8']} / {report['layers_total']}")
    summary.add_row("INT8 share of Conv/MatMul MACs",
                    f"{100 * report['int8_mac_share']:.1f} % (at {report['mac_reference_size']} px)")
    summary.add_row("task PSNR FP32 / INT8", f"{psnr['fp32_vs_gt']:.2f} / {psnr['int8_vs_gt']:.2f} dB")
    summary.add_row("drop (budget)", f"{psnr['drop_db']:.3f} dB ({report['psnr_budget_db']} dB)"
                    + ("" if psnr["within_budget"] else "  [bold red]over budget[/]"))
    summary.add_row("INT8 vs FP32 output", f"{psnr['int8_vs_fp32']:.2f} dB")
    summary.add_row("not quantized", ", ".join(f"{k} ({v})" for k, v in report["excluded"].items()) or "-")
    console.print(summary)

    layers = report["layers"]
    ranked = sorted(layers, key=lambda l: (l["precision"] == "int8", -(l["sensitivity_db"] or 0)))[:max_rows]
    table = Table("layer", "op", "MACs %", "input |max|", "output |max|", "sensitivity dB", "precision",
                  title=f"layers (kept ones and the most sensitive; all {len(layers)} in the JSON)")
    for l in ranked:
        ins = ", ".join(f"{v:.3g}" for v in l["input_amax"].values() if v is not None) or "-"
        outs = ", ".join(f"{v:.3g}" for v in l["output_amax"].values() if v is not None) or "-"
        table.add_row(l["name"], l["op"], f"{100 * l['mac_share']:.2f}", ins[:30], outs[:30],
                      _db(l["sensitivity_db"]), l["precision"])
    console.print(table)
