"""Rules a user sets on a source table: checked on every exported row, reported per table."""

from __future__ import annotations

import datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

if TYPE_CHECKING:
    import pyarrow as pa

# pyarrow and polars are imported where a rule meets a column type: Django's start-up
# (every page, every command's --help) goes without them.


class RuleQuerySet(models.QuerySet):
    def visible_to(self, user):
        from connections.models import Connection

        return self.filter(connection__in=Connection.objects.visible_to(user))

    def editable_by(self, user):
        from connections.models import Connection

        return self.filter(connection__in=Connection.objects.editable_by(user))


class Rule(models.Model):
    class Kind(models.TextChoices):
        NOT_NULL = "not_null", "Not null"
        UNIQUE = "unique", "Unique"
        RANGE = "range", "Range (min/max)"
        ALLOWED = "allowed", "Allowed values"
        REGEX = "regex", "Matches a pattern"
        MIN_ROWS = "min_rows", "Row count at least"
        NO_GAPS = "no_gaps", "No gaps in dates"

    class Severity(models.TextChoices):
        WARNING = "warning", "Warning (report only)"
        ERROR = "error", "Error (fails the table)"

    class Grain(models.TextChoices):
        DAY = "day"
        MONTH = "month"

    # Kinds that need a column; MIN_ROWS is about the whole table.
    COLUMN_KINDS = {
        Kind.NOT_NULL,
        Kind.UNIQUE,
        Kind.RANGE,
        Kind.ALLOWED,
        Kind.REGEX,
        Kind.NO_GAPS,
    }

    connection = models.ForeignKey(
        "connections.Connection", on_delete=models.CASCADE, related_name="rules"
    )
    schema = models.CharField(max_length=255)
    table = models.CharField(max_length=255)
    column = models.CharField(max_length=255, blank=True)
    kind = models.CharField(max_length=16, choices=Kind)
    severity = models.CharField(max_length=8, choices=Severity, default=Severity.WARNING)
    minimum = models.CharField(
        max_length=100, blank=True, help_text="Range: the lowest allowed value (blank: none)."
    )
    maximum = models.CharField(
        max_length=100, blank=True, help_text="Range: the highest allowed value (blank: none)."
    )
    allowed_values = models.JSONField(
        default=list, blank=True, help_text="Allowed values: the values the column may hold."
    )
    pattern = models.CharField(
        max_length=500, blank=True, help_text="Pattern: a regular expression every value matches."
    )
    min_rows = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="Row count: the fewest rows the table may have."
    )
    grain = models.CharField(max_length=8, choices=Grain, blank=True)
    enabled = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = RuleQuerySet.as_manager()

    class Meta:
        ordering = ["connection", "schema", "table", "column", "pk"]

    def __str__(self) -> str:
        return f"{self.schema}.{self.table}: {self.describe()}"

    def describe(self) -> str:
        """What the rule asks, in words: 'amount between 0 and 100'."""
        column = self.column
        if self.kind == self.Kind.NOT_NULL:
            return f"{column} is never null"
        if self.kind == self.Kind.UNIQUE:
            return f"{column} is unique"
        if self.kind == self.Kind.RANGE:
            if self.minimum and self.maximum:
                return f"{column} between {self.minimum} and {self.maximum}"
            if self.minimum:
                return f"{column} at least {self.minimum}"
            return f"{column} at most {self.maximum}"
        if self.kind == self.Kind.ALLOWED:
            shown = ", ".join(str(v) for v in self.allowed_values[:10])
            more = ", …" if len(self.allowed_values) > 10 else ""
            return f"{column} in ({shown}{more})"
        if self.kind == self.Kind.REGEX:
            return f"{column} matches {self.pattern}"
        if self.kind == self.Kind.MIN_ROWS:
            return f"at least {self.min_rows} rows"
        return f"no {self.grain} missing in {column}"

    def clean(self):
        """Checks that need no source: the fields the kind needs, a valid pattern, min ≤ max."""
        errors = {}
        if self.kind in self.COLUMN_KINDS and not self.column:
            errors["column"] = "Choose the column this rule checks."
        if self.kind == self.Kind.MIN_ROWS:
            self.column = ""
            if self.min_rows is None:
                errors["min_rows"] = "Give the fewest rows the table may have."
        if self.kind == self.Kind.RANGE and not (self.minimum or self.maximum):
            errors["minimum"] = "Give a minimum, a maximum or both."
        if self.kind == self.Kind.ALLOWED:
            if not isinstance(self.allowed_values, list) or not self.allowed_values:
                errors["allowed_values"] = "Give at least one allowed value."
        if self.kind == self.Kind.REGEX:
            if not self.pattern:
                errors["pattern"] = "Give the pattern every value must match."
            else:
                problem = pattern_problem(self.pattern)
                if problem:
                    errors["pattern"] = f"This is not a valid regular expression: {problem}."
        if self.kind == self.Kind.NO_GAPS and not self.grain:
            errors["grain"] = "Choose whether a day or a month may not be missing."
        if errors:
            raise ValidationError(errors)

    def check_column(self, arrow_types: dict[str, pa.DataType]):
        """Checks against the table's columns (name → the Arrow type ADU exports it as).

        Raises ValidationError with one message per field; used when the rule is saved.
        """
        if self.kind not in self.COLUMN_KINDS:
            return
        if self.column not in arrow_types:
            raise ValidationError(
                {"column": f"{self.schema}.{self.table} has no column '{self.column}'."}
            )
        problem = self.not_applicable(arrow_types[self.column])
        if problem:
            raise ValidationError({"column": problem})
        if self.kind == self.Kind.RANGE:
            arrow_type = arrow_types[self.column]
            bounds = {}
            for field in ("minimum", "maximum"):
                text = getattr(self, field)
                if text:
                    try:
                        bounds[field] = typed_value(text, arrow_type)
                    except ValueError as error:
                        raise ValidationError({field: str(error)}) from None
            if len(bounds) == 2 and bounds["minimum"] > bounds["maximum"]:
                raise ValidationError({"maximum": "The maximum is below the minimum."})
        if self.kind == self.Kind.ALLOWED:
            for value in self.allowed_values:
                try:
                    typed_value(str(value), arrow_types[self.column])
                except ValueError as error:
                    raise ValidationError({"allowed_values": str(error)}) from None

    def not_applicable(self, arrow_type: pa.DataType) -> str:
        """Why this rule cannot check a column exported as `arrow_type` ('' when it can)."""
        import pyarrow as pa

        from exports.engine import column_kinds

        if self.kind == self.Kind.NO_GAPS and not column_kinds.is_date_or_timestamp(arrow_type):
            return f"'No gaps' needs a date or timestamp column; {self.column} is exported as {arrow_type}."
        if self.kind == self.Kind.REGEX and not pa.types.is_string(arrow_type):
            return f"A pattern checks text; {self.column} is exported as {arrow_type}."
        if self.kind == self.Kind.RANGE and not _is_ordered(arrow_type):
            return (
                f"A range needs numbers, dates or text; {self.column} is exported as {arrow_type}."
            )
        if self.kind in (self.Kind.ALLOWED, self.Kind.UNIQUE) and not _is_comparable(arrow_type):
            return f"{self.column} is exported as {arrow_type}, which this rule cannot compare."
        return ""


def pattern_problem(pattern: str) -> str:
    """Why `pattern` is not a regular expression the checker runs ('' when it is one)."""
    import polars as pl

    try:
        pl.Series([""], dtype=pl.String).str.contains(pattern)
    except Exception as error:  # polars raises ComputeError with the regex engine's reason
        return str(error).strip().splitlines()[-1].strip() or "invalid pattern"
    return ""


def typed_value(text: str, arrow_type: pa.DataType):
    """The rule's value written as text, as a value of the column's exported type."""
    import pyarrow as pa

    text = text.strip()
    try:
        if pa.types.is_integer(arrow_type):
            return int(text)
        if pa.types.is_floating(arrow_type):
            return float(text)
        if pa.types.is_decimal(arrow_type):
            value = Decimal(text)
            if not value.is_finite():
                raise InvalidOperation
            return value
        if pa.types.is_date(arrow_type):
            return datetime.date.fromisoformat(text)
        if pa.types.is_timestamp(arrow_type):
            value = datetime.datetime.fromisoformat(text)
            if arrow_type.tz and value.tzinfo is None:
                value = value.replace(tzinfo=datetime.UTC)
            return value
        if pa.types.is_time(arrow_type):
            return datetime.time.fromisoformat(text)
        if pa.types.is_boolean(arrow_type):
            if text.lower() in ("true", "t", "1"):
                return True
            if text.lower() in ("false", "f", "0"):
                return False
            raise ValueError
    except (ValueError, InvalidOperation):
        raise ValueError(f"'{text}' is not a value of type {arrow_type}.") from None
    return text


def _is_ordered(arrow_type: pa.DataType) -> bool:
    import pyarrow as pa

    from exports.engine import column_kinds

    return (
        column_kinds.is_number(arrow_type)
        or column_kinds.is_date_or_timestamp(arrow_type)
        or pa.types.is_time(arrow_type)
        or pa.types.is_string(arrow_type)
    )


def _is_comparable(arrow_type: pa.DataType) -> bool:
    import pyarrow as pa

    return (
        _is_ordered(arrow_type) or pa.types.is_boolean(arrow_type) or pa.types.is_binary(arrow_type)
    )


def source_column_types(connection, schema: str, table: str) -> dict[str, pa.DataType]:
    """The table's columns and the Arrow types ADU exports them as, asked from the source
    (NoSuchTable or ConnectionFailed with one sentence, as Connection.describe_table)."""
    driver = connection.driver()
    return {c.name: driver.plan(c).arrow_type for c in connection.describe_table(schema, table)}
