"""Why an alert stopped firing, as the engine and the dispatcher record it.

The reason is kept in the alert's annotations (:data:`RESOLUTION`), so it travels with
the alert to every notifier without a schema change; :data:`ALIAS` holds the version's
alias when the alert was last evaluated and :data:`ALIAS_NOW` (set by the dispatcher)
its alias when the notification was written.
"""

from __future__ import annotations

from modelwatch.store.alerts import LEAD_VERSION

__all__ = [
    "ALIAS",
    "ALIAS_CHANGED",
    "ALIAS_NOW",
    "LEAD_VERSION",
    "NOT_EVALUATED",
    "POLICY_REMOVED",
    "RECOVERED",
    "RESOLUTION",
    "SILENCED",
]

RESOLUTION = "resolution"
ALIAS = "alias"
ALIAS_NOW = "alias_now"

RECOVERED = "recovered"  # the latest window is back within the threshold
ALIAS_CHANGED = "alias_changed"  # the version's alias left the policy's aliases
NOT_EVALUATED = "not_evaluated"  # its series vanished: version, model or results gone
POLICY_REMOVED = "policy_removed"
SILENCED = "silenced"  # still firing, but a silence now matches it
