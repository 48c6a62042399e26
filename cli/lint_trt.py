"""The TensorRT version to lint for on this machine (used by scripts/verify_gpu.sh).

    python -m restormer_deploy.cli.lint_trt --version-for 10.3.0.30

Prints the installed version itself, or the newest release the lint knows when it is newer (with a
note on stderr); exit 2 (one line on stderr, naming the known releases) for a version before 10.3,
one that is no TensorRT release (10.99) or one that is not a version.
"""

from __future__ import annotations

import sys

from restormer_deploy.cli.common import EXIT_BAD_INPUT
from restormer_deploy.engines.tensorrt.lint import version_for
from restormer_deploy.restormer.errors import BadInput


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] != "--version-for":
        print("usage: python -m restormer_deploy.cli.lint_trt --version-for VERSION", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        chosen = version_for(argv[1])
    except BadInput as exc:
        print(exc, file=sys.stderr)  # scripts/verify_gpu.sh prefixes "error: "
        return EXIT_BAD_INPUT
    if chosen != argv[1]:
        print(f"note: TensorRT {argv[1]} is newer than the newest release the lint knows: linting for {chosen}",
              file=sys.stderr)
    print(chosen)
    return 0


if __name__ == "__main__":
    sys.exit(main())
