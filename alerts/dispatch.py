"""Grouping alerts into notifications (group_wait, group_interval, repeat_interval)
and writing them to the outbox; silenced and inhibited alerts, and those of policies
without a ``notify`` action, are left out.

A group is notified first ``group_wait`` after it appeared, again no sooner
than ``group_interval`` after its last notification when its alerts changed
(new firing or resolved), and every ``repeat_interval`` while unchanged and
firing. A resolved alert is announced once, with why it resolved
(:mod:`alerts.reasons`), and so is a firing one a silence now matches; each alert
carries its version's alias at the time of writing. The outbox entry and the group's
new notified state are written in one transaction, conditional on the state
read, so two dispatchers never notify the same change twice.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from alerts import reasons
from alerts.notifiers.base import Alert, Notification
from alerts.notifiers.templates import FIGURES, figure_lines
from alerts.routing import Route, inhibited, routes_for, silenced
from modelwatch.outbox import Outbox
from modelwatch.policies import InhibitRule, PolicySpec, ReceiverSpec, RouteSpec
from modelwatch.store import tables as t
from modelwatch.store.alerts import FIRING, RESOLVED, AlertRecord, AlertStore, GroupRecord
from modelwatch.store.engine import Store
from modelwatch.timeutil import utcnow

__all__ = ["NOTIFICATION", "Dispatcher"]

log = logging.getLogger(__name__)
NOTIFICATION = "notification"
NOTIFICATION_MAX_AGE_S = 24 * 3600
MAX_ALERTS_PER_NOTIFICATION = 50
RESOLVED_LOOKBACK = timedelta(days=1)


@dataclass
class _Group:
    route: Route
    key: str
    labels: dict[str, str]
    alerts: dict[str, AlertRecord] = field(default_factory=dict)
    silenced: dict[str, AlertRecord] = field(default_factory=dict)  # firing, but silenced


class Dispatcher:
    def __init__(
        self,
        store: Store,
        route: RouteSpec,
        receivers: list[ReceiverSpec],
        inhibit_rules: list[InhibitRule],
        external_url: str = "",
        policies: Callable[[], list[PolicySpec]] = list,
    ) -> None:
        """``policies``: the alerting policies now; alerts of those without a ``notify``
        action (e.g. retrain or promote only) are never notified."""
        self.store = store
        self.policies = policies
        self.route = route
        self.receivers = {r.name: r for r in receivers}
        self.inhibit_rules = inhibit_rules
        self.external_url = external_url
        self.alerts = AlertStore(store)
        self.outbox = Outbox(store)

    def flush(self, now: datetime | None = None) -> int:
        """Write the notifications that are due; returns how many. Never raises."""
        now = now or utcnow()
        try:
            groups = self._groups(now)
        except Exception:
            log.exception("grouping alerts failed")
            return 0
        sent = 0
        for group in groups:
            try:
                sent += self._maybe_notify(group, now)
            except Exception:
                log.exception("notifying group %s failed", group.key)
        return sent

    def _groups(self, now: datetime) -> list[_Group]:
        alerts = [
            a
            for a in self.alerts.all([FIRING, RESOLVED])
            if a.state == FIRING or (a.resolved_at or a.updated_at) > now - RESOLVED_LOOKBACK
        ]
        firing = [a for a in alerts if a.state == FIRING]
        silences = self.alerts.silences(active_at=now)
        quiet = {p.name for p in self.policies() if not any(a.notify for a in p.actions)}
        groups: dict[tuple[str, str], _Group] = {}
        for alert in alerts:
            if alert.labels.get("alertname") in quiet:
                continue  # its policy acts (retrain, promote) without telling anyone
            hushed = silenced(alert, silences)
            if (hushed and alert.state != FIRING) or inhibited(alert, firing, self.inhibit_rules):
                continue
            for route in routes_for(self.route, alert.labels):
                key = route.group_key(alert.labels)
                group = groups.setdefault(
                    (route.receiver, key), _Group(route, key, route.group_labels(alert.labels))
                )
                (group.silenced if hushed else group.alerts)[alert.fingerprint] = alert
        return list(groups.values())

    def _maybe_notify(self, group: _Group, now: datetime) -> int:
        record = self.alerts.group(group.route.receiver, group.key, group.labels, now)
        told = record.notified_state
        firing = {fp for fp, a in group.alerts.items() if a.state == FIRING}
        newly_resolved = {
            fp for fp, a in group.alerts.items() if a.state == RESOLVED and told.get(fp) == FIRING
        }
        newly_silenced = {fp for fp in group.silenced if told.get(fp) == FIRING}
        for fp in newly_silenced:
            group.alerts[fp] = _hushed(group.silenced[fp])
        newly_resolved |= newly_silenced
        if not firing and not newly_resolved:
            return 0
        if not self._due(record, group.route, firing, newly_resolved, now):
            return 0
        receiver = self.receivers.get(group.route.receiver)
        include_resolved = receiver.send_resolved if receiver else True
        members = [group.alerts[fp] for fp in sorted(firing)]
        if include_resolved:
            members += [group.alerts[fp] for fp in sorted(newly_resolved)]
        if not members:  # only resolutions, and this receiver does not want them
            self._mark(record, {fp: FIRING for fp in firing}, now)
            return 0
        notification = self._notification(record, group, members)
        # A group that had nothing firing when last told starts a new incident: a new
        # message, rather than a reply in the resolved incident's thread.
        fresh = FIRING not in record.notified_state.values()
        payload = {
            "group_id": record.id,
            "new_thread": fresh,
            "notification": _to_json(notification),
        }
        digest = hashlib.sha256(
            f"{record.id}|{now.isoformat()}|{sorted(firing)}".encode()
        ).hexdigest()[:40]
        with self.store.write() as conn:
            if not self.alerts.claim_notification(conn, record, {fp: FIRING for fp in firing}, now):
                return 0  # another dispatcher notified this group meanwhile
            self.outbox.enqueue(
                conn,
                kind=NOTIFICATION,
                stream=f"{record.receiver}|{record.group_key}",
                target=record.receiver,
                idempotency_key=digest,
                payload=payload,
                max_age_s=NOTIFICATION_MAX_AGE_S,
            )
        return 1

    @staticmethod
    def _due(
        record: GroupRecord, route: Route, firing: set[str], resolved: set[str], now: datetime
    ) -> bool:
        last = record.last_notified_at
        if last is None:
            return bool(firing) and now >= record.first_seen_at + timedelta(
                seconds=route.group_wait
            )
        told_firing = {fp for fp, s in record.notified_state.items() if s == FIRING}
        if firing != told_firing or resolved:
            return now >= last + timedelta(seconds=route.group_interval)
        return bool(firing) and now >= last + timedelta(seconds=route.repeat_interval)

    def _mark(self, record: GroupRecord, state: dict[str, str], now: datetime) -> None:
        with self.store.write() as conn:
            self.alerts.claim_notification(conn, record, state, now)

    def _notification(
        self, record: GroupRecord, group: _Group, members: list[AlertRecord]
    ) -> Notification:
        shown = members[:MAX_ALERTS_PER_NOTIFICATION]
        aliases = self._aliases(shown)
        alerts = [_alert(a, self._figures(a), aliases) for a in shown]
        status = FIRING if any(a.state == FIRING for a in members) else RESOLVED
        return Notification(
            receiver=record.receiver,
            group_key=record.group_key,
            status=status,
            group_labels=group.labels,
            common_labels=_common([a.labels for a in members]),
            common_annotations=_common([a.annotations for a in members]),
            alerts=alerts,
            external_url=self.external_url,
            truncated_alerts=len(members) - len(shown),
        )

    def _figures(self, a: AlertRecord) -> str:
        """The figures behind ``a`` read from its latest window's stored results (which
        columns drifted and by how much, bands, estimates), one line each; "" if none."""
        metric, model = a.annotations.get("metric", ""), a.labels.get("model", "")
        if not metric or a.window_start_us is None:
            return ""
        m, v, mo = t.metric_results, t.model_versions, t.models
        query = (
            select(m)
            .join(v, v.c.id == m.c.version_id)
            .join(mo, mo.c.id == v.c.model_id)
            .where(
                mo.c.name == model,
                v.c.version == _version(a),
                m.c.metric == metric,
                m.c.window_start_us == a.window_start_us,
                m.c.current == 1,
                m.c.segment == a.labels.get("segment", ""),
            )
            .order_by(m.c.id)
        )
        if a.labels.get("feature"):
            query = query.where(m.c.column_name.in_(["", a.labels["feature"]]))
        try:
            with self.store.read() as conn:
                rows = [dict(r._mapping) for r in conn.execute(query)]
            return "\n".join(figure_lines(metric, rows))
        except Exception:  # the alert still goes out, without its figures
            log.exception("reading the results behind alert %s failed", a.fingerprint)
            return ""

    def _aliases(self, alerts: list[AlertRecord]) -> dict[tuple[str, str], str]:
        """(model, version) -> the version's alias now ("" none), for per-version alerts."""
        names = sorted({a.model for a in alerts if a.labels.get("version")})
        if not names:
            return {}
        v, mo = t.model_versions, t.models
        query = (
            select(mo.c.name, v.c.version, v.c.alias)
            .join(mo, mo.c.id == v.c.model_id)
            .where(mo.c.name.in_(names))
        )
        try:
            with self.store.read() as conn:
                return {(m, ver): alias or "" for m, ver, alias in conn.execute(query)}
        except Exception:  # the alert still goes out, with the alias it was evaluated with
            log.exception("reading the aliases of %s failed", names)
            return {}


def _version(a: AlertRecord) -> str:
    """The version whose results are behind ``a`` (a stream alert's lead version)."""
    return a.labels.get("version") or a.annotations.get(reasons.LEAD_VERSION, "")


def _hushed(a: AlertRecord) -> AlertRecord:
    """``a`` as it is announced once a silence matches it: no longer firing here."""
    annotations = {**a.annotations, reasons.RESOLUTION: reasons.SILENCED}
    return replace(a, state=RESOLVED, annotations=annotations, resolved_at=None)


def _alert(
    a: AlertRecord, figures: str = "", aliases: dict[tuple[str, str], str] | None = None
) -> Alert:
    annotations = {**a.annotations, FIGURES: figures} if figures else dict(a.annotations)
    version = a.labels.get("version")
    if version and aliases:
        annotations[reasons.ALIAS_NOW] = aliases.get((a.model, version), "gone")
    return Alert(
        fingerprint=a.fingerprint,
        status=a.state,
        labels=a.labels,
        annotations=annotations,
        starts_at=a.started_at or a.updated_at,
        ends_at=a.resolved_at if a.state == RESOLVED else None,
        value=a.value,
        threshold=a.threshold,
        trend=a.trend,
        generator_url=a.annotations.get("results_url", ""),
    )


def _common(maps: list[dict[str, str]]) -> dict[str, str]:
    if not maps:
        return {}
    first = maps[0]
    return {k: v for k, v in first.items() if all(m.get(k) == v for m in maps[1:])}


def _to_json(n: Notification) -> dict[str, Any]:
    out = asdict(n)
    out.pop("thread", None)
    for per_attempt in ("idempotency_key", "attempt", "queued_at"):  # set on delivery
        out.pop(per_attempt, None)
    return out


def notification_from_json(data: dict[str, Any], thread: dict[str, Any]) -> Notification:
    alerts = [
        Alert(
            **{
                **a,
                "starts_at": _dt(a["starts_at"]),
                "ends_at": _dt(a["ends_at"]) if a["ends_at"] else None,
            }
        )
        for a in data["alerts"]
    ]
    return Notification(**{**data, "alerts": alerts, "thread": thread})


def _dt(value: str) -> datetime:
    return datetime.fromisoformat(value)
