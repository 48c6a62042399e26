"""The tables of an INT8 export's report (``restormer_deploy.calibration.report.int8_report``), for restore-export."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


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
