"""Shared pieces of the command-line tools: exit codes, error reporting, JSON output."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console

from restormer_deploy.restormer.errors import RestoreError, one_line

EXIT_CHECK_FAILED, EXIT_BAD_INPUT, EXIT_RUN_FAILED = 1, 2, 3
# What a command reports as one error line (and an exit code) instead of a traceback.
USER_ERRORS = (RestoreError, ValueError, OSError)

console = Console(stderr=True)
out = Console()


def fail(message: str, code: int = EXIT_BAD_INPUT) -> typer.Exit:
    """Print one clear error line and return the Exit to raise."""
    console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
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


def set_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def check_tiling(tile: int | None, overlap: int) -> None:
    """The --tile/--tile-overlap pair of restore-run and restore-eval (ValueError, for fail())."""
    if tile is not None and overlap >= tile:
        raise ValueError(f"--tile-overlap {overlap} must be smaller than --tile {tile}")


def run(app: typer.Typer) -> None:
    """Entry point: typer usage errors exit 2; our own errors were already turned into exits."""
    try:
        app()
    except KeyboardInterrupt:
        console.print("interrupted")
        sys.exit(130)
