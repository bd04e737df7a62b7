"""Command line: a thin layer that turns library errors into one-line messages.

:func:`main` parses the arguments (:mod:`modeltriage.cli.parser`), runs the command's
function (:mod:`modeltriage.cli.commands`, :mod:`modeltriage.cli.learning` and the
``eval``/``finetune`` sub-CLIs) and maps errors to exit statuses.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from modeltriage.cli.commands import (
    run_build,
    run_check,
    run_logs,
    run_route,
    run_serve,
    run_simulate,
)
from modeltriage.cli.eval import run_eval
from modeltriage.cli.finetune import run_finetune
from modeltriage.cli.learning import run_learn, run_tune
from modeltriage.cli.parser import build_parser
from modeltriage.cli.review import run_diff, run_lint, run_mine
from modeltriage.errors import ModelTriageError

if TYPE_CHECKING:
    from modeltriage.core.encoders import Encoder

Handler = Callable[[argparse.Namespace, "Encoder | None"], int]

HANDLERS: dict[str, Handler] = {
    "build": run_build,
    "check": run_check,
    "route": run_route,
    "simulate": run_simulate,
    "tune": run_tune,
    "logs": run_logs,
    "learn": run_learn,
    "eval": run_eval,
    # Fine-tuning trains the real model: an injected encoder has nothing to offer it.
    "finetune": lambda args, _encoder: run_finetune(args),
    "serve": run_serve,
    "lint": run_lint,
    "diff": run_diff,
    "mine": run_mine,
}


def main(argv: Sequence[str] | None = None, *, encoder: Encoder | None = None) -> int:
    """Run one ``modeltriage`` command; returns its exit status.

    ``encoder`` replaces the one router.yaml names in every command that embeds text
    (tests pass a fake one); None loads the real encoder when a command needs it.
    """
    args = build_parser().parse_args(argv)
    try:
        return HANDLERS[args.command](args, encoder)
    except ModelTriageError as exc:
        print(f"modeltriage: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader (e.g. `| head`) went away: stop quietly, as Unix tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
