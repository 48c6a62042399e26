"""The toolkit's one error hierarchy.

Every error raised on purpose derives from ``RestoreError`` and carries one line for the user; the
commands map the three kinds to exit codes in one place (``restormer_deploy.cli.common.exit_code``):

* ``BadInput`` (2): an input file, option, configuration or model that cannot be used;
* ``CheckFailed`` (1): the work ran but a quality or parity threshold was not met;
* ``RunFailed`` (3): a runtime step failed (a runtime missing or mismatched, a build, an export).

The subclasses keep their historical bases (``ValueError`` for bad input, ``RuntimeError`` for run
failures) so that ``except ValueError`` in user code keeps working.
"""

from __future__ import annotations


class RestoreError(Exception):
    """Base of every deliberate error of the toolkit; ``str(exc)`` is one line for the user."""

    exit_code = 2


class BadInput(RestoreError, ValueError):
    """An input file, option, configuration or model that cannot be used."""

    exit_code = 2


class CheckFailed(RestoreError):
    """The work ran, but a quality or parity threshold was not met."""

    exit_code = 1


class RunFailed(RestoreError, RuntimeError):
    """A runtime step failed: a runtime missing or mismatched, an engine build, an export's self-check."""

    exit_code = 3


def one_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
