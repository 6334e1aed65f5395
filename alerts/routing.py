"""The routing tree, silences and inhibition, with Alertmanager's semantics.

An alert walks the tree from the root: the first child whose matchers match
takes it (recursively); with ``continue`` the following siblings are tried
too; when no child matches, the node itself handles it. Children inherit the
receiver, grouping and timings they do not set.
"""

from __future__ import annotations

from dataclasses import dataclass

from modelwatch.policies import InhibitRule, RouteSpec
from modelwatch.store.alerts import AlertRecord, SilenceRecord

__all__ = ["Route", "inhibited", "routes_for", "silenced"]


@dataclass(frozen=True)
class Route:
    path: str
    receiver: str
    group_by: tuple[str, ...]
    group_wait: int
    group_interval: int
    repeat_interval: int

    def group_labels(self, labels: dict[str, str]) -> dict[str, str]:
        if "..." in self.group_by:
            return dict(labels)
        return {k: labels.get(k, "") for k in self.group_by}

    def group_key(self, labels: dict[str, str]) -> str:
        pairs = ",".join(f"{k}={v!r}" for k, v in sorted(self.group_labels(labels).items()))
        return f"{self.path}:{{{pairs}}}"


def _inherit(node: RouteSpec, parent: Route | None, path: str) -> Route | None:
    receiver = node.receiver or (parent.receiver if parent else None)
    if receiver is None:
        return None
    return Route(
        path=path,
        receiver=receiver,
        group_by=tuple(node.group_by)
        if node.group_by is not None
        else (parent.group_by if parent else ()),
        group_wait=node.group_wait
        if node.group_wait is not None
        else (parent.group_wait if parent else 30),
        group_interval=node.group_interval
        if node.group_interval is not None
        else (parent.group_interval if parent else 300),
        repeat_interval=node.repeat_interval
        if node.repeat_interval is not None
        else (parent.repeat_interval if parent else 14_400),
    )


def routes_for(root: RouteSpec, labels: dict[str, str]) -> list[Route]:
    """The routes (receiver + grouping) that handle an alert with ``labels``."""
    return _walk(root, None, "root", labels)


def _walk(node: RouteSpec, parent: Route | None, path: str, labels: dict[str, str]) -> list[Route]:
    here = _inherit(node, parent, path)
    out: list[Route] = []
    for i, child in enumerate(node.routes):
        if not all(m.matches(labels) for m in child.matchers):
            continue
        out += _walk(child, here, f"{path}.{i}", labels)
        if not child.continue_:
            break
    if not out and here is not None:
        out.append(here)
    return out


def silenced(alert: AlertRecord, silences: list[SilenceRecord]) -> SilenceRecord | None:
    return next((s for s in silences if s.matches(alert.labels)), None)


def inhibited(alert: AlertRecord, firing: list[AlertRecord], rules: list[InhibitRule]) -> bool:
    """True when a firing alert matching a rule's source mutes this one (its target)."""
    for rule in rules:
        if not all(m.matches(alert.labels) for m in rule.target_matchers):
            continue
        for source in firing:
            if source.fingerprint == alert.fingerprint:
                continue
            if all(m.matches(source.labels) for m in rule.source_matchers) and all(
                source.labels.get(k, "") == alert.labels.get(k, "") for k in rule.equal
            ):
                return True
    return False
