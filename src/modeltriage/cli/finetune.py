"""`modeltriage finetune`: thin CLI over modeltriage.learn.finetune."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def add_finetune_parser(sub: Any) -> None:
    p = sub.add_parser(
        "finetune",
        help="fine-tune the encoder on the exemplars (contrastive; minutes on a CPU)",
        description="Fine-tune all-MiniLM-L6-v2 so exemplars of one intent embed close "
        "together and apart from other intents'. Then set encoder.path in router.yaml, "
        "rebuild the index and re-tune min_similarity.",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--intents", type=Path, help="intents directory to train on")
    source.add_argument(
        "--exemplars",
        type=Path,
        help="*.intents.jsonl to train on (rows without an intent are skipped)",
    )
    p.add_argument("--out", type=Path, required=True, help="directory for the fine-tuned model")
    p.add_argument("--epochs", type=int, default=1, help="passes over the exemplars (%(default)s)")
    p.add_argument("--batch-size", type=int, default=64, help="pairs per step (%(default)s)")
    p.add_argument("--lr", type=float, default=2e-5, help="learning rate (%(default)s)")
    p.add_argument("--seed", type=int, default=0, help="training seed (%(default)s)")
    p.add_argument(
        "--hold-out",
        type=float,
        default=0.0,
        help="train without this share of each intent's exemplars, drawn like "
        "`eval intents --tune-min-similarity` (seed 0), so min_similarity is tuned on "
        "rows the encoder never saw (default: %(default)s)",
    )
    p.add_argument("--force", action="store_true", help="replace an earlier fine-tune in --out")
    p.set_defaults(handler=run_finetune)


def run_finetune(args: argparse.Namespace) -> int:
    from modeltriage.learn.finetune import FinetuneSettings, finetune_from

    def announce(exemplars: int, intents: int) -> None:
        print(
            f"fine-tuning on {exemplars:,} exemplars of {intents} intents "
            f"({args.epochs} epoch(s), batches of {args.batch_size})",
            file=sys.stderr,
        )

    def progress(step: int, steps: int, loss: float) -> None:
        if step == 1 or step % 25 == 0 or step == steps:
            print(f"  step {step}/{steps}  loss {loss:.3f}", file=sys.stderr)

    info = finetune_from(
        args.out,
        intents_dir=args.intents,
        exemplars=args.exemplars,
        settings=FinetuneSettings(
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            seed=args.seed,
            hold_out=args.hold_out,
            force=args.force,
        ),
        progress=progress,
        announce=announce,
    )
    print(
        f"wrote {args.out}: {info.steps} steps in {info.train_s:.0f} s, loss "
        f"{info.loss_first:.3f} -> {info.loss_last:.3f}"
    )
    print("next:")
    print(f"  1. in router.yaml: encoder: {{path: {args.out}}}  (relative to the intents dir)")
    print("  2. modeltriage build --intents DIR   (the index must be re-embedded)")
    print(
        "  3. re-tune min_similarity: similarities shift (modeltriage tune, or eval intents "
        f"--encoder {args.out} --tune-min-similarity)"
    )
    return 0
