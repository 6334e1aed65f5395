"""Domain types shared by every package: tasks, feature types, the model schema.

These are pydantic models because the same objects validate API bodies and the
YAML config; they are frozen so that nothing downstream mutates a schema.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "ALIASES",
    "NAME_PATTERN",
    "VERSION_PATTERN",
    "Alias",
    "FeatureSpec",
    "FeatureType",
    "ModelSpec",
    "Scope",
    "Task",
    "normalize_class",
]

NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.\-]{0,127}$"
VERSION_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.+\-]{0,127}$"
_NAME_RE = re.compile(NAME_PATTERN)

Name = Annotated[str, Field(pattern=NAME_PATTERN, description="letters, digits, _ . - (max 128)")]


class Task(StrEnum):
    BINARY = "binary"
    MULTICLASS = "multiclass"
    REGRESSION = "regression"


class FeatureType(StrEnum):
    NUMERIC = "numeric"
    CATEGORICAL = "categorical"
    BOOLEAN = "boolean"
    TEXT = "text"


class Alias(StrEnum):
    CHAMPION = "champion"
    CHALLENGER = "challenger"
    SHADOW = "shadow"


ALIASES = tuple(a.value for a in Alias)


class Scope(StrEnum):
    """API key scopes: ingest writes data only, read reads everything, admin does all."""

    INGEST = "ingest"
    READ = "read"
    ADMIN = "admin"


class FeatureSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Name
    type: FeatureType


def normalize_class(value: object) -> str | None:
    """A class label as the canonical string stored; None if the value cannot be a label."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return None


class ModelSpec(BaseModel):
    """What a model is: its task and the typed schema of what it sends."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Name
    task: Task
    features: list[FeatureSpec] = Field(min_length=1, max_length=2000)
    prediction: Name = Field("prediction", description="column name of the prediction in files")
    target: Name = Field("target", description="column name of the ground truth in files")
    classes: list[str] | None = Field(
        None, description="class labels; required for multiclass, defaults to ['0','1'] for binary"
    )
    positive_class: str | None = Field(None, description="binary only; defaults to classes[1]")
    scores: bool = Field(False, description="every event must carry score (binary) or scores")
    segments: list[Name] = Field(
        default_factory=list, description="segment tag keys events may carry"
    )
    description: str = ""

    @model_validator(mode="after")
    def _check(self) -> Self:
        names = [f.name for f in self.features]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate feature names: {dupes}")
        if len(set(self.segments)) != len(self.segments):
            raise ValueError("duplicate segment keys")
        if self.task is Task.REGRESSION:
            if self.classes is not None or self.positive_class is not None:
                raise ValueError("regression models take no classes or positive_class")
            return self
        classes = self.classes
        if classes is None:
            if self.task is Task.MULTICLASS:
                raise ValueError("multiclass models must list their classes")
            classes = ["0", "1"]
            object.__setattr__(self, "classes", classes)
        if len(set(classes)) != len(classes):
            raise ValueError("duplicate class labels")
        if self.task is Task.BINARY:
            if len(classes) != 2:
                raise ValueError("binary models have exactly two classes")
            if self.positive_class is None:
                object.__setattr__(self, "positive_class", classes[1])
            elif self.positive_class not in classes:
                raise ValueError(f"positive_class {self.positive_class!r} is not one of {classes}")
        elif len(classes) < 2:
            raise ValueError("multiclass models need at least two classes")
        elif self.positive_class is not None:
            raise ValueError("positive_class applies to binary models only")
        return self

    @property
    def is_classification(self) -> bool:
        return self.task is not Task.REGRESSION

    @property
    def class_list(self) -> list[str]:
        return list(self.classes or [])


def is_valid_name(name: str) -> bool:
    return bool(_NAME_RE.match(name))
