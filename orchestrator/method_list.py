"""What ``bdsweep list`` prints: every method, dataset and model with its parameters, from the declarations."""

from __future__ import annotations

import types
import typing
from collections.abc import Iterable
from typing import Any

from pydantic_core import PydanticUndefined

INDENT = "    "


def type_text(annotation: Any) -> str:
    """A parameter's type as a reader writes it: ``smaller|distance``, ``float or None``, ``list[float]``."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return type_text(typing.get_args(annotation)[0])
    if origin is typing.Literal:
        return "|".join(str(value) for value in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        shown = " or ".join(type_text(arg) for arg in args if arg is not type(None))
        return f"{shown} or None" if type(None) in args else shown
    if origin is not None:
        args = ", ".join("..." if arg is Ellipsis else type_text(arg) for arg in typing.get_args(annotation))
        return f"{origin.__name__}[{args}]"
    return getattr(annotation, "__name__", str(annotation))


def parameter_lines(config_class) -> list[str]:
    """``name: type = default  description`` per field of a pydantic config class, but those the
    search-space loader fills in (a file's digest)."""
    lines = []
    for name, info in config_class.model_fields.items():
        if (info.json_schema_extra or {}).get("filled_by_loader"):
            continue
        if info.default_factory is not None:
            default = f"= {info.default_factory()!r}"
        else:
            default = "required" if info.default is PydanticUndefined else f"= {info.default!r}"
        about = f"  {info.description}" if info.description else ""
        lines.append(f"{name}: {type_text(info.annotation)} {default}{about}")
    return lines


def describe_methods(title: str, methods: Iterable) -> str:
    """A block per method: name, kind, package and version, summary, parameters and metrics."""
    methods = list(methods)
    out = [f"{title} ({len(methods)})"]
    for method in methods:
        origin = method.package + (f" {method.version}" if method.version else "")
        out.append(f"  {method.name}  [{method.kind}, from {origin}]")
        if summary := method.summary():
            out.append(f"{INDENT}{summary}")
        params = parameter_lines(method.Params)
        out.append(f"{INDENT}parameters:" + (" none" if not params else ""))
        out += [f"{INDENT}  {line}" for line in params]
        own = [f"{m.name} ({m.type_name}): {m.meaning}" for m in method.metrics]
        kind = [m.name for m in method.kind_metrics()]
        out.append(f"{INDENT}metrics:" + (" none" if not own and not kind else ""))
        out += [f"{INDENT}  {line}" for line in own]
        if kind:
            out.append(f"{INDENT}  and every {method.kind}'s: {', '.join(kind)}")
    return "\n".join(out) + "\n"


def _heading(name: str, kind: str, documented) -> str:
    """``  name  [kind, from bdsweep]`` and the first line of ``documented``'s docstring below it."""
    doc = (documented.__doc__ or "").strip().splitlines()
    return f"  {name}  [{kind}, from bdsweep]" + (f"\n{INDENT}{doc[0]}" if doc else "")


def describe_datasets() -> str:
    from tasks.datasets import DATASETS

    out = [f"datasets ({len(DATASETS)})"]
    for name, module in DATASETS.items():
        out += [_heading(name, "dataset", module), f"{INDENT}parameters:"]
        out += [f"{INDENT}  {line}" for line in parameter_lines(module.Config) if not line.startswith("name:")]
    return "\n".join(out) + "\n"


def describe_models() -> str:
    from tasks.models import MODELS

    out = [f"models ({len(MODELS)})", *(_heading(name, "model", build) for name, build in MODELS.items())]
    return "\n".join(out) + "\n"
