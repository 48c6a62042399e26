"""restore-train: train a preset of either model family from a YAML/TOML config, resumable, on 1..N processes."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
import yaml
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.markup import escape
from rich.text import Text

from restormer_deploy.cli.common import USER_ERRORS, ProgressLines, console, fail_from, out, run, set_threads, shown
from restormer_deploy.restormer.presets import PRESETS
from restormer_deploy.restormer.train import Hooks, load_config, train
from restormer_deploy.restormer.train.config import valid_keys

_EXAMPLES = """
  restore-train --config configs/default.yaml resume=auto
      (starts the run, or continues it from run_dir/last.state.pt after an interruption)

  restore-train --config configs/restormer-denoise-color.yaml data.clean=[/data/DFWB] train.lr=1e-4

  restore-train --config configs/default.yaml data.sigma=[0,50] train.iterations=2000 run_dir=runs/short

  restore-train --config configs/converse-usrnet-deblur.yaml --resume

  torchrun --nproc_per_node 4 -m restormer_deploy.cli.train --config configs/restormer-denoise-color.yaml
"""

_OVERRIDES = """KEY=VALUE after the options, dotted keys, YAML values: train.lr=1e-4
data.sigma=[0,50] model_config.dim=32 val.crop=null. ${shared} in a path is the shared data folder;
data.clean=[skimage:] is the colour photos bundled with scikit-image."""

EPILOG = f"""
[bold]Examples[/]
{escape(_EXAMPLES)}
[bold]Overrides[/]: {escape(_OVERRIDES)}

[bold]Config keys[/]: {", ".join(valid_keys())}

[bold]Presets[/]: {", ".join(PRESETS)}

Run folder (run_dir): config.json, log.jsonl, last.safetensors + last.json, last.state.pt (resume state),
best.safetensors + best.json. Ctrl-C saves a checkpoint first. The .safetensors load with restore-eval.
init_weights is a weights file or a preset name (its shipped or official weights, e.g. init_weights=default).
Output that is not a terminal (a log) gets the loss every train.log_every iterations and a progress
line (iterations, it/s, ETA) every 30 s ($RESTORE_PROGRESS_INTERVAL) instead of the bar.

Exit status: 0 success; 2 on bad usage or input (missing folder, unknown key, wrong resume state); 130 interrupted.
"""

app = typer.Typer(add_completion=False, rich_markup_mode="rich", context_settings={"help_option_names": ["-h", "--help"]})


class RateColumn(ProgressColumn):
    def render(self, task) -> Text:
        return Text(f"{task.speed:.2f} it/s" if task.speed else "-- it/s")


class ProgressHooks(Hooks):
    """Rich progress bar with loss, LR and iterations per second; validation results as lines."""

    def __init__(self):
        columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("loss {task.fields[loss]:.4f}  lr {task.fields[lr]:.2e}"), RateColumn(),
                   TimeElapsedColumn(), TimeRemainingColumn()]
        self.progress = Progress(*columns, console=out, transient=False)
        self.task = None
        self.lines = None  # in logs, where the bar is not shown

    def info(self, message):
        out.print(shown(message), highlight=False)

    def warn(self, message):
        console.print(f"[yellow]warning:[/] {shown(message)}", highlight=False, soft_wrap=True)

    def start(self, first, total):
        self.progress.start()
        self.task = self.progress.add_task("training", total=total, completed=first, loss=float("nan"), lr=0.0)
        self.lines = ProgressLines("training", total, unit="it", start=first)

    def step(self, it, loss, lr):
        self.progress.update(self.task, completed=it, loss=loss, lr=lr)
        self.lines.update(it)

    def record(self, rec):
        if "val_psnr" in rec:
            self.progress.console.print(
                f"iter {rec['iter']}: val PSNR {rec['val_psnr']:.2f} dB, SSIM {rec['val_ssim']:.4f} "
                f"(best {rec['best_psnr']:.2f} at {rec['best_iter']})", highlight=False)
        elif not out.is_terminal:
            self.progress.console.print(f"iter {rec['iter']}: loss {rec['loss']:.5f} lr {rec['lr']:.3e} {rec['it_s']:.3f} it/s",
                                        highlight=False)

    def stop(self):
        self.progress.stop()


@app.command(help=__doc__.strip() if __doc__ else None, epilog=EPILOG)
def main(
    config: Path = typer.Option(..., "--config", "-c", help="YAML (.yaml/.yml), TOML (.toml) or JSON config file."),
    overrides: Optional[List[str]] = typer.Argument(None, help="KEY=VALUE overrides of config keys (dotted)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in run_dir from last.state.pt (same as resume=yes)."),
    print_config: bool = typer.Option(False, "--print-config", help="Print the resolved config and exit."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="CPU threads for PyTorch."),
) -> None:
    set_threads(threads)
    try:
        cfg = load_config(config, [*(overrides or []), *(["resume=yes"] if resume else [])])
    except USER_ERRORS as exc:
        raise fail_from(exc)
    if print_config:
        out.print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), highlight=False, end="")
        return
    hooks = ProgressHooks()
    try:
        result = train(cfg, hooks)
    except USER_ERRORS as exc:  # OSError: run_dir full or gone mid-run
        hooks.stop()
        raise fail_from(exc)
    except KeyboardInterrupt:
        hooks.stop()
        console.print(f"interrupted; checkpoint in {shown(cfg.run_dir)}. Continue with: restore-train --config {shown(config)} --resume")
        raise typer.Exit(130)
    hooks.stop()
    best = f", best val PSNR {result.best['val_psnr']:.2f} dB at {result.best['iter']}" if result.best else ""
    weights = Path(cfg.run_dir) / "last.safetensors"
    written = f"weights {shown(weights)}" if weights.is_file() else f"no checkpoint written ({shown(cfg.run_dir)})"
    out.print(f"done: {result.iteration} iterations{best}; {written}", highlight=False)


def entry() -> None:
    run(app)


if __name__ == "__main__":
    entry()
