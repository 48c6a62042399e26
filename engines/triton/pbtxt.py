"""Protobuf text format for Triton's ``config.pbtxt``, written from plain dicts (no protobuf needed).

Values: ``str`` (quoted), ``bool``, ``int``, ``Enum`` (a bare identifier such as ``TYPE_FP32``),
a list of scalars (``dims: [ 3, -1, -1 ]``), a dict (a nested message) or a list of dicts (a
repeated message, also how map fields are written: ``[{"key": ..., "value": ...}]``).
The tests parse the result with the real ``model_config.proto`` (tritonclient).
"""

from __future__ import annotations


class Enum(str):
    """An enum value: written without quotes."""


def _scalar(value) -> str:
    if isinstance(value, Enum):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    raise TypeError(f"cannot write {value!r} ({type(value).__name__}) to a pbtxt")


def dumps(message: dict, indent: int = 0) -> str:
    pad = "  " * indent
    lines = []
    for key, value in message.items():
        if value is None:
            continue
        if isinstance(value, dict):
            value = [value]
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for item in value:
                lines.append(f"{pad}{key} {{\n{dumps(item, indent + 1)}{pad}}}\n")
        elif isinstance(value, list):
            lines.append(f"{pad}{key}: [ {', '.join(_scalar(v) for v in value)} ]\n")
        else:
            lines.append(f"{pad}{key}: {_scalar(value)}\n")
    return "".join(lines)
