"""Every dotted path an envelope of each typed matter can hold, read off the model."""

from __future__ import annotations

import types
import typing
from functools import cache
from typing import Any, get_args, get_origin

from pydantic import BaseModel

from gateway.envelope import Envelope


def _models(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models inside an annotation (Optional, Annotated, unions); lists stop."""
    origin = get_origin(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if origin is typing.Annotated:
        return _models(get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [m for arg in get_args(annotation) for m in _models(arg)]
    return []


def model_paths(model: type[BaseModel], prefix: str = "") -> set[str]:
    paths: set[str] = set()
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        paths.add(path)
        for sub in _models(info.annotation):
            paths |= model_paths(sub, path + ".")
    return paths


@cache
def envelope_paths() -> dict[str, set[str]]:
    """``{matter: {paths}}`` for every matter the envelope types."""
    out: dict[str, set[str]] = {}
    for variant in _models(Envelope):
        matter_field = variant.model_fields["matter"]
        for code in get_args(matter_field.annotation):
            out[code] = model_paths(variant)
    return out
