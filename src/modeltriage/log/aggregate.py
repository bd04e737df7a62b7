"""The log's summaries computed inside the database, for logs of millions of decisions.

:func:`summarise_store` returns the same :class:`~modeltriage.log.report.LogSummary` as
:func:`~modeltriage.log.report.summarise` over every row, but a SQL store answers it with
a few ``GROUP BY`` queries whose results are small (one row per tier, model and reason;
per distinct input-token count), so memory does not grow with the log. Other stores
(the in-memory one) are summarised row by row.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from modeltriage.core.config import RouterConfig
from modeltriage.core.costs import estimate_tokens, flagship_cost_usd, savings
from modeltriage.log.report import CheckedPlans, LogSummary, checked_plans, summarise
from modeltriage.log.sql import SQLStore
from modeltriage.log.store import LogStore


def _since(store: SQLStore, since: datetime | None, column: str) -> tuple[str, list[Any]]:
    if since is None:
        return "", []
    return f" AND {column} >= ?", [store.encode_time(since)]


def _traffic(store: SQLStore, since: datetime | None) -> list[Any]:
    where, params = _since(store, since, "created_at")
    return store.query(
        "SELECT tier, model, reason, COUNT(*), "
        "SUM(CASE WHEN cascaded THEN 1 ELSE 0 END), SUM(estimated_cost_usd), "
        "MIN(created_at), MAX(created_at), "
        "SUM(CASE WHEN cascade_to IS NOT NULL THEN 1 ELSE 0 END) "
        f"FROM decisions WHERE 1 = 1{where} GROUP BY tier, model, reason",
        params,
    )


def _flagship(
    store: SQLStore, since: datetime | None, config: RouterConfig
) -> tuple[float, float, int]:
    """(spend, all-flagship spend, requests) over the decisions whose input size is
    known: logged, or estimated from the stored text's length as the report does."""
    where, params = _since(store, since, "created_at")
    rows = store.query(
        "SELECT input_tokens, NULL, COUNT(*), SUM(estimated_cost_usd) FROM decisions "
        f"WHERE input_tokens IS NOT NULL{where} GROUP BY input_tokens "
        "UNION ALL SELECT NULL, LENGTH(text), COUNT(*), SUM(estimated_cost_usd) FROM decisions "
        f"WHERE input_tokens IS NULL AND text IS NOT NULL{where} GROUP BY LENGTH(text)",
        params + params,
    )
    spend = flagship = 0.0
    counted = 0
    per_token = config.cost.chars_per_token
    for tokens, length, count, cost in rows:
        # The estimate depends on the text's length only: a text of that many characters.
        n = int(tokens) if tokens is not None else estimate_tokens("x" * int(length), per_token)
        flagship += flagship_cost_usd(config, n) * int(count)
        spend += float(cost)
        counted += int(count)
    return spend, flagship, counted


def _feedback(store: SQLStore, since: datetime | None) -> tuple[list[Any], int]:
    where, params = _since(store, since, "d.created_at")
    joined = "FROM feedback f JOIN decisions d ON d.decision_id = f.decision_id WHERE 1 = 1"
    by_tier = store.query(
        f"SELECT d.tier, COUNT(*), SUM(f.quality) {joined}{where} GROUP BY d.tier", params
    )
    covered = store.query(f"SELECT COUNT(DISTINCT f.decision_id) {joined}{where}", params)
    return by_tier, int(covered[0][0] or 0)


def _events(store: SQLStore, since: datetime | None) -> tuple[int, ...]:
    """(answer checks, escalations, failovers, exhausted, planned checked, planned
    escalated) over the events of the decisions summarised."""
    where, params = _since(store, since, "d.created_at")
    event_where, event_params = _since(store, since, "e.created_at")
    check = "e.kind = 'escalation'"
    raised = f"{check} AND SUBSTR(e.detail, 1, 8) = 'escalate'"
    planned = "d.cascade_to IS NOT NULL"
    row = store.query(
        f"SELECT SUM(CASE WHEN {check} THEN 1 ELSE 0 END), "
        f"SUM(CASE WHEN {raised} THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN e.kind = 'failover' THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN e.kind = 'failover' AND e.to_model IS NULL THEN 1 ELSE 0 END), "
        f"COUNT(DISTINCT CASE WHEN {check} AND {planned} THEN e.decision_id END), "
        f"COUNT(DISTINCT CASE WHEN {raised} AND {planned} THEN e.decision_id END) "
        "FROM events e JOIN decisions d ON d.decision_id = e.decision_id "
        f"WHERE 1 = 1{where}{event_where}",
        params + event_params,
    )[0]
    return tuple(int(value or 0) for value in row)


def summarise_store(
    store: LogStore, config: RouterConfig, since: datetime | None = None
) -> LogSummary:
    """The summary of the decisions logged at or after ``since`` (all: None), with
    their feedback and their events logged since then, as ``modeltriage logs`` prints."""
    if not isinstance(store, SQLStore):
        return summarise(
            store.decisions(since=since), store.feedback(), config, store.events(since=since)
        )
    tiers: Counter[str] = Counter()
    models: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    n = cascaded = planned = 0
    spend = 0.0
    times: list[datetime] = []
    for tier, model, reason, count, cascades, cost, first, last, plans in _traffic(store, since):
        tiers[tier] += int(count)
        models[model] += int(count)
        reasons[reason] += int(count)
        n += int(count)
        cascaded += int(cascades)
        planned += int(plans)
        spend += float(cost)
        times += [store.decode_time(first), store.decode_time(last)]
    compared_spend, flagship, counted = _flagship(store, since, config)
    by_tier, covered = _feedback(store, since)
    checks, escalations, failovers, exhausted, checked, raised = _events(store, since)

    def shares(counter: Counter[str]) -> dict[str, float]:
        return {k: v / n for k, v in counter.most_common()} if n else {}

    return LogSummary(
        requests=n,
        first=min(times).isoformat(timespec="seconds") if times else None,
        last=max(times).isoformat(timespec="seconds") if times else None,
        tier_share=shares(tiers),
        model_share=shares(models),
        reason_share=shares(reasons),
        cascade_rate=cascaded / n if n else 0.0,
        spend_usd=spend,
        flagship_spend_usd=flagship if counted else None,
        savings_share=savings(compared_spend, flagship) if counted else None,
        compared_requests=counted,
        feedback_rows=sum(int(count) for _, count, _ in by_tier),
        feedback_coverage=covered / n if n else 0.0,
        mean_quality_by_tier={t: float(q) / int(c) for t, c, q in sorted(by_tier)},
        feedback_by_tier={t: int(c) for t, c, _ in sorted(by_tier)},
        planned=planned,
        planned_checked=checked,
        planned_escalated=raised,
        answer_checks=checks,
        escalations=escalations,
        failovers=failovers,
        failovers_exhausted=exhausted,
    )


def checked_plans_in(store: LogStore, config: RouterConfig) -> CheckedPlans:
    """The checked and escalated cascade plans of the whole log (``simulate
    --escalation-rate log``), counted in the database when it is a SQL one."""
    if not isinstance(store, SQLStore):
        return checked_plans(store.decisions(), store.events(), config)
    *_, checked, raised = _events(store, None)
    return CheckedPlans(checked=checked, escalated=raised)
