"""Triton model configurations (config.pbtxt) from plain Python values.

A dict is a message, a list of dicts a repeated message, a list of scalars a repeated
field, an `Enum` a bare enum name, a str a quoted string; Triton's own parser
(tritonclient's model_config_pb2 with protobuf's text_format) reads the result.
"""
from __future__ import annotations


class Enum(str):
    """An enum value (TYPE_FP32, KIND_CPU): written without quotes."""


def _scalar(value) -> str:
    if isinstance(value, Enum):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    raise TypeError(f"no pbtxt form for {value!r}")


def dumps(message: dict, indent: int = 0) -> str:
    """The text form of one message (its fields in the dict's order)."""
    pad = "  " * indent
    lines = []
    for key, value in message.items():
        if isinstance(value, dict):
            lines += [f"{pad}{key} {{", dumps(value, indent + 1), f"{pad}}}"]
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for item in value:
                lines += [f"{pad}{key} {{", dumps(item, indent + 1), f"{pad}}}"]
        elif isinstance(value, list):
            lines.append(f"{pad}{key}: [{', '.join(_scalar(v) for v in value)}]")
        else:
            lines.append(f"{pad}{key}: {_scalar(value)}")
    return "\n".join(line for line in lines if line)


def parameters(values: dict[str, str]) -> list[dict]:
    """Triton's `parameters` map (string values), as repeated key/value messages."""
    return [{"key": k, "value": {"string_value": v}} for k, v in values.items()]
