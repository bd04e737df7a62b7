"""Per-intent cascade plans on real data: a slice of RouterBench (real prompts, real answers
of real models) through the real encoder, the FAISS index, the decision log and
/escalate's logic, the way docs/cascade.md's winning policy runs in production.

RouterBench (Hu et al., 2024, arXiv 2403.12031), read from ../shared/data or
$MODELTRIAGE_SHARED_DATA (not copied into the repository); skipped when it is absent.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from modeltriage import Answer, Router
from modeltriage.core.config import RouterConfig
from modeltriage.core.encoders import SentenceTransformerEncoder
from modeltriage.core.intents import Exemplar, Intent, IntentCascade, IntentSet
from modeltriage.followup.answers import answers_agree

from .conftest import REPO

# ../shared/data beside the repository, or wherever $MODELTRIAGE_SHARED_DATA says.
SHARED = Path(os.environ.get("MODELTRIAGE_SHARED_DATA", REPO.parent / "shared" / "data"))
DATA = SHARED / "routerbench" / "train.outcomes.jsonl"
MIXTRAL, YI = "mistralai/mixtral-8x7b-chat", "zero-one-ai/Yi-34B-Chat"
GPT35, GPT4 = "gpt-3.5-turbo-1106", "gpt-4-1106-preview"
LEARN, TEST = 60, 30  # rows per task, in file order


def slice_rows() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    if not DATA.exists():
        pytest.skip(f"RouterBench data not found at {DATA}")
    learn: list[dict[str, Any]] = []
    test: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    with DATA.open(encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            models = (MIXTRAL, YI, GPT35, GPT4)
            if not all(m in row["outcomes"] and m in row.get("responses", {}) for m in models):
                continue
            count = seen.get(row["task"], 0)
            seen[row["task"]] = count + 1
            if count < LEARN:
                learn.append(row)
            elif count < LEARN + TEST:
                test.append(row)
    return learn, test


def plan_router(learn: list[dict[str, Any]], encoder: SentenceTransformerEncoder) -> Router:
    """ARC: Mixtral answers, Yi gives a second opinion, GPT-4 on disagreement;
    Winogrande: GPT-4 now; MBPP: gpt-3.5 alone (docs/cascade.md's winning plan)."""
    config = RouterConfig.model_validate(
        {
            "tiers": ["small", "mid", "flagship"],
            "models": [
                {
                    "name": MIXTRAL,
                    "tier": "small",
                    "input_usd_per_mtok": 0.6,
                    "output_usd_per_mtok": 0.6,
                },
                {
                    "name": YI,
                    "tier": "small",
                    "input_usd_per_mtok": 0.8,
                    "output_usd_per_mtok": 0.8,
                    "specialised": True,
                },
                {
                    "name": GPT35,
                    "tier": "mid",
                    "input_usd_per_mtok": 1.0,
                    "output_usd_per_mtok": 2.0,
                },
                {
                    "name": GPT4,
                    "tier": "flagship",
                    "input_usd_per_mtok": 10.0,
                    "output_usd_per_mtok": 30.0,
                },
            ],
            "thresholds": {"margin": None, "min_similarity": None},
            "scoring": {"top_k": 10, "aggregation": "vote", "long_text": "tail"},
            "log": {"url": None},
        }
    )
    texts: dict[str, list[str]] = {}
    for row in learn:
        texts.setdefault(row["task"], []).append(row["text"])
    routes: dict[str, dict[str, Any]] = {
        "arc-challenge": {
            "difficulty": "easy",
            "cascade": IntentCascade(second_opinion=YI, escalate_to=GPT4),
        },
        "winogrande": {"difficulty": "hard"},
        "mbpp": {"difficulty": "moderate", "model": GPT35},
    }
    intents = tuple(
        Intent(
            name=task,
            exemplars=[Exemplar(text=t) for t in dict.fromkeys(texts[task])],
            **routes[task],
        )
        for task in sorted(texts)
    )
    return Router.in_memory(IntentSet(config=config, intents=intents), encoder, log="memory:")


@pytest.mark.real
def test_the_winning_plan_runs_through_the_library(
    real_encoder: SentenceTransformerEncoder,
) -> None:
    learn, test = slice_rows()
    assert {r["task"] for r in test} == {"arc-challenge", "winogrande", "mbpp"}
    with plan_router(learn, real_encoder) as router:
        quality = cost = flagship_quality = flagship_cost = 0.0
        right_task = escalated = 0
        planned_id = ""
        for row in test:
            outcomes, responses = row["outcomes"], row["responses"]
            decision = router.route(row["text"])
            right_task += decision.intent == row["task"]
            first = decision.model
            paid = [first]
            answered = first
            if decision.cascade is not None:
                second = decision.cascade.second_opinion
                assert (first, second, decision.reason) == (MIXTRAL, YI, "cascade")
                assert second is not None
                paid.append(second)
                check = router.escalate(
                    Answer(answer=responses[first], second_answer=responses[second]),
                    decision_id=decision.id,
                )
                # escalated exactly when the two real answers disagree, to the plan's model
                assert check.escalate is not answers_agree(responses[first], responses[second])
                if check.escalate:
                    assert check.to_model == GPT4
                    answered = GPT4
                    paid.append(GPT4)
                    escalated += 1
                # without the second answer the plan escalates rather than trusting one
                alone = router.escalate(responses[first], decision_id=decision.id)
                assert alone.escalate and alone.reasons[-1] == "missing_second_answer"
                planned_id = decision.id
            quality += outcomes[answered]["quality"]
            cost += sum(outcomes[m]["cost_usd"] for m in paid)
            flagship_quality += outcomes[GPT4]["quality"]
            flagship_cost += outcomes[GPT4]["cost_usd"]
        n = len(test)
        # the nearest exemplars identify the benchmark task almost always
        assert right_task / n >= 0.95
        assert 0 < escalated < n
        # the plan keeps most of GPT-4's quality for much less (the held-out figures over
        # the whole file are in docs/cascade.md; this slice only checks the wiring)
        assert quality >= 0.93 * flagship_quality
        assert cost <= 0.7 * flagship_cost
        events = router.events(planned_id)
        assert [e.kind for e in events] == ["escalation", "escalation"]
