"""The options of an export job, defined once: names, defaults, limits and help for the
engine, the portal's form, the API and `manage.py adu_export`. Nothing here imports the
engine, so models and pages can read them cheaply."""

import typing

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

# A folder name under the export root chosen by the user (empty: job-<id>): never a path,
# never hidden.
FOLDER_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}"
VALIDATION_MODES = ("off", "sample", "full")
# The key of hash masking: "connection" (tokens match across the connection's jobs),
# "job" (only within the job) or "site" (across connections: ADU Admins only, since an
# operator could then build a lookup table through a source of their own).
MASKING_KEYS = ("connection", "job", "site")


class BadOption(ValueError):
    """An option is out of its limits; the message is one sentence, `field` names the
    option as the API does ("options.parallel")."""

    def __init__(self, message: str, field: str):
        super().__init__(message)
        self.field = field


def _null_is_the_default(schema: dict) -> None:
    """The JSON schema (the API's) says what the validator does: null asks for the default."""
    for name, prop in schema["properties"].items():
        if any(part.get("type") == "null" for part in prop.get("anyOf", [])):
            continue
        notes = {key: prop.pop(key) for key in ("default", "description", "title") if key in prop}
        schema["properties"][name] = {"anyOf": [prop, {"type": "null"}], **notes}


class ExportOptions(BaseModel):
    """How a job exports; None (an unset argument, null in the API) means the default."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_null_is_the_default)

    parallel: int = Field(
        2, ge=1, le=64, title="Parallel tables", description="Tables exported at once."
    )
    # Two connections per large table: one server backend cannot send rows as fast as the
    # binary decoder takes them (lineitem on 2 shared cores: 5.4 s against 6.1 s with one,
    # 5.9 s with three).
    readers: int = Field(2, ge=1, le=16, description="Connections reading one large table.")
    compression_level: int = Field(
        3, ge=1, le=22, title="Compression level (ZSTD)", description="ZSTD level."
    )
    batch_rows: int = Field(
        100_000, ge=1000, le=10_000_000, title="Rows per batch", description="Rows per batch."
    )
    max_file_mb: int | None = Field(
        None, ge=1, le=1_000_000, description="Split a table into parts of about this many MB."
    )
    validation: typing.Literal[VALIDATION_MODES] = Field(
        "sample",
        description="Check the source's constraints on a sample of each table, on every "
        "row, or not at all; rules always check every row.",
    )
    masking_key: typing.Literal[MASKING_KEYS] = Field(
        "connection",
        description="The key of hash masking: the connection's (tokens match across its "
        "jobs), one for this job alone, or the site's (tokens match across connections), "
        "which only ADU Admins may choose.",
    )
    # None: settings.SOURCE_LOCK_TIMEOUT.
    lock_timeout: int | None = Field(
        None,
        ge=1,
        le=86_400,
        description="Seconds a table waits for another session's lock before it fails "
        "(default ADU_SOURCE_LOCK_TIMEOUT, 30).",
    )

    @model_validator(mode="before")
    @classmethod
    def _none_is_the_default(cls, given):
        if isinstance(given, dict):
            return {name: value for name, value in given.items() if value is not None}
        return given


def checked(given: dict | None) -> ExportOptions:
    """The options asked for, with defaults for the rest; BadOption names the first wrong one."""
    try:
        return ExportOptions.model_validate(given or {})
    except ValidationError as error:
        name = str(error.errors()[0]["loc"][0])
    label = name.replace("_", " ")
    if name not in ExportOptions.model_fields:
        raise BadOption(f"There is no option {name}.", f"options.{name}") from None
    if choices(name):
        raise BadOption(f"{label} must be one of {', '.join(choices(name))}.", f"options.{name}")
    low, high = limits(name)
    raise BadOption(f"{label} must be a whole number from {low} to {high}.", f"options.{name}")


def default(name: str):
    return ExportOptions.model_fields[name].default


def limits(name: str) -> tuple[int, int]:
    """The smallest and largest value of a whole-number option."""
    metadata = ExportOptions.model_fields[name].metadata
    low = next(m.ge for m in metadata if hasattr(m, "ge"))
    high = next(m.le for m in metadata if hasattr(m, "le"))
    return low, high


def choices(name: str) -> tuple[str, ...]:
    """The values an option of a few named values may take; () for a number."""
    annotation = ExportOptions.model_fields[name].annotation
    return typing.get_args(annotation) if typing.get_origin(annotation) is typing.Literal else ()


def help_text(name: str) -> str:
    """The option's description with its default, for the command's --help."""
    field = ExportOptions.model_fields[name]
    notes = [] if choices(name) else ["{}-{}".format(*limits(name))]
    if field.default is not None:
        notes.append(f"default {field.default}")
    if "default" in field.description or not notes:
        return field.description
    return f"{field.description.rstrip('.')} ({', '.join(notes)})."
