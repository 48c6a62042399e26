"""The TensorRT version to lint for on this machine (used by scripts/verify_gpu.sh).

    python -m restormer_deploy.cli.lint_trt --version-for 10.3.0.30

Prints the installed version itself, or the newest release the lint knows when it is newer (with a
note on stderr); exit 2 (one line on stderr, naming the known releases) for a version before 10.3,
one that is no TensorRT release (10.99) or one that is not a version.
"""

from __future__ import annotations

import sys

from restormer_deploy.cli.common import EXIT_BAD_INPUT
from restormer_deploy.engines.tensorrt.lint import choose_version
from restormer_deploy.restormer.errors import BadInput

# restore-export --check-trt: 0 every node parses, 1 a node is refused (a cited rule), 4 nothing refused but
# some form is not verified (no read parser source says it parses); 2 bad input as everywhere.
EXIT_NOT_VERIFIED = 4


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] != "--version-for":
        print("usage: python -m restormer_deploy.cli.lint_trt --version-for VERSION", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        chosen, notice = choose_version(argv[1])  # the one choice, shared with the engine builder
    except BadInput as exc:
        print(exc, file=sys.stderr)  # scripts/verify_gpu.sh prefixes "error: "
        return EXIT_BAD_INPUT
    if notice:
        print(notice, file=sys.stderr)
    print(chosen)
    return 0


if __name__ == "__main__":
    sys.exit(main())
