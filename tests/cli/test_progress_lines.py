"""Progress in logs: where the output is not a terminal (CliRunner, Slurm, CI) the commands print
periodic one-line progress (count, percent, rate, ETA) instead of nothing; on a terminal, the rich bar only."""

import io
import re

import pytest
from rich.console import Console
from typer.testing import CliRunner

from restormer_deploy.cli.common import ProgressLines
from restormer_deploy.restormer.imageio import write_image

pytestmark = pytest.mark.usefixtures("one_thread")

runner = CliRunner()
EVERY_STEP = {"RESTORE_PROGRESS_INTERVAL": "0"}
# "restoring 2/3 (67%) 4.1 img/s ETA 00:01"; the last line has the elapsed time instead of the ETA
LINE = r"^{what} (\d+)/(\d+) \((\d+)%\) [\d.]+ {unit}/s (ETA|in) \d+:\d\d"


def _lines(output: str, what: str, unit: str) -> list[tuple[int, int, int]]:
    pattern = re.compile(LINE.format(what=re.escape(what), unit=unit))
    return [tuple(map(int, m.groups()[:3])) for m in map(pattern.match, output.splitlines()) if m]


@pytest.fixture(scope="module")
def grey_ckpt(tmp_path_factory, small_checkpoint):
    return str(small_checkpoint(tmp_path_factory.mktemp("m"), "converse-dncnn")[0])


@pytest.fixture
def images(tmp_path, random_image):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(3):
        write_image(src / f"img{i}.png", random_image((24, 20, 1), seed=i))
    return src


def test_restore_run_prints_a_line_per_image_in_logs(grey_ckpt, images, tmp_path):
    from restormer_deploy.cli.run import app

    r = runner.invoke(app, [grey_ckpt, str(images), "-o", str(tmp_path / "out"), "--backend", "torch-cpu"],
                      env=EVERY_STEP, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert _lines(r.output, "restoring", "img") == [(1, 3, 33), (2, 3, 67), (3, 3, 100)], r.output
    # the default interval (30 s): the first line and the last only
    r = runner.invoke(app, [grey_ckpt, str(images), "-o", str(tmp_path / "out2"), "--backend", "torch-cpu"],
                      env={"RESTORE_PROGRESS_INTERVAL": None}, catch_exceptions=False)
    assert _lines(r.output, "restoring", "img") == [(1, 3, 33), (3, 3, 100)], r.output


def test_restore_run_tile_lines_for_one_big_image(grey_ckpt, tmp_path, random_image):
    from restormer_deploy.cli.run import app

    write_image(tmp_path / "big.png", random_image((40, 40, 1)))
    r = runner.invoke(app, [grey_ckpt, str(tmp_path / "big.png"), "-o", str(tmp_path / "out"), "--backend", "torch-cpu",
                            "--tile", "16", "--tile-overlap", "4"], env=EVERY_STEP, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    tiles = _lines(r.output, "  big.png: tile", "tile")
    assert len(tiles) >= 4 and tiles[-1][0] == tiles[-1][1], r.output  # 16-px tiles with overlap 4 over 40 px: 3x3 or more


def test_restore_eval_prints_progress_lines(grey_ckpt, images):
    from restormer_deploy.cli.eval import app

    r = runner.invoke(app, [grey_ckpt, "--data", str(images), "--degrade", "noise:25"], env=EVERY_STEP,
                      catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert _lines(r.output, "restoring", "img") == [(1, 3, 33), (2, 3, 67), (3, 3, 100)], r.output


def test_restore_train_prints_progress_lines(tmp_path, smooth_images, tiny_config, write_config):
    from restormer_deploy.cli.train import app

    images = smooth_images(tmp_path / "imgs", n=3, size=32)
    cfg = tiny_config(tmp_path, images, train={"iterations": 4, "stage_iters": [2, 2], "lr_periods": [2, 2]},
                      val={"every": 4}, checkpoint={"every": 4})
    r = runner.invoke(app, ["--config", str(write_config(tmp_path / "c.yaml", cfg))], env=EVERY_STEP,
                      catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert [c for c, _, _ in _lines(r.output, "training", "it")] == [1, 2, 3, 4], r.output


def test_restore_bench_prints_progress_on_stderr(grey_ckpt):
    from pathlib import Path

    from restormer_deploy.cli.bench import app

    r = runner.invoke(app, [grey_ckpt, "--size", "16x16", "--warmup", "1", "--iters", "2", "--threads", "1"],
                      env=EVERY_STEP, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    name = Path(grey_ckpt).name
    assert [c for c, _, _ in _lines(r.stderr, f"{name}: run", "run")] == [1, 2, 3], r.stderr
    assert "run 1/3" not in r.stdout  # stdout stays the markdown table


def test_no_lines_on_a_terminal_and_eta_from_the_rate(monkeypatch):
    buf = io.StringIO()
    tty = Console(file=buf, force_terminal=True)
    lines = ProgressLines("restoring", 4, console=tty, interval=0)
    lines.advance()
    assert buf.getvalue() == ""

    log = Console(file=io.StringIO(), force_terminal=False, width=200)
    clock = iter([100.0, 110.0, 120.0])  # start, after 1 item (10 s), after 2
    monkeypatch.setattr("restormer_deploy.cli.common.time.monotonic", lambda: next(clock))
    lines = ProgressLines("restoring", 4, console=log, interval=0)
    lines.advance()
    lines.advance()
    # 2 items in 20 s: 0.1 img/s, 2 left: 20 s
    assert log.file.getvalue().splitlines() == ["restoring 1/4 (25%) 0.1 img/s ETA 00:30",
                                                "restoring 2/4 (50%) 0.1 img/s ETA 00:20"]
