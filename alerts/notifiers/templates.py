"""Message text for notifications: Slack Block Kit blocks, fallback text, sparklines.

Pure functions of a :class:`Notification`; no I/O. Slack's limits are respected
(header 150 characters, section text 3,000, at most 10 fields, 50 blocks), and
user-supplied text is escaped for Slack's ``mrkdwn`` (``&``, ``<``, ``>``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from alerts import reasons
from alerts.notifiers.base import Alert, Notification

__all__ = [
    "FIGURES",
    "MAX_ALERTS",
    "build_blocks",
    "fallback_text",
    "figure_lines",
    "headline",
    "sparkline",
]

MAX_ALERTS = 10
SPARK = "▁▂▃▄▅▆▇█"
SPARK_WIDTH = 24
HEADER_MAX = 150
SECTION_MAX = 3000
DESCRIPTION_MAX = 600
FIGURES = "figures"  # annotation: the stored results' figures, one line each

Block = dict[str, Any]

_GROUP_FIELDS = (("model", "Model"), ("version", "Version"), ("severity", "Severity"))
_NAME_KEYS = ("alertname", "policy")
_SEVERITY_ICON = {"critical": "🔴", "warning": "🟠", "info": "🔵"}
_LINKS = (("dashboard_url", "Dashboard"), ("report_url", "Report"), ("runbook_url", "Runbook"))


def sparkline(values: Iterable[float], width: int = SPARK_WIDTH) -> str:
    """Unicode blocks for the last ``width`` finite values; flat series sit mid-height."""
    points = [v for v in values if math.isfinite(v)][-width:]
    if not points:
        return ""
    low, high = min(points), max(points)
    if high == low:
        return SPARK[3] * len(points)
    scale = (len(SPARK) - 1) / (high - low)
    return "".join(SPARK[round((v - low) * scale)] for v in points)


def fmt_number(value: float | None) -> str:
    if value is None:
        return "n/a"
    if not math.isfinite(value):
        return str(value)
    return f"{value:.4g}"


def escape(text: str) -> str:
    """Escape the three characters Slack's mrkdwn treats as control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def link(url: str, label: str) -> str:
    safe = url.replace("|", "%7C").replace("<", "%3C").replace(">", "%3E").replace(" ", "%20")
    return f"<{safe}|{escape(label)}>"


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _label(n: Notification, key: str) -> str:
    return n.group_labels.get(key) or n.common_labels.get(key) or ""


def group_name(n: Notification, alerts: Sequence[Alert] | None = None) -> str:
    """The group's policy (or of ``alerts``, the policies among them) and its subject."""
    name = next((v for k in _NAME_KEYS if (v := _label(n, k))), "")
    name = name or _policies(n.alerts if alerts is None else alerts)
    model, version = _label(n, "model"), _label(n, "version")
    if version and version[:1].lower() != "v":
        version = f"v{version}"  # "7" reads as v7; "v7" stays v7
    subject = " ".join(part for part in (model, version) if part)
    return f"{name} · {subject}" if subject else name


def _policies(alerts: Sequence[Alert]) -> str:
    """The policies of a group that mixes several (e.g. grouped by model only)."""
    names = sorted({a.labels.get("alertname", "") for a in alerts} - {""})
    shown = ", ".join(names[:3]) + (f" +{len(names) - 3}" if len(names) > 3 else "")
    return shown or "alert"


def headline(n: Notification) -> str:
    """``🔥 FIRING (2) · drift_high · fraud v7``: what fires now, naming only those
    policies; ``✅ RESOLVED · ...`` (``↩`` unless every alert recovered) when none does."""
    firing = [a for a in n.alerts if a.status == "firing"]
    if n.status == "resolved" or not firing:
        icon = "✅" if all(_recovered(a) for a in n.alerts) else "↩"
        return f"{icon} RESOLVED · {group_name(n)}"
    count = sum(first.status == "firing" for first, _ in entries(n.alerts))
    more = "+" if n.truncated_alerts else ""  # truncated alerts' states are unknown
    return f"🔥 FIRING ({count}{more}) · {group_name(n, firing)}"


def fallback_text(n: Notification) -> str:
    """Plain text for notifications and clients without Block Kit: the header and the
    first line."""
    first = next(iter(ordered(n.alerts)), None)
    line = alert_line(first).replace("*", "").replace("`", "") if first else ""
    return _truncate(f"{headline(n)}: {line}" if line else headline(n), SECTION_MAX)


def build_blocks(n: Notification) -> list[Block]:
    """The whole message: header, group labels, one section per alert, links."""
    blocks: list[Block] = [_header(n)]
    fields = _group_fields(n)
    if fields:
        blocks.append({"type": "section", "fields": fields})
    blocks.append({"type": "divider"})
    every = entries(n.alerts)
    shown = every[:MAX_ALERTS]
    blocks.extend(_alert_section(first, n, also) for first, also in shown)
    hidden = len(every) - len(shown) + n.truncated_alerts
    if hidden > 0:
        blocks.append(_context(f"…and {hidden} more alert{'s' if hidden != 1 else ''} not shown"))
    links = _group_links(n)
    if links:
        blocks.append(_context(" · ".join(links)))
    return blocks


def _header(n: Notification) -> Block:
    text = _truncate(headline(n), HEADER_MAX)
    return {"type": "header", "text": {"type": "plain_text", "text": text, "emoji": True}}


def _context(mrkdwn: str) -> Block:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": mrkdwn}]}


def _group_fields(n: Notification) -> list[Block]:
    name = next(((k, v) for k in _NAME_KEYS if (v := _label(n, k))), None)
    pairs = [("Policy", name[1])] if name else []
    pairs += [(title, v) for key, title in _GROUP_FIELDS if (v := _label(n, key))]
    shown = {k for k, _ in _GROUP_FIELDS} | set(_NAME_KEYS)
    pairs += [(k, v) for k, v in sorted(n.group_labels.items()) if k not in shown]
    return [{"type": "mrkdwn", "text": f"*{escape(t)}*\n{escape(v)}"} for t, v in pairs[:10]]


def _alert_section(alert: Alert, n: Notification, also: Sequence[Alert] = ()) -> Block:
    lines = [alert_line(alert)]
    for one in (alert, *also):
        summary = one.annotations.get("summary", "")
        if summary and one.status == "firing":  # written when evaluated: stale once resolved
            lines.append(f"_{escape(summary)}_")
    description = alert.annotations.get("description", "")
    if description:
        lines.append(escape(_truncate(description, DESCRIPTION_MAX)))
    own = _own_labels(alert, n)
    if own:
        lines.append(own)
    lines.extend(f"• {escape(line)}" for line in alert.annotations.get(FIGURES, "").splitlines())
    if alert.trend:
        lines.append(_trend(alert.trend))
    lines.append(_since(alert))
    links = _alert_links(alert, n)
    if links:
        lines.append(" · ".join(links))
    text = _truncate("\n".join(lines), SECTION_MAX)
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _own_labels(alert: Alert, n: Notification) -> str:
    """The labels that tell this alert from the others of its group."""
    own = {k: v for k, v in alert.labels.items() if k != "metric" and n.common_labels.get(k) != v}
    return " ".join(f"{escape(k)}=`{escape(v)}`" for k, v in sorted(own.items()))


# The line of one alert: what it judges, what changed, in plain words (:func:`alert_line`).

_METRIC_WORDS = {
    "data_drift": "share of features drifted",
    "reconstruction_error": "reconstruction error",
    "domain_classifier": "domain classifier AUC",
    "champion_challenger_sequential": "challenger - champion",
    "champion_challenger": "challenger - champion",
}
_RANK = {"champion": 0, "served": 0, "shadow": 1, "challenger": 2}
_ENDED = {  # resolution -> (icon, what is said after the figure)
    reasons.ALIAS_CHANGED: ("↩", "no longer evaluated as {was}"),
    reasons.NOT_EVALUATED: ("↩", "no longer evaluated (no new results)"),
    reasons.POLICY_REMOVED: ("↩", "policy {policy} removed"),
    reasons.SILENCED: ("🔕", "silenced, still firing"),
}


def ordered(alerts: Sequence[Alert]) -> list[Alert]:
    """Champion (and the traffic it serves) first, then shadows, challengers, the rest;
    firing before resolved within each."""
    return sorted(alerts, key=lambda a: (_RANK.get(_alias_rank(a), 3), a.status != "firing"))


def entries(alerts: Sequence[Alert]) -> list[tuple[Alert, list[Alert]]]:
    """The lines of a message, :func:`ordered`: alerts of several policies saying the same
    about the same traffic (a drift alert and a retrain policy's on one stream) make one,
    led by the one covering the most versions, with the others it stands for."""
    merged: dict[tuple[str, ...], list[Alert]] = {}
    for alert in ordered(alerts):
        merged.setdefault(_same(alert), []).append(alert)
    out = []
    for group in merged.values():
        first = max(group, key=lambda a: len(a.labels.get("versions", "").split(",")))
        out.append((first, [a for a in group if a is not first]))
    return out


def _same(alert: Alert) -> tuple[str, ...]:
    """What makes two alerts one line: a stream's figure and state, or the alert itself."""
    stream = alert.labels.get("stream")
    if not stream:
        return (alert.fingerprint,)
    return (
        alert.labels.get("model", ""),
        stream,
        alert.labels.get("feature", ""),
        alert.labels.get("segment", ""),
        alert.annotations.get("metric", ""),
        fmt_number(alert.value),
        alert.status,
        alert.annotations.get(reasons.RESOLUTION, ""),
    )


def _alias_rank(alert: Alert) -> str:
    if alert.labels.get("stream"):
        return alert.labels["stream"]
    return alert.annotations.get(reasons.ALIAS_NOW, alert.annotations.get(reasons.ALIAS, ""))


def _recovered(alert: Alert) -> bool:
    reason = alert.annotations.get(reasons.RESOLUTION, reasons.RECOVERED)
    return alert.status == "resolved" and reason not in _ENDED


def alert_line(alert: Alert) -> str:
    """``🔴 *fraud v1 (champion)*: accuracy `0.69`, below `0.8`, falling``; resolved:
    ``✅ ... recovered: ..., back above `0.8``` or, ended for another reason,
    ``↩ *fraud v1 (now retired from champion)*: accuracy `0.69`, still below `0.8` —
    no longer evaluated as champion``."""
    subject = f"*{escape(subject_of(alert))}*"
    figure = _figure(alert)
    side = _side(alert.value, alert.threshold)
    if alert.status == "firing":
        icon = _SEVERITY_ICON.get(alert.labels.get("severity", ""), "🔥")
        moving = _direction(alert.trend)
        return f"{icon} {subject}: {figure}{side}" + (f", {moving}" if moving else "")
    reason = alert.annotations.get(reasons.RESOLUTION, "")
    if reason == reasons.RECOVERED:
        return f"✅ {subject} recovered: {figure}" + (f", back {side[2:]}" if side else "")
    if reason not in _ENDED:  # resolved before reasons were recorded: no side claimed
        bound = alert.threshold
        return f"✅ {subject} resolved: {figure}" + (
            f" (threshold `{fmt_number(bound)}`)" if bound is not None else ""
        )
    icon, why = _ENDED[reason]
    was = alert.annotations.get(reasons.ALIAS) or "before"
    said = why.format(was=escape(was), policy=escape(alert.labels.get("alertname", "")))
    still = f", still {side[2:]}" if side else ""
    return f"{icon} {subject}: {figure}{still} — {said}"


def subject_of(alert: Alert) -> str:
    """``fraud v1 (champion)``, with its alias now: ``fraud v1 (now retired from
    champion)``; a stream: ``fraud served traffic (v1, v2)``."""
    model = alert.labels.get("model", "")
    stream = alert.labels.get("stream")
    if stream:
        names = [v for v in alert.labels.get("versions", "").split(",") if v]
        covers = f" ({', '.join(names)})" if names and names != [stream] else ""
        return f"{model} {stream} traffic{covers}".strip()
    version = alert.labels.get("version", "")
    if version and version[:1].lower() != "v":
        version = f"v{version}"
    alias = _alias_now(alert)
    return " ".join(p for p in (model, version) if p) + (f" ({alias})" if alias else "")


def _alias_now(alert: Alert) -> str:
    was = alert.annotations.get(reasons.ALIAS, "")
    now = alert.annotations.get(reasons.ALIAS_NOW, was)
    if now == was or reasons.ALIAS not in alert.annotations:  # not known when evaluated
        return "" if now == "gone" else now
    if now == "gone":
        return "version removed"
    if not now:
        return f"now retired from {was}"
    return f"now {now}, was {was}" if was else f"now {now}"


def _figure(alert: Alert) -> str:
    metric = alert.labels.get("metric") or alert.annotations.get("metric") or "value"
    words = _METRIC_WORDS.get(metric, metric.replace("_", " "))
    return f"{escape(words)} `{fmt_number(alert.value)}`"


def _side(value: float | None, threshold: float | None) -> str:
    """``, above `0.2``` (the figure against its threshold); "" without a threshold."""
    if threshold is None:
        return ""
    where = (
        "at" if value is None or value == threshold else "above" if value > threshold else "below"
    )
    return f", {where} `{fmt_number(threshold)}`"


def _direction(values: Sequence[float]) -> str:
    """Rising, falling or steady over the last three figures."""
    recent = [v for v in values if math.isfinite(v)][-3:]
    if len(recent) < 2:
        return ""
    if recent[-1] == recent[0]:
        return "steady"
    return "rising" if recent[-1] > recent[0] else "falling"


def _trend(values: Sequence[float]) -> str:
    """The sparkline and the last three figures."""
    last = " → ".join(fmt_number(v) for v in values[-3:])
    return f"*Trend* `{sparkline(values)}` {last}"


def _since(alert: Alert) -> str:
    if alert.status == "resolved" and alert.ends_at is not None:
        return f"Resolved {_when(alert.ends_at)} (since {_when(alert.starts_at)})"
    return f"Since {_when(alert.starts_at)}"


def _when(moment: datetime) -> str:
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _alert_links(alert: Alert, n: Notification) -> list[str]:
    out = [link(alert.generator_url, "Source")] if alert.generator_url else []
    for key, label in _LINKS:
        url = alert.annotations.get(key, "")
        if url and url != n.common_annotations.get(key):
            out.append(link(url, label))
    return out


def _group_links(n: Notification) -> list[str]:
    out = [link(url, label) for key, label in _LINKS if (url := n.common_annotations.get(key))]
    if n.external_url:
        out.append(link(n.external_url, "modelwatch"))
    return out


# Figures from the stored results behind an alert (:func:`figure_lines`): what an on-call
# person needs to act, in a few short lines.

MAX_DRIFTED = 5
_FLOOR = re.compile(r"min_effect ([0-9.eE+-]+)")
_BAND = re.compile(r"band \[([0-9.eE+-]+), ([0-9.eE+-]+)\]")
_REALIZED = re.compile(r"realized ([0-9.eE+-]+)")
_MULTIVARIATE = {"reconstruction_error": "reconstruction error", "domain_classifier": "AUC"}


def short(value: float | None) -> str:
    """Three significant figures, exponents without padding (``3e-6``, not ``3e-06``)."""
    if value is None:
        return "n/a"
    text = f"{value:.3g}" if value == 0 or abs(value) >= 1e-3 else f"{value:.1g}"
    return re.sub(r"e([+-])0*(\d)", lambda m: f"e{m[1].replace('+', '')}{m[2]}", text)


def figure_lines(metric: str, rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Lines for an alert on ``metric`` from its window's stored result rows."""
    if metric == "data_drift" or metric in ("ks", "chi2", "z"):
        return _drifted(rows)
    if metric in _MULTIVARIATE:
        return _multivariate(metric, rows)
    if metric.startswith("estimated_"):
        return [line for r in rows if (line := _estimated(metric, r))][:1]
    if metric == "champion_challenger_sequential":
        return [line for r in rows if (line := _sequential(r))][:2]
    return []


def _drifted(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    drifted = [r for r in rows if r["status"] == "breach" and r["column_name"]]
    drifted.sort(key=lambda r: -(r["effect"] if r["effect"] is not None else -math.inf))
    lines = [_drift_line(r) for r in drifted[:MAX_DRIFTED]]
    if len(drifted) > MAX_DRIFTED:
        lines.append(f"and {len(drifted) - MAX_DRIFTED} more")
    return lines


def _drift_line(r: Mapping[str, Any]) -> str:
    detail = str(r["detail"] or "")
    method = detail.split(";", 1)[0].strip().upper() or str(r["metric"]).upper()
    effect = r["effect"] if r["effect"] is not None else r["value"]
    floor = _FLOOR.search(detail)
    size = f"{method} {short(effect)}" + (f" (floor {short(float(floor[1]))})" if floor else "")
    p = r["p_adjusted"] if r["p_adjusted"] is not None else r["p_value"]
    tag = "adj. p" if r["p_adjusted"] is not None else "p"
    return f"{r['column_name']}: {size}" + (f", {tag} {short(p)}" if p is not None else "")


def _band(r: Mapping[str, Any]) -> tuple[float, float] | None:
    if r["band_low"] is not None and r["band_high"] is not None:
        return float(r["band_low"]), float(r["band_high"])
    found = _BAND.search(str(r["detail"] or ""))
    return (float(found[1]), float(found[2])) if found else None


def _multivariate(metric: str, rows: Sequence[Mapping[str, Any]]) -> list[str]:
    main = next((r for r in rows if not r["column_name"] and not r["label"]), None)
    if main is None or main["value"] is None:
        return []
    line = f"{_MULTIVARIATE[metric]} {short(main['value'])}"
    band = _band(main)
    if band is not None and math.isfinite(band[0]):
        line += f", band {short(band[0])}-{short(band[1])}"
    elif main["threshold"] is not None:
        line += f", threshold {short(main['threshold'])}"
    importance = [r for r in rows if r["label"] == "importance" and r["value"] is not None]
    importance.sort(key=lambda r: -float(r["value"]))
    if importance:
        top = ", ".join(f"{r['column_name']} {float(r['value']):+.3f}" for r in importance[:3])
        line += f"; top features: {top}"
    return [line]


def _estimated(metric: str, r: Mapping[str, Any]) -> str:
    if r["value"] is None or r["column_name"]:
        return ""
    name = metric.removeprefix("estimated_").replace("_", " ")
    line = f"estimated {name} {short(r['value'])}"
    band = _band(r)
    if band is not None:
        line += f" (band {short(band[0])}-{short(band[1])})"
    realized = _REALIZED.search(str(r["detail"] or ""))
    return line + (f", realized {short(float(realized[1]))}" if realized else ", no labels yet")


def _sequential(r: Mapping[str, Any]) -> str:
    if r["value"] is None or r["ci_low"] is None or r["ci_high"] is None:
        return ""
    try:
        detail = orjson.loads(str(r["detail"]))
    except orjson.JSONDecodeError:
        detail = {}
    detail = detail if isinstance(detail, dict) else {}
    alpha = f" at alpha {detail['alpha']:g}" if isinstance(detail.get("alpha"), float) else ""
    decision = str(detail.get("decision", "")).replace("_", " ")
    line = (
        f"{r['label']} challenger - champion {r['value']:+.3g}, always-valid interval"
        f"{alpha} [{r['ci_low']:+.3g}, {r['ci_high']:+.3g}], {r['n']} samples so far"
    )
    return line + (f" ({decision})" if decision else "")
