"""Traffic streams: input drift is a verdict on the requests, not on the version scoring them.

Versions that score the same requests (the champion, its shadows, a challenger the
comparison found scoring the champion's requests) form the ``served`` stream; a version
scoring its own split of the traffic is a stream of its own, named by the version.
Whether a challenger shares the champion's requests is what the champion-challenger
comparison decided for its latest window (``evaluators.metrics.comparison.traffic_mode``,
read back from the stored ``detail``: the mode, or while labels are missing the
sample it lacked); without one, a version aliased ``shadow`` shares them and any other
version does not.

Input drift is a drift result on one of the model's schema features (per-column drift
metrics with a ``feature``), the drifted share of the features (``data_drift``'s
``drift_share``) or multivariate drift; prediction, score, target and performance
figures stay per version.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from alerts.conditions import Verdict
from modelwatch.domain import Alias
from modelwatch.policies import Condition
from modelwatch.store.registry import VersionRecord

__all__ = [
    "COMPARISON_METRIC",
    "SERVED",
    "Stream",
    "is_input",
    "order",
    "streams",
    "traffic_mode",
]

SERVED = "served"
COMPARISON_METRIC = "champion_challenger"  # its detail is the traffic mode of the window
SHARED_MODE = "shadow"
SPLIT_MODE = "split"
# What the comparison's detail says while it lacks labels, by mode: "no labelled shared
# request ids" (shadow), "12 labelled challenger rows, minimum 60" (split).
_LACKING = (
    ("shared request ids", SHARED_MODE),
    ("champion rows", SPLIT_MODE),
    ("challenger rows", SPLIT_MODE),
)
DRIFT_METRICS = frozenset({"data_drift", "ks", "chi2", "z", "psi", "wasserstein", "jensenshannon"})
MULTIVARIATE_METRICS = frozenset({"reconstruction_error", "domain_classifier"})
_RANK = {Alias.CHAMPION.value: 0, Alias.SHADOW.value: 1, Alias.CHALLENGER.value: 2}


@dataclass(frozen=True)
class Stream:
    """One traffic stream: its name and the versions scoring it, champion first."""

    name: str
    versions: tuple[VersionRecord, ...]

    @property
    def version_names(self) -> str:
        return ",".join(v.version for v in self.versions)


def order(versions: Iterable[VersionRecord]) -> list[VersionRecord]:
    """Champion first, then shadows, challengers, the rest; oldest first within each."""
    return sorted(versions, key=lambda v: (_RANK.get(v.alias or "", 3), v.id))


def streams(versions: Sequence[VersionRecord], modes: Mapping[int, str]) -> dict[int, Stream]:
    """Each version's stream; ``modes``: version id -> its latest comparison's traffic mode."""
    shared = [v for v in order(versions) if _shares(v, modes)]
    out = {v.id: Stream(v.version, (v,)) for v in versions}
    if shared:
        served = Stream(SERVED, tuple(shared))
        out.update({v.id: served for v in shared})
    return out


def traffic_mode(detail: str) -> str | None:
    """The traffic mode a stored comparison result's ``detail`` names, if any."""
    if detail in (SHARED_MODE, SPLIT_MODE):
        return detail
    return next(
        (mode for words, mode in _LACKING if detail.endswith(words) or f"{words}," in detail), None
    )


def _shares(version: VersionRecord, modes: Mapping[int, str]) -> bool:
    if version.alias == Alias.CHAMPION.value:
        return True
    mode = modes.get(version.id)
    if mode is not None:
        return mode == SHARED_MODE
    return version.alias == Alias.SHADOW.value


def is_input(condition: Condition, verdict: Verdict, features: frozenset[str]) -> bool:
    """Whether ``verdict`` of ``condition`` is about the model's input features."""
    if condition.drifted_share is not None:
        return True
    selector = condition.threshold or condition.change or condition.status or condition.outside_band
    if selector is None:
        return False  # combined conditions and comparisons judge a version
    if selector.metric in MULTIVARIATE_METRICS:
        return True
    if selector.metric not in DRIFT_METRICS:
        return False
    column = dict(verdict.series).get("feature") if selector.column == "*" else selector.column
    if column:
        return column in features
    return selector.metric == "data_drift" and selector.label == "drift_share"
