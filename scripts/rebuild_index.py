#!/usr/bin/env python3
"""Rebuild the exemplar index for an intents directory (same as `modeltriage build`)."""

from __future__ import annotations

import sys

from modeltriage.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["build", *sys.argv[1:]]))
