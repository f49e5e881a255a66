"""A small JSON Schema checker for tool arguments (no dependency): type, properties, required,
additionalProperties, items, enum, const, minimum/maximum, minLength/maxLength,
minItems/maxItems. Keywords it does not know are ignored, as JSON Schema says."""
from __future__ import annotations

_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "integer": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and float(v).is_integer(),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
}


def validate(value, schema: dict, path: str = "(root)") -> list[str]:
    """Problems found, as ``path: message`` strings; empty when ``value`` fits ``schema``."""
    if schema is True or not schema:
        return []
    if schema is False:
        return [f"{path}: no value is allowed"]
    out: list[str] = []
    t = schema.get("type")
    if t is not None:
        types = t if isinstance(t, list) else [t]
        if not any(_TYPES.get(x, lambda v: True)(value) for x in types):
            return [f"{path}: expected {' or '.join(types)}"]
    if "enum" in schema and value not in schema["enum"]:
        out.append(f"{path}: must be one of {schema['enum']!r}")
    if "const" in schema and value != schema["const"]:
        out.append(f"{path}: must be {schema['const']!r}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            out.append(f"{path}: must be >= {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            out.append(f"{path}: must be <= {schema['maximum']}")
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            out.append(f"{path}: must be at least {schema['minLength']} characters")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            out.append(f"{path}: must be at most {schema['maxLength']} characters")
    if isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            out.append(f"{path}: must have at least {schema['minItems']} items")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            out.append(f"{path}: must have at most {schema['maxItems']} items")
        items = schema.get("items")
        if isinstance(items, dict):
            for i, item in enumerate(value):
                out += validate(item, items, f"{path}[{i}]" if path != "(root)" else f"[{i}]")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in value:
                out.append(f"{_join(path, name)}: is required")
        for name, item in value.items():
            if name in props:
                out += validate(item, props[name], _join(path, name))
            elif schema.get("additionalProperties") is False:
                out.append(f"{_join(path, name)}: is not allowed")
            elif isinstance(schema.get("additionalProperties"), dict):
                out += validate(item, schema["additionalProperties"], _join(path, name))
    return out


def _join(path: str, name: str) -> str:
    return name if path == "(root)" else f"{path}.{name}"
