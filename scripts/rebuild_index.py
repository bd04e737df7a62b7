#!/usr/bin/env python3
"""Rebuild the exemplar index for an intents directory (same as `modeltriage build`)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from modeltriage import Encoder
from modeltriage.cli.main import main


def rebuild(argv: Sequence[str], encoder: Encoder | None = None) -> int:
    """`modeltriage build` with these arguments; ``encoder`` replaces router.yaml's."""
    return main(["build", *argv], encoder=encoder)


if __name__ == "__main__":
    sys.exit(rebuild(sys.argv[1:]))
