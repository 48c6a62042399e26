"""restore-bench: latency/memory/FLOPs rows, markdown, bad usage."""

import json

import pytest
from typer.testing import CliRunner

from restormer_deploy.cli.bench import app as bench_app
from restormer_deploy.cli.bench import parse_size
from restormer_deploy.engines.bench import count_flops
from restormer_deploy.restormer.presets import PRESETS

pytestmark = pytest.mark.usefixtures("one_thread")

runner = CliRunner()


def test_parse_size():
    assert parse_size("256x128") == (256, 128) and parse_size("64") == (64, 64)
    with pytest.raises(ValueError):
        parse_size("big")


def test_flops_of_a_plain_preset():
    spec = PRESETS["converse-dncnn"]
    flops = count_flops(spec, (1, 1, 32, 32))
    # 1x1 head (1->64), tail (64->1) and per block two 1x1 convs 64->64 and 64->? ... at least the head/tail
    assert flops is not None and flops > 2 * 2 * 64 * 32 * 32


def test_bench_rows_and_markdown(art, tmp_path):
    out = tmp_path / "b.json"
    r = runner.invoke(bench_app, [str(art["fp32"]), str(art["ckpt"]), "--size", "24x32", "--iters", "2", "--warmup", "1",
                                  "--threads", "1", "--json", str(out)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "| artifact | backend |" in r.output
    rows = json.loads(out.read_text())["rows"]
    assert [row["backend"] for row in rows] == ["ort-cpu", "torch-cpu"]
    for row in rows:
        assert set(row) >= {"backend", "precision", "size", "median_ms", "p90_ms", "peak_mem_mb"}
        assert row["size"] == "24x32" and 0 < row["median_ms"] <= row["p90_ms"] and row["peak_mem_mb"] >= 0
    assert rows[1]["gflops"] > 0 and rows[1]["gflop_per_s"] > 0  # checkpoint: FLOPs from its own config


def test_bench_bad_usage(art):
    assert runner.invoke(bench_app, [str(art["fp32"]), "--size", "axb"]).exit_code == 2
    assert runner.invoke(bench_app, ["missing.onnx"]).exit_code == 2
