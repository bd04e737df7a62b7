"""Which intent the router would vote for each training prompt, from the other prompts.

A plan chosen for an intent serves every request the router sends to that intent, and on
outcome data a quarter of a task's prompts may be voted into another task's intent
(llmrouter9: tasks of short factual questions embed alike). Choosing each intent's plan
on the prompts of its own task, as if routing were perfect, then overestimates quality:
the cross-validated floor held 98% on the true tasks but ~96% through the router.

So each training prompt is routed against all the others (leave-one-out over their
vectors, scored like the policy's vote: :func:`modeltriage.learn.loo.leave_one_out`),
and plans are chosen on the prompts each intent would really receive.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from modeltriage.core.config import Scoring
from modeltriage.core.encoders import Encoder
from modeltriage.core.vector_index import NumpyIndex
from modeltriage.learn.loo import leave_one_out
from modeltriage.learn.outcome_data import OutcomeRow


def voted_intents(
    rows: Sequence[OutcomeRow],
    intents: Sequence[str],
    encoder: Encoder,
    scoring: Scoring,
) -> list[str]:
    """Per row, the intent its ``scoring.top_k`` nearest other rows vote for (each row's
    own intent is ``intents[i]``); a row with no other row keeps its own."""
    if len(rows) != len(intents):
        raise ValueError("need one intent per row")
    if len(rows) < 2:
        return list(intents)
    raw = np.asarray(encoder.encode([scoring.view(r.text) for r in rows]), dtype=np.float32)
    norms = np.linalg.norm(raw, axis=1, keepdims=True)
    vectors = np.asarray(raw / np.where(norms > 0, norms, 1.0), dtype=np.float32)
    loo = leave_one_out(NumpyIndex(vectors), vectors, intents, scoring.top_k, scoring.aggregation)
    return [
        loo.intents[p] if p >= 0 else own
        for p, own in zip(loo.predicted.tolist(), intents, strict=True)
    ]
