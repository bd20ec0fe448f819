"""The OpenAPI document of the API as plain rows for the portal's API page (no script, no
Swagger UI: the network is closed and the pages run no inline code)."""

from functools import cache

METHODS = ("get", "post", "put", "patch", "delete")


@cache
def document() -> dict:
    """Title, description, every operation with its parameters, body and responses, and
    every schema with its fields; built once per process from api.v1's OpenAPI document."""
    from api.v1 import api

    spec = api.get_openapi_schema()
    schemas = spec.get("components", {}).get("schemas", {})
    operations = []
    for path, item in spec["paths"].items():
        for method in METHODS:
            if method not in item:
                continue
            op = item[method]
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {})
            operations.append(
                {
                    "id": op["operationId"],
                    "method": method.upper(),
                    "path": path,
                    "summary": op.get("summary", ""),
                    "description": segments(" ".join(op.get("description", "").split())),
                    "parameters": [
                        {
                            "name": p["name"],
                            "in": p["in"],
                            "required": p.get("required", False),
                            "type": type_of(p.get("schema", {})),
                            "description": p.get("description")
                            or p.get("schema", {}).get("description", ""),
                        }
                        for p in op.get("parameters", [])
                    ],
                    "body": named(body["schema"], schemas) if body else "",
                    "responses": [
                        {
                            "status": status,
                            "description": answer.get("description", ""),
                            "content": [
                                {
                                    "media": media,
                                    "type": type_of(content.get("schema", {})),
                                    "schema": named(content.get("schema", {}), schemas),
                                }
                                for media, content in answer.get("content", {}).items()
                            ],
                        }
                        for status, answer in sorted(op["responses"].items())
                    ],
                }
            )
    return {
        "title": spec["info"]["title"],
        "version": spec["info"]["version"],
        "paragraphs": [
            segments(" ".join(p.split())) for p in spec["info"].get("description", "").split("\n\n")
        ],
        "operations": operations,
        "schemas": [
            {
                "name": name,
                "description": schema.get("description", ""),
                "fields": [
                    {
                        "name": field,
                        "type": type_of(spec_of),
                        "required": field in schema.get("required", []),
                        "description": spec_of.get("description", ""),
                        "limits": limits(spec_of),
                    }
                    for field, spec_of in schema.get("properties", {}).items()
                ],
            }
            for name, schema in sorted(schemas.items())
        ],
    }


def segments(text: str) -> list[tuple[str, bool]]:
    """Text with `code` spans as (text, is_code) pieces, for the template to mark up."""
    return [(piece, index % 2 == 1) for index, piece in enumerate(text.split("`")) if piece]


def named(schema: dict, schemas: dict) -> str:
    """The component schema a response or body is (or is a list of), to link to; else ''."""
    ref = schema.get("$ref") or schema.get("items", {}).get("$ref", "")
    name = ref.rsplit("/", 1)[-1]
    return name if name in schemas else ""


def type_of(schema: dict) -> str:
    """A JSON schema in a few words: 'list of JobSummary', 'integer or null'."""
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    if "anyOf" in schema:
        return " or ".join(type_of(s) for s in schema["anyOf"])
    if "allOf" in schema and len(schema["allOf"]) == 1:
        return type_of(schema["allOf"][0])
    if "enum" in schema:
        return "one of " + ", ".join(str(v) for v in schema["enum"])
    if "const" in schema:
        return repr(schema["const"])
    kind = schema.get("type", "any")
    if kind == "array":
        return "list of " + type_of(schema.get("items", {}))
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return "object of " + type_of(schema["additionalProperties"])
    if kind == "string" and schema.get("format"):
        return f"string ({schema['format']})"
    return kind


def limits(schema: dict) -> str:
    """'1 to 64', 'at most 200 characters', for a field's constraints."""
    for option in schema.get("anyOf", []):
        if option.get("type") != "null":
            schema = {**option, **schema}
    parts = []
    low, high = schema.get("minimum"), schema.get("maximum")
    if low is not None and high is not None:
        parts.append(f"{low} to {high}")
    elif low is not None:
        parts.append(f"at least {low}")
    elif high is not None:
        parts.append(f"at most {high}")
    if "maxLength" in schema:
        parts.append(f"at most {schema['maxLength']} characters")
    if "maxItems" in schema:
        parts.append(f"at most {schema['maxItems']} items")
    if "default" in schema and schema["default"] not in (None, [], ""):
        parts.append(f"default {schema['default']}")
    return "; ".join(parts)
