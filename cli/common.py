"""Shared pieces of the command-line tools: exit codes, error reporting, JSON output."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.errors import MarkupError
from rich.markup import RE_TAGS, escape

from restormer_deploy.restormer.errors import RestoreError, one_line

EXIT_CHECK_FAILED, EXIT_BAD_INPUT, EXIT_RUN_FAILED = 1, 2, 3
# What a command reports as one error line (and an exit code) instead of a traceback.
USER_ERRORS = (RestoreError, ValueError, OSError)

class _Console(Console):
    """A rich Console that never aborts a command over markup: a line whose user-supplied text reads as
    broken markup (a path ``in[/]x.png``) is printed again with its tags removed and no markup.
    Commands escape the values they print (``shown``); this is the net under the ones that do not."""

    def print(self, *objects, **kwargs):
        try:
            super().print(*objects, **kwargs)
        except MarkupError:
            plain = [RE_TAGS.sub("", printable(o)) if isinstance(o, str) else o for o in objects]
            saved, self._markup = self._markup, False
            try:
                super().print(*plain, **{**kwargs, "markup": False})
            finally:
                self._markup = saved


console = _Console(stderr=True)
out = _Console()


def printable(value) -> str:
    """``value`` as text with control characters (terminal escapes, newlines, DEL, C1) written as
    ``\\xNN``/``\\uNNNN``: a file name cannot move the cursor, recolour or retitle the terminal."""
    text = str(value)
    if all(c.isprintable() or c == " " for c in text):
        return text
    return "".join(c if c.isprintable() or c == " " else ascii(c)[1:-1] for c in text)


def shown(value) -> str:
    """A user-supplied value (a path, a name, an error message quoting one) for a rich string with
    markup: control characters escaped (``printable``) and ``[`` escaped, so ``x[bold].png`` prints
    as itself and ``a[/]b`` raises no MarkupError."""
    return escape(printable(value))


def fail(message: str, code: int = EXIT_BAD_INPUT) -> typer.Exit:
    """Print one clear error line and return the Exit to raise (``message`` is shown as text, no markup)."""
    console.print(f"[bold red]error:[/] {shown(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def exit_code(exc: BaseException) -> int:
    """The one mapping of errors to exit codes: RestoreError subclasses carry theirs
    (restormer/errors.py); anything else a user can cause (ValueError, OSError) is bad input."""
    return exc.exit_code if isinstance(exc, RestoreError) else EXIT_BAD_INPUT


def fail_from(exc: BaseException, code: int | None = None) -> typer.Exit:
    """``fail`` with the exception's first line and its exit code (or ``code``)."""
    return fail(one_line(exc), exit_code(exc) if code is None else code)


def write_json(path: Path, data: dict) -> None:
    """Atomic: a reader never sees a half-written file."""
    path = Path(path)
    if not path.parent.is_dir():
        raise fail(f"cannot write {path}: folder {path.parent} does not exist")
    from restormer_deploy.restormer.fileio import atomic_write_text

    text = json.dumps(data, indent=2, allow_nan=False, default=str) + "\n"
    try:
        atomic_write_text(path, text)
    except IsADirectoryError:
        raise fail(f"cannot write {path}: it is a folder") from None
    except OSError as exc:
        raise fail(f"cannot write {path}: {exc.strerror or exc}") from None


MAX_THREADS = 4096
SEED_RANGE = (0, 2**32 - 1)  # numpy's RandomState, which seeds --degrade noise


def check_threads(threads: int | None) -> None:
    """ValueError naming --threads unless it is None or 1..MAX_THREADS (beyond, PyTorch and ONNX
    Runtime fail with an overflow that names nothing)."""
    if threads is not None and not 1 <= threads <= MAX_THREADS:
        raise ValueError(f"--threads {threads}: must be in 1..{MAX_THREADS}")


def check_seed(seed: int) -> None:
    """ValueError naming --seed unless numpy can seed with it."""
    if not SEED_RANGE[0] <= seed <= SEED_RANGE[1]:
        raise ValueError(f"--seed {seed}: must be in {SEED_RANGE[0]}..{SEED_RANGE[1]}")


def set_threads(threads: int | None) -> None:
    try:
        check_threads(threads)
    except ValueError as exc:
        raise fail(str(exc)) from None
    if threads:
        import torch

        torch.set_num_threads(threads)


def check_tiling(tile: int | None, overlap: int | None, pad_multiple: int = 1, model_tile: int | None = None) -> None:
    """The --tile/--tile-overlap pair of restore-run and restore-eval (ValueError, for fail()): a tile of
    at least 16 and 4x the model's ``pad_multiple``, an overlap of at most half the tile. None: not
    given (``model_tile``, the model's recommendation, stands for a tile not given), tile 0: the whole image."""
    from restormer_deploy.restormer.presets import tiling_error  # imports torch: not for every command

    effective = model_tile if tile is None else tile
    problem = tiling_error(effective, 0 if overlap is None else overlap, pad_multiple)
    if problem:
        given = " ".join(f"{flag} {v}" for flag, v in (("--tile", tile), ("--tile-overlap", overlap)) if v is not None)
        raise ValueError(f"{given}{f' (with the model tile {model_tile})' if tile is None else ''}: {problem}")


PROGRESS_INTERVAL_ENV = "RESTORE_PROGRESS_INTERVAL"
PROGRESS_INTERVAL_S = 30.0


def progress_interval() -> float:
    """Seconds between progress lines: $RESTORE_PROGRESS_INTERVAL (0: every step), else 30."""
    try:
        value = float(os.environ.get(PROGRESS_INTERVAL_ENV, PROGRESS_INTERVAL_S))
    except ValueError:
        return PROGRESS_INTERVAL_S
    return value if value >= 0 else PROGRESS_INTERVAL_S


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


class ProgressLines:
    """Progress for logs (Slurm, CI): where ``console`` is not a terminal, and so shows no rich bar,
    one line such as ``restoring 12/300 (4%) 0.41 img/s ETA 11:57`` after the first step, then at
    most every ``interval`` seconds (``progress_interval()``) and at the end (``ends=False``: only
    the periodic lines). On a terminal it prints nothing: the command's rich bar shows progress."""

    def __init__(self, description: str, total: int, *, unit: str = "img", start: int = 0, ends: bool = True,
                 console: Console = out, interval: float | None = None):
        self.enabled = not console.is_terminal
        self.description, self.total, self.unit, self.ends, self.console = description, total, unit, ends, console
        self.interval = progress_interval() if interval is None else interval
        self.start = self.completed = start
        self.t0 = self.last = time.monotonic()
        self.lines = 0

    def advance(self, steps: int = 1) -> None:
        self.update(self.completed + steps)

    def update(self, completed: int) -> None:
        self.completed = completed
        if not self.enabled:
            return
        now = time.monotonic()
        done = completed >= self.total
        if (self.ends and (self.lines == 0 or done)) or now - self.last >= self.interval:
            self.last, self.lines = now, self.lines + 1
            self.console.print(self.line(now), highlight=False, markup=False, soft_wrap=True)

    def line(self, now: float) -> str:
        pct = 100 * self.completed / self.total if self.total else 100.0
        text = f"{self.description} {self.completed}/{self.total} ({pct:.0f}%)"
        elapsed, steps = now - self.t0, self.completed - self.start
        if elapsed > 0 and steps > 0:
            rate = steps / elapsed
            text += f" {rate:.3g} {self.unit}/s" if rate < 100 else f" {rate:.0f} {self.unit}/s"
            if self.completed < self.total:
                text += f" ETA {_clock((self.total - self.completed) / rate)}"
            else:
                text += f" in {_clock(elapsed)}"
        return text


def run(app: typer.Typer) -> None:
    """Entry point: typer usage errors exit 2; our own errors were already turned into exits."""
    try:
        app()
    except KeyboardInterrupt:
        console.print("interrupted")
        sys.exit(130)
