"""What is stored per model version: counts and latest timestamps."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select

from modelwatch.store import tables as t
from modelwatch.store.engine import Store
from modelwatch.store.registry import ModelRecord

__all__ = ["LabelStats", "VersionStats", "label_stats", "version_stats"]


@dataclass(frozen=True)
class VersionStats:
    events: int = 0
    latest_event_us: int | None = None
    labels_joined: int = 0
    latest_label_us: int | None = None
    usage_samples: int = 0
    latest_usage_us: int | None = None


@dataclass(frozen=True)
class LabelStats:
    labels: int
    latest_label_us: int | None
    unjoined: int


def version_stats(store: Store, model: ModelRecord) -> dict[int, VersionStats]:
    layout = model.layout
    ev, lb, us = layout.events, layout.labels, t.usage_samples
    out: dict[int, dict[str, int | None]] = {}
    with store.read() as conn:
        for vid, n, latest in conn.execute(
            select(ev.c.version_id, func.count(), func.max(ev.c.ts_us)).group_by(ev.c.version_id)
        ):
            out.setdefault(vid, {}).update(events=n, latest_event_us=latest)
        joined = (
            select(ev.c.version_id, func.count(), func.max(lb.c.ts_us))
            .join(lb, lb.c.request_id == ev.c.request_id)
            .group_by(ev.c.version_id)
        )
        for vid, n, latest in conn.execute(joined):
            out.setdefault(vid, {}).update(labels_joined=n, latest_label_us=latest)
        versions = select(t.model_versions.c.id).where(t.model_versions.c.model_id == model.id)
        usage = (
            select(us.c.version_id, func.count(), func.max(us.c.ts_us))
            .where(us.c.version_id.in_(versions))
            .group_by(us.c.version_id)
        )
        for vid, n, latest in conn.execute(usage):
            out.setdefault(vid, {}).update(usage_samples=n, latest_usage_us=latest)
    return {vid: VersionStats(**values) for vid, values in out.items()}  # type: ignore[arg-type]


def label_stats(store: Store, model: ModelRecord) -> LabelStats:
    layout = model.layout
    ev, lb = layout.events, layout.labels
    with store.read() as conn:
        n, latest = conn.execute(select(func.count(), func.max(lb.c.ts_us))).one()
        unjoined = conn.execute(
            select(func.count())
            .select_from(lb)
            .where(~select(ev.c.id).where(ev.c.request_id == lb.c.request_id).exists())
        ).scalar_one()
    return LabelStats(int(n), latest, int(unjoined))
