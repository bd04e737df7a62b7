"""Three models that must all agree, on real data: RouterBench's ARC prompts and the real
answers of Mixtral, Yi-34B and Llama-2-70B, through the real encoder, the FAISS index, the
decision log and /escalate's logic; and plans learned on the prompts the real encoder
votes into each intent. Skipped when the shared data is absent."""

from __future__ import annotations

import pytest

from modeltriage import Answer, Router
from modeltriage.core.encoders import SentenceTransformerEncoder
from modeltriage.core.intents import IntentCascade, IntentSet
from modeltriage.followup.answers import answers_agree
from modeltriage.learn.outcome_data import OutcomeRow, read_outcomes_jsonl
from modeltriage.learn.outcome_intents import learned_config
from modeltriage.learn.planlearning import learn_plans

from .test_routerbench_plans import DATA, GPT4, MIXTRAL, YI

LLAMA = "meta/llama-2-70b-chat"
MODELS = (MIXTRAL, YI, LLAMA, GPT4)


def arc_and_winogrande(per_task: int) -> list[OutcomeRow]:
    if not DATA.exists():
        pytest.skip(f"RouterBench data not found at {DATA}")
    rows, seen = [], {"arc-challenge": 0, "winogrande": 0}
    for row in read_outcomes_jsonl(DATA):
        if row.task not in seen or seen[row.task] >= per_task:
            continue
        if all(m in row.outcomes and m in row.responses for m in MODELS):
            seen[row.task] += 1
            rows.append(
                OutcomeRow(
                    row.id,
                    row.text,
                    row.task,
                    {m: row.outcomes[m] for m in MODELS},
                    {m: row.responses[m] for m in MODELS},
                )
            )
    return rows


@pytest.mark.real
def test_all_agree_plans_learned_and_served_with_the_real_encoder(
    real_encoder: SentenceTransformerEncoder,
) -> None:
    rows = arc_and_winogrande(90)
    learn, test = rows[::3] + rows[1::3], rows[2::3]
    learned = learn_plans(
        learn, [("small", MIXTRAL), ("flagship", GPT4)], real_encoder, floor=0.9, agree=3
    )
    # the two tasks read differently: the real encoder votes nearly every prompt home
    assert learned.vote_accuracy is not None and learned.vote_accuracy >= 0.95
    assert set(learned.choice.plans) == {"arc-challenge", "winogrande"}
    # ARC served by the three-way plan, whatever was chosen, to check how it is served
    three = IntentCascade(second_opinion=YI, also_agree=[LLAMA], escalate_to=GPT4)
    intents = tuple(
        i.model_copy(update={"model": MIXTRAL, "difficulty": "easy", "cascade": three})
        if i.name == "arc-challenge"
        else i
        for i in learned.intents
    )
    config = learned_config(
        learn, [("small", MIXTRAL), ("flagship", GPT4)], extra_models=[YI, LLAMA]
    )
    router = Router.in_memory(
        IntentSet(config=config, intents=intents), real_encoder, log="memory:"
    )
    checked = 0
    for row in (r for r in test if r.task == "arc-challenge"):
        decision = router.route(row.text)
        assert decision.intent == "arc-challenge" and decision.cascade is not None
        assert (decision.cascade.second_opinion, decision.cascade.also_agree) == (YI, [LLAMA])
        first, second, third = (row.responses[m] for m in (MIXTRAL, YI, LLAMA))
        verdict = router.escalate(
            Answer(answer=first, second_answer=second, more_answers=[third]),
            decision_id=decision.id,
        )
        agree = answers_agree(first, second, None) and answers_agree(first, third, None)
        assert verdict.escalate is not agree or "disagreement" not in verdict.reasons
        if not agree:
            assert verdict.escalate and verdict.to_model == GPT4
        checked += 1
    assert checked >= 20
