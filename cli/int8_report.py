"""The tables of an INT8 report (``restormer_deploy.calibration.report.int8_report``), for restore-export and
restore-quantize; with a measured CPU speed where INT8 is slower than FP32, the note that says so."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


def _db(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def _amax(values: dict) -> str:
    known = [v for v in values.values() if v is not None]
    return f"{max(known):.3g}" if known else "-"


def print_int8_report(console: Console, report: dict, max_rows: int = 25, notes: bool = True) -> None:
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
    speed = report.get("cpu_speed")
    if speed:
        summary.add_row("ONNX Runtime CPU, FP32 / INT8", f"{speed['fp32_ms']:.0f} / {speed['int8_ms']:.0f} ms "
                        f"({speed['speedup']:.2f}x; {speed['size']}x{speed['size']}, {speed['threads']} thread)"
                        + ("  [bold yellow]INT8 slower[/]" if speed["slower"] else ""))
    summary.add_row("not quantized", ", ".join(f"{k} ({v})" for k, v in report["excluded"].items()) or "-")
    console.print(summary)

    layers = report["layers"]
    ranked = sorted(layers, key=lambda l: (l["precision"] == "int8", -(l["sensitivity_db"] or 0)))[:max_rows]
    table = Table(title=f"layers (kept ones and the most sensitive; all {len(layers)} in the JSON); "
                        "drop: the task-PSNR loss with only that layer in INT8")
    # Names are what --exclude takes: never cut to "node_Conv…". The other columns get fixed widths (one
    # number per range: the largest of the layer's tensors, each in the JSON), the name the rest; a name
    # longer than that folds onto a second line.
    others = {"op": max([2, *(len(l["op"]) for l in ranked)]), "MACs %": 6, "input |max|": 7, "output |max|": 7,
              "drop dB": 7, "precision": 9}
    frame = 3 * (len(others) + 1) + 1  # a border and two padding spaces per column, and the last border
    longest = max((len(l["name"]) for l in ranked), default=5)
    table.add_column("layer", min_width=max(8, min(longest, console.width - frame - sum(others.values()))),
                     overflow="fold")
    for header, width in others.items():
        table.add_column(header, max_width=width, overflow="fold")
    for l in ranked:
        table.add_row(l["name"], l["op"], f"{100 * l['mac_share']:.2f}", _amax(l["input_amax"]),
                      _amax(l["output_amax"]), _db(l["sensitivity_db"]), l["precision"])
    console.print(table)
    from restormer_deploy.calibration.speed import slower_note

    note = slower_note(speed) if notes else None
    if note:
        console.print(f"[yellow]note:[/] {note}", highlight=False, soft_wrap=True)
