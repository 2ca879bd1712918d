"""Parquet types of result-row columns, from the annotations that declare them.

A column has one type in every row and every sweep: configuration columns take theirs from the
config classes' field annotations, metric columns from the methods' :class:`~tasks.methods.Metric`
declarations, so a value left at None is a typed null.
"""

from __future__ import annotations

import types
import typing
from typing import Any

import pyarrow as pa


def arrow_type(annotation: Any) -> pa.DataType:
    """The Parquet type of a value annotated ``annotation`` (``float | None`` -> double).

    Literals take their values' type, tuples and lists of a type a list of it; anything else
    (a mapping such as ``same_as``) is stored as a string (its canonical JSON).
    """
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return arrow_type(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        kinds = [arrow_type(arg) for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(set(kinds)) == 1:
            return kinds[0]
        return pa.float64() if set(kinds) <= {pa.int64(), pa.float64()} else pa.string()
    if origin is typing.Literal:
        return arrow_type(typing.Union[tuple(type(value) for value in typing.get_args(annotation))])
    if origin in (tuple, list):
        items = [arg for arg in typing.get_args(annotation) if arg is not Ellipsis]
        return pa.list_(arrow_type(typing.Union[tuple(items)]) if items else pa.string())
    return {bool: pa.bool_(), int: pa.int64(), float: pa.float64(), str: pa.string()}.get(annotation, pa.string())


def field_types(config_class) -> dict[str, pa.DataType]:
    """``{field name: Parquet type}`` of a pydantic config class."""
    return {name: arrow_type(info.annotation) for name, info in config_class.model_fields.items()}
