"""The options of an export job, defined once: names, defaults, limits and help for the
engine, the portal's form, the API and `manage.py adu_export`. Nothing here imports the
engine, so models and pages can read them cheaply; nor pydantic until ExportOptions or
checked() is used, since it would cost every command's start-up 0.1 s that --help, the
form and the defaults do not need (tests/test_startup.py)."""

import functools
import typing

if typing.TYPE_CHECKING:
    from pydantic import BaseModel

# A folder name under the export root chosen by the user (empty: job-<id>): never a path,
# never hidden.
FOLDER_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}"
VALIDATION_MODES = ("off", "sample", "full")
# The key of hash masking: "connection" (tokens match across the connection's jobs),
# "job" (only within the job) or "site" (across connections: ADU Admins only, since an
# operator could then build a lookup table through a source of their own).
MASKING_KEYS = ("connection", "job", "site")
FINGERPRINT_MODES = ("off", "on")


class Option(typing.NamedTuple):
    """One option: a whole number from low to high, or one of its choices; a default of
    None is worked out where it is used. The title labels the portal's form and the API's
    schema (pydantic's own from the name when None)."""

    default: int | str | None
    description: str
    low: int | None = None
    high: int | None = None
    choices: tuple[str, ...] = ()
    title: str | None = None


# In the order of the API's schema and of the command's --help.
OPTIONS = {
    "parallel": Option(2, "Tables exported at once.", 1, 64, title="Parallel tables"),
    # Two connections per large table: one server backend cannot send rows as fast as the
    # binary decoder takes them (lineitem on 2 shared cores: 5.4 s against 6.1 s with one,
    # 5.9 s with three).
    "readers": Option(2, "Connections reading one large table.", 1, 16),
    "compression_level": Option(3, "ZSTD level.", 1, 22, title="Compression level (ZSTD)"),
    "batch_rows": Option(100_000, "Rows per batch.", 1000, 10_000_000, title="Rows per batch"),
    "max_file_mb": Option(None, "Split a table into parts of about this many MB.", 1, 1_000_000),
    "validation": Option(
        "sample",
        "Check the source's constraints on a sample of each table, on every row, or not at "
        "all; rules always check every row.",
        choices=VALIDATION_MODES,
    ),
    "masking_key": Option(
        "connection",
        "The key of hash masking: the connection's (tokens match across its jobs), one for "
        "this job alone, or the site's (tokens match across connections), which only ADU "
        "Admins may choose.",
        choices=MASKING_KEYS,
    ),
    "fingerprint": Option(
        "off",
        "Take each table's content fingerprint in the snapshot (one more scan of it), so "
        "that a load on the far side proves the target equal to the source, not only to "
        "the files.",
        choices=FINGERPRINT_MODES,
        title="Source fingerprint",
    ),
    # None: settings.SOURCE_LOCK_TIMEOUT.
    "lock_timeout": Option(
        None,
        "Seconds a table waits for another session's lock before it fails "
        "(default ADU_SOURCE_LOCK_TIMEOUT, 30).",
        1,
        86_400,
    ),
}


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


@functools.cache
def _model() -> "type[BaseModel]":
    """The pydantic model of OPTIONS (ExportOptions), made on first use."""
    from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

    class Options(BaseModel):
        model_config = ConfigDict(extra="forbid", json_schema_extra=_null_is_the_default)

        @model_validator(mode="before")
        @classmethod
        def _none_is_the_default(cls, given):
            if isinstance(given, dict):
                return {name: value for name, value in given.items() if value is not None}
            return given

    fields: dict[str, typing.Any] = {}
    for name, option in OPTIONS.items():
        kind: typing.Any = typing.Literal[option.choices] if option.choices else int
        limits = {} if option.choices else {"ge": option.low, "le": option.high}
        title = {"title": option.title} if option.title else {}
        field = Field(option.default, description=option.description, **limits, **title)
        fields[name] = (kind if option.default is not None else kind | None, field)
    return create_model(
        "ExportOptions",
        __base__=Options,
        __module__=__name__,
        __doc__="How a job exports; None (an unset argument, null in the API) means the default.",
        **fields,
    )


def __getattr__(name: str):
    # exports.options.ExportOptions, made when first asked for (see the module's docstring).
    if name == "ExportOptions":
        return _model()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def checked(given: dict | None) -> "BaseModel":
    """The options asked for, with defaults for the rest; BadOption names the first wrong one."""
    from pydantic import ValidationError

    try:
        return _model().model_validate(given or {})
    except ValidationError as error:
        name = str(error.errors()[0]["loc"][0])
    label = name.replace("_", " ")
    if name not in OPTIONS:
        raise BadOption(f"There is no option {name}.", f"options.{name}") from None
    if choices(name):
        raise BadOption(f"{label} must be one of {', '.join(choices(name))}.", f"options.{name}")
    low, high = limits(name)
    raise BadOption(f"{label} must be a whole number from {low} to {high}.", f"options.{name}")


def default(name: str):
    return OPTIONS[name].default


def limits(name: str) -> tuple[int, int]:
    """The smallest and largest value of a whole-number option."""
    option = OPTIONS[name]
    assert option.low is not None and option.high is not None, f"{name} is not a number"
    return option.low, option.high


def choices(name: str) -> tuple[str, ...]:
    """The values an option of a few named values may take; () for a number."""
    return OPTIONS[name].choices


def help_text(name: str) -> str:
    """The option's description with its default, for the command's --help."""
    option = OPTIONS[name]
    notes = [] if option.choices else ["{}-{}".format(*limits(name))]
    if option.default is not None:
        notes.append(f"default {option.default}")
    if "default" in option.description or not notes:
        return option.description
    return f"{option.description.rstrip('.')} ({', '.join(notes)})."
