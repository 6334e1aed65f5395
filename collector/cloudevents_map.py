"""Inference payloads to modelwatch's shape: each instance's features (requests) and its
prediction and scores (responses).

Request shapes (``data`` of an ``...inference.request`` event):

- KServe v1 / TensorFlow Serving: ``{"instances": [...]}``, each instance an object keyed by
  feature name or an array of values in the model's schema order (a bare value when the
  model has one feature);
- Open Inference Protocol (KServe v2, MLServer, Triton): ``{"inputs": [{"name", "shape",
  "datatype", "data"}]}``, either one tensor per feature named like it (shape ``[n]`` or
  ``[n, 1]``, MLServer's pandas codec) or a single ``[n, features]`` tensor by position;
- Seldon Core: ``{"data": {"names": [...], "ndarray": [[...]]}}`` or ``{"data": {"tensor":
  {"shape": [n, features], "values": [...]}}}``.

Response shapes: ``{"predictions": [...]}``, ``{"outputs": [...]}`` and Seldon's ``data``.
One value per instance: a class label or number is the prediction; an array with one
probability per class (``predict_proba``) gives the scores and, as its most likely class,
the prediction; an object may carry ``prediction``, ``score`` and ``scores`` itself.

Values are not type-checked here: the joined events go through the ingest validator,
which names every bad field.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from modelwatch.cloudevents_spec import ServiceTarget
from modelwatch.domain import ModelSpec, Task
from modelwatch.errors import FieldError, ValidationFailed

__all__ = ["request_features", "response_predictions"]

Loc = tuple[str | int, ...]
Row = dict[str, Any]

_PREDICTION_KEYS = frozenset({"prediction", "score", "scores"})
_PREDICTION_OUTPUTS = ("predict", "prediction", "predictions")
_SCORES_OUTPUTS = ("predict_proba", "probabilities", "scores")


def _bad(loc: Loc, msg: str, value: object = None) -> ValidationFailed:
    return ValidationFailed([FieldError(loc, msg, value)])


def request_features(spec: ModelSpec, data: object) -> list[Row]:
    """Each instance's features by name, in request order."""
    loc: Loc = ("data",)
    if isinstance(data, dict):
        if "instances" in data:
            return _instances(spec, data["instances"], (*loc, "instances"))
        if "inputs" in data:
            return _input_tensors(spec, data["inputs"], (*loc, "inputs"))
        if isinstance(data.get("data"), dict):
            rows, names = _seldon_rows(data["data"], (*loc, "data"))
            if names is not None:
                return [_named(names, row, (*loc, "data", "ndarray", i)) for i, row in rows]
            return _instances(spec, [row for _, row in rows], (*loc, "data", "ndarray"))
    raise _bad(
        loc,
        "not an inference request: send KServe v1 {'instances': [...]}, Open Inference "
        "Protocol {'inputs': [...]} or Seldon {'data': {'ndarray': [...]}}",
        None if isinstance(data, dict) else data,
    )


def response_predictions(spec: ModelSpec, data: object, target: ServiceTarget | None) -> list[Row]:
    """Each instance's ``prediction`` (and ``score`` or ``scores``), in response order."""
    loc: Loc = ("data",)
    if isinstance(data, dict):
        if "predictions" in data:
            values = _array(data["predictions"], (*loc, "predictions"))
            return [_prediction(spec, v, (*loc, "predictions", i)) for i, v in enumerate(values)]
        if "outputs" in data:
            return _output_tensors(spec, data["outputs"], (*loc, "outputs"), target)
        if isinstance(data.get("data"), dict):
            rows, _ = _seldon_rows(data["data"], (*loc, "data"))
            return [_prediction(spec, v, (*loc, "data", "ndarray", i)) for i, v in rows]
    raise _bad(
        loc,
        "not an inference response: send KServe v1 {'predictions': [...]}, Open Inference "
        "Protocol {'outputs': [...]} or Seldon {'data': {'ndarray': [...]}}",
        None if isinstance(data, dict) else data,
    )


# --- requests ------------------------------------------------------------------------


def _array(value: object, loc: Loc) -> list[Any]:
    if not isinstance(value, list) or not value:
        raise _bad(loc, "must be a non-empty array", None if isinstance(value, dict) else value)
    return value


def _instances(spec: ModelSpec, instances: object, loc: Loc) -> list[Row]:
    names = [f.name for f in spec.features]
    out: list[Row] = []
    for i, instance in enumerate(_array(instances, loc)):
        if isinstance(instance, dict):
            out.append(instance)
        elif isinstance(instance, list):
            out.append(_named(names, instance, (*loc, i)))
        elif len(names) == 1:
            out.append({names[0]: instance})
        else:
            raise _bad((*loc, i), _positional(spec), instance)
    return out


def _positional(spec: ModelSpec) -> str:
    names = ", ".join(f.name for f in spec.features)
    return f"must be an object by feature name or an array of {len(spec.features)} values: {names}"


def _named(names: Sequence[str], values: object, loc: Loc) -> Row:
    if not isinstance(values, list) or len(values) != len(names):
        count = f"{len(values)} values" if isinstance(values, list) else "not an array"
        raise _bad(loc, f"{count}; expected {len(names)} in this order: {', '.join(names)}")
    return dict(zip(names, values, strict=True))


def _tensor(value: object, loc: Loc) -> tuple[str, list[int], list[Any]]:
    """A v2 tensor's name, shape and row-major values."""
    if not isinstance(value, dict):
        raise _bad(loc, "must be a tensor object with name, shape, datatype and data")
    name, shape = value.get("name"), value.get("shape")
    if not isinstance(name, str) or not name:
        raise _bad((*loc, "name"), "required, a string", name)
    if (
        not isinstance(shape, list)
        or not shape
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
    ):
        raise _bad((*loc, "shape"), "required, an array of non-negative integers", shape)
    flat = _flatten(value.get("data"), (*loc, "data"))
    if len(flat) != math.prod(shape):
        raise _bad(
            (*loc, "data"), f"holds {len(flat)} values; shape {shape} needs {math.prod(shape)}"
        )
    return name, shape, flat


def _flatten(data: object, loc: Loc) -> list[Any]:
    if not isinstance(data, list):
        raise _bad(loc, "required, an array", None if isinstance(data, dict) else data)
    if not any(isinstance(v, list) for v in data):
        return data
    out: list[Any] = []
    stack = [iter(data)]
    while stack:  # nested arrays, row-major: iteratively, however deep
        for v in stack[-1]:
            if isinstance(v, list):
                stack.append(iter(v))
                break
            out.append(v)
        else:
            stack.pop()
    return out


def _rows(shape: list[int], flat: list[Any], loc: Loc) -> list[Any]:
    """A tensor's values per instance (its first dimension): scalars for ``[n]`` and
    ``[n, 1]``, arrays for ``[n, k]``."""
    if len(shape) == 1 or (len(shape) == 2 and shape[1] == 1):
        return flat
    if len(shape) == 2:
        k = shape[1]
        return [flat[i : i + k] for i in range(0, len(flat), k)]
    raise _bad((*loc, "shape"), f"must be [n] or [n, k] (got {len(shape)} dimensions)", shape)


def _input_tensors(spec: ModelSpec, inputs: object, loc: Loc) -> list[Row]:
    tensors = [_tensor(t, (*loc, i)) for i, t in enumerate(_array(inputs, loc))]
    features = {f.name for f in spec.features}
    if len(tensors) == 1 and tensors[0][0] not in features:
        name, shape, flat = tensors[0]
        if len(shape) != 2 or shape[1] != len(spec.features):
            raise _bad(
                (*loc, 0, "shape"),
                f"tensor {name!r} is not named like a feature, so it must be "
                f"[n, {len(spec.features)}]: one column per feature in schema order",
                shape,
            )
        names = [f.name for f in spec.features]
        return [_named(names, row, (*loc, 0, "data")) for row in _rows(shape, flat, loc)]
    unknown = [(i, t[0]) for i, t in enumerate(tensors) if t[0] not in features]
    if unknown:
        i, name = unknown[0]
        raise _bad(
            (*loc, i, "name"),
            "not a feature of the model; send one tensor per feature, named like it, "
            "or a single [n, features] tensor",
            name,
        )
    columns: dict[str, list[Any]] = {}
    for i, (name, shape, flat) in enumerate(tensors):
        if len(shape) > 2 or (len(shape) == 2 and shape[1] != 1):
            raise _bad((*loc, i, "shape"), "a feature's tensor must be [n] or [n, 1]", shape)
        columns[name] = flat
    n = len(next(iter(columns.values())))
    for i, (name, column) in enumerate(columns.items()):
        if len(column) != n:
            raise _bad((*loc, i, "shape"), f"{name!r} has {len(column)} rows; the first has {n}")
    return [{name: column[j] for name, column in columns.items()} for j in range(n)]


def _seldon_rows(data: dict[str, Any], loc: Loc) -> tuple[list[tuple[int, Any]], list[str] | None]:
    """Seldon's ``ndarray`` rows (or ``tensor`` reshaped to rows) and its ``names``."""
    names = data.get("names")
    if names is not None and not (
        isinstance(names, list) and all(isinstance(n, str) for n in names)
    ):
        raise _bad((*loc, "names"), "must be an array of strings", names)
    if "ndarray" in data:
        rows = _array(data["ndarray"], (*loc, "ndarray"))
    elif isinstance(data.get("tensor"), dict):
        tensor = {"name": "tensor", **data["tensor"]}
        tensor["data"] = tensor.pop("values", None)
        _, shape, flat = _tensor(tensor, (*loc, "tensor"))
        rows = _rows(shape, flat, (*loc, "tensor"))
    else:
        raise _bad(loc, "Seldon payloads are read from 'ndarray' or 'tensor'")
    return list(enumerate(rows)), names or None


# --- responses -----------------------------------------------------------------------


def _output_tensors(
    spec: ModelSpec, outputs: object, loc: Loc, target: ServiceTarget | None
) -> list[Row]:
    tensors: dict[str, tuple[int, list[int], list[Any]]] = {}
    for i, value in enumerate(_array(outputs, loc)):
        name, shape, flat = _tensor(value, (*loc, i))
        tensors[name] = (i, shape, flat)
    known = ", ".join(tensors)
    wanted_prediction = target.prediction_output if target else None
    wanted_scores = target.scores_output if target else None
    for wanted in (wanted_prediction, wanted_scores):
        if wanted and wanted not in tensors:
            raise _bad(loc, f"no output tensor named {wanted!r} (outputs: {known})")
    prediction = _pick(tensors, wanted_prediction, (spec.prediction, *_PREDICTION_OUTPUTS))
    scores = _pick(tensors, wanted_scores, _SCORES_OUTPUTS)
    if prediction is None and scores is None:
        if len(tensors) != 1:
            raise _bad(
                loc,
                f"several output tensors ({known}) and none named as the prediction; set "
                "cloudevents.services.<service>.prediction_output",
            )
        prediction = next(iter(tensors))

    def values(name: str) -> list[Any]:
        i, shape, flat = tensors[name]
        return _rows(shape, flat, (*loc, i))

    first = prediction if prediction is not None else scores
    assert first is not None
    at = tensors[first][0]
    if scores is None:
        return [_prediction(spec, v, (*loc, at, "data", j)) for j, v in enumerate(values(first))]
    probabilities = values(scores)
    labels = values(prediction) if prediction is not None else None
    if labels is not None and len(labels) != len(probabilities):
        raise _bad(loc, f"{prediction!r} and {scores!r} differ in rows")
    out = []
    for j, p in enumerate(probabilities):
        if labels is not None and spec.task is Task.BINARY and not isinstance(_scalar(p), list):
            out.append({"prediction": _scalar(labels[j]), "score": _scalar(p)})
            continue  # one column: the positive class's probability
        row = _prediction(spec, p, (*loc, tensors[scores][0], "data", j))
        if labels is not None:
            row["prediction"] = _scalar(labels[j])
        out.append(row)
    return out


def _pick(tensors: dict[str, Any], configured: str | None, defaults: Sequence[str]) -> str | None:
    if configured:
        return configured if configured in tensors else None
    return next((name for name in defaults if name in tensors), None)


def _scalar(value: object) -> object:
    return value[0] if isinstance(value, list) and len(value) == 1 else value


def _prediction(spec: ModelSpec, value: object, loc: Loc) -> Row:
    value = _scalar(value)
    if isinstance(value, dict):
        extra = sorted(set(value) - _PREDICTION_KEYS)
        if extra:
            raise _bad(
                (*loc, extra[0]), "unknown key; a prediction object has prediction, score, scores"
            )
        return dict(value)
    if isinstance(value, list):
        classes = spec.class_list
        numbers = all(isinstance(p, int | float) and not isinstance(p, bool) for p in value)
        if not spec.is_classification or len(value) != len(classes) or not numbers:
            wanted = f"one probability per class ({len(classes)})" if classes else "one number"
            raise _bad(loc, f"an array of {len(value)} values; expected a prediction or {wanted}")
        best = classes[max(range(len(value)), key=value.__getitem__)]
        if spec.task is Task.BINARY:
            return {"prediction": best, "score": value[classes.index(spec.positive_class or "")]}
        return {"prediction": best, "scores": dict(zip(classes, value, strict=True))}
    return {"prediction": value}
