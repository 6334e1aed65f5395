"""Firing alert episodes that ask for an action, each with its trigger key.

An episode is one firing stretch of one alert (its fingerprint and start time);
each action is decided once per episode. Settled episodes are skipped with one
query before any per-episode work, and the store's unique trigger keys still
decide races between workers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from modelwatch.pipelines import PromoteAction, RetrainAction
from modelwatch.policies import PolicySpec
from modelwatch.store.alerts import FIRING, AlertRecord, AlertStore
from modelwatch.store.retrain import RetrainStore

__all__ = ["Episode", "undecided_episodes"]


@dataclass(frozen=True)
class Episode:
    policy: PolicySpec
    action: RetrainAction | PromoteAction
    alert: AlertRecord
    key: str


def _key(policy: PolicySpec, action: RetrainAction | PromoteAction, alert: AlertRecord) -> str:
    started = alert.started_at.isoformat() if alert.started_at else ""
    if isinstance(action, RetrainAction):
        return f"retrain:{policy.name}:{action.pipeline}:{alert.fingerprint}:{started}"
    return f"promote:{policy.name}:{alert.fingerprint}:{started}"


def _episodes(policies: Sequence[PolicySpec], alerts: AlertStore, kind: str) -> Iterator[Episode]:
    wanted: dict[str, tuple[PolicySpec, list[RetrainAction | PromoteAction]]] = {}
    for policy in policies:
        actions = [getattr(a, kind) for a in policy.actions if getattr(a, kind) is not None]
        if actions:
            wanted[policy.name] = (policy, actions)
    if not wanted:
        return
    for alert in alerts.all([FIRING]):
        if alert.policy in wanted:
            owner, actions = wanted[alert.policy]
            for action in actions:
                yield Episode(owner, action, alert, _key(owner, action, alert))


def undecided_episodes(
    policies: Callable[[], Sequence[PolicySpec]],
    alerts: AlertStore,
    retrain: RetrainStore,
    kind: str,
) -> list[Episode]:
    """Firing episodes of policies with a ``kind`` action (``retrain`` or ``promote``)
    that no request or approval has been recorded for yet."""
    episodes = list(_episodes(policies(), alerts, kind))
    decided = retrain.decided([e.key for e in episodes])
    return [e for e in episodes if e.key not in decided]
