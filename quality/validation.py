"""Validation of a table's rows as they stream: the source's own constraints and the user's rules.

Two kinds of checks, run with pandera on polars frames of about CHUNK_ROWS rows:

- automatic checks built from the source's metadata: each column's type and nullability,
  primary-key and unique constraints, and CHECK constraints that are plain comparisons or
  lists of values. The job's mode decides how many chunks they see: `off` none, `sample`
  at most SAMPLE_CHUNKS spread over the table, `full` every chunk. A failure means the
  file does not hold what the source holds, so these checks have severity `error`.
- the user's rules (quality.models.Rule) see every row whatever the mode: an `error` rule
  that fails fails the table, and a rule is worth having only if it is enforced.

Uniqueness spans chunks: the keys' 64-bit hashes are kept in sorted runs, up to
settings.VALIDATION_MAX_KEYS (then the check says how many rows it covered). Everything
else keeps a bounded state: memory does not grow with the table.
"""

import datetime
import functools
import json
import re
from dataclasses import dataclass, field

import numpy as np
import pandera.polars as pandera
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from django.conf import settings

from quality.models import Rule, typed_value

CHUNK_ROWS = 64 * 1024
SAMPLE_CHUNKS = 8
MAX_EXAMPLES = 20
MAX_EXAMPLE_CHARS = 200


@dataclass
class Check:
    check: str  # type, not_null, unique, range, allowed, regex, constraint, min_rows, no_gaps
    column: str  # "" for the whole table; "a, b" for a key of several columns
    origin: str  # "source: NOT NULL", "source: CHECK positive_price", "rule 12"
    severity: str  # "error" or "warning"
    description: str
    status: str = "passed"  # passed, failed, not applicable, not checked
    failures: int = 0
    examples: list = field(default_factory=list)
    note: str = ""

    def fail(self, count: int, examples, keys=None):
        """`examples`: (row position in the file, value); `keys`: the primary key of each
        example's row, when the table has one that leaves unmasked."""
        self.status = "failed"
        self.failures += count
        for i, (row, value) in enumerate(examples):
            if len(self.examples) >= MAX_EXAMPLES:
                break
            example = {"row": row, "value": _shown(value)}
            if keys is not None and keys[i]:
                example["key"] = {name: _shown(v) for name, v in keys[i].items()}
            self.examples.append(example)

    def summary(self) -> str:
        """The failure in a few words: '3 row(s), e.g. row id=17: 150'."""
        if self.check == "min_rows":
            return f"the table has {self.examples[0]['value']:,} rows"
        if self.check == "no_gaps":
            return self.note
        example = next((e for e in self.examples if e["row"] is not None), None)
        return f"{self.failures:,} row(s)" + (f", e.g. {example_text(example)}" if example else "")

    def skip(self, status: str, note: str):
        self.status, self.note = status, note


def example_text(example: dict) -> str:
    """One example of a failed check as people read it: the row by its primary key when
    the table has one ('row id=17: 150', 'row (a, b)=(1, "x"): 150'), else by its place in
    the file counted from 1 ('row 18 of the file: 150'); a value without a row alone."""
    value = json.dumps(example["value"], ensure_ascii=False)
    key = example.get("key")
    if key:
        names, values = list(key), [json.dumps(v, ensure_ascii=False) for v in key.values()]
        if len(names) == 1:
            return f"row {names[0]}={values[0]}: {value}"
        return f"row ({', '.join(names)})=({', '.join(values)}): {value}"
    if example["row"] is None:
        return value
    return f"row {example['row'] + 1:,} of the file: {value}"


def warning_messages(report: dict) -> list[str]:
    """One line per failed warning-severity check of a finished table's report."""
    return [
        f"{check.description} ({check.origin}): {check.summary()}"
        for check in (Check(**c) for c in report.get("checks", []))
        if check.status == "failed" and check.severity == "warning"
    ]


class Validator:
    """Checks the batches of one table as they are written; `finish` gives the report."""

    def __init__(
        self,
        schema: pa.Schema,
        nullable: dict[str, bool],
        constraints: list[dict],
        rules: list[Rule],
        mode: str = "sample",
        rows_estimate: int | None = None,
        masked: set[str] = frozenset(),
    ):
        """`masked`: columns whose values were changed on purpose; the source's constraints
        and the rules say nothing about what they hold now. `rows_estimate`: the rows the
        table is thought to hold (the server's statistics), until expect() is told."""
        self.mode = mode
        self._masked = set(masked)
        self.checks: list[Check] = []
        self.rows_checked = 0
        self._names = [n for n in schema.names if _readable(schema.field(n).type)]
        types = {f.name: f.type for f in schema}
        self._stride: int | None = None  # sample mode: every this many chunks
        self._sampled = 0  # chunks the automatic checks saw
        if rows_estimate is not None:
            self.expect(rows_estimate)
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0
        self._first_row = 0  # of the pending chunk, in the table's file order
        self._chunk = 0
        self._keys: list[_KeySet] = []
        self._periods: list[tuple[Check, str, set]] = []
        self._min_rows: list[tuple[Check, int]] = []
        self._primary_key = self._key_columns(constraints)
        self._auto = self._plan_automatic(types, nullable, constraints) if mode != "off" else None
        self._rules = self._plan_rules(types, rules)
        self._schemas: dict[str, pandera.DataFrameSchema] = {}  # by origin, see _validate

    # -- planning -------------------------------------------------------------------------

    def _key_columns(self, constraints) -> list[str]:
        """The primary key that names the rows of examples: a row's position in the file
        means nothing at the source. None (positions, then) when the table has no primary
        key, or a key column is left out, masked or unreadable."""
        key = next((c["columns"] for c in constraints if c["kind"] == "primary key"), [])
        usable = key and all(k in self._names and k not in self._masked for k in key)
        return list(key) if usable else []

    def _plan_automatic(self, types, nullable, constraints):
        columns = {}
        for name in types:
            if name not in self._names:
                self._add("type", name, "source: column type", "error", f"{name} is {types[name]}")
                self.checks[-1].skip("not checked", f"the validator cannot read {types[name]}")
                continue
            type_check = self._add("type", name, "source: column type", "error", "")
            type_check.description = f"{name} is {types[name]}"
            checks = []
            for constraint in constraints:
                if constraint["kind"] != "check" or name in self._masked:
                    continue
                for op, value in _comparisons(constraint["definition"], name, types[name]):
                    check = self._add(
                        "constraint",
                        name,
                        f"source: CHECK {constraint['name']}",
                        "error",
                        f"{name} {op} {_shown(value)}"
                        if op != "in"
                        else f"{name} in ({', '.join(str(_shown(v)) for v in value)})",
                    )
                    checks.append(_pandera_check(op, value, check))
            not_null = None
            if not nullable.get(name, True) and name not in self._masked:
                not_null = self._add("not_null", name, "source: NOT NULL", "error", "")
                not_null.description = f"{name} is never null"
            columns[name] = _Column(_polars_type(types[name]), not_null is None, checks)
        for constraint in constraints:
            if constraint["kind"] == "check" and not any(
                c.origin == f"source: CHECK {constraint['name']}" for c in self.checks
            ):
                self._add(
                    "constraint",
                    "",
                    f"source: CHECK {constraint['name']}",
                    "error",
                    constraint["definition"],
                ).skip("not checked", "not a plain comparison ADU can check on a file")
            if constraint["kind"] in ("primary key", "unique"):
                key = constraint["columns"]
                check = self._add(
                    "unique",
                    ", ".join(key),
                    f"source: {constraint['kind'].upper()} {constraint['name']}",
                    "error",
                    f"({', '.join(key)}) is unique",
                )
                if any(k in self._masked for k in key):
                    check.skip("not checked", "a key column is masked")
                elif all(k in self._names for k in key):
                    self._keys.append(_KeySet(check, key, automatic=True))
                else:
                    check.skip("not checked", "a key column is not exported or not readable")
        return columns or None

    def _plan_rules(self, types, rules):
        columns: dict[str, dict] = {}
        for rule in rules:
            check = self._add(
                rule.kind, rule.column, f"rule {rule.pk}", rule.severity, rule.describe()
            )
            if rule.kind == Rule.Kind.MIN_ROWS:
                self._min_rows.append((check, rule.min_rows))
                continue
            if rule.column not in types:
                check.skip(
                    "not applicable",
                    f"column {rule.column} is not in this export (dropped from the table, "
                    "or left out)",
                )
                continue
            problem = (
                "the column is masked in this export"
                if rule.column in self._masked
                else rule.not_applicable(types[rule.column])
            )
            if not problem and rule.column not in self._names:
                problem = f"the validator cannot read {types[rule.column]}"
            if problem:
                check.skip("not applicable", problem)
                continue
            if rule.kind == Rule.Kind.UNIQUE:
                self._keys.append(_KeySet(check, [rule.column], automatic=False))
                continue
            if rule.kind == Rule.Kind.NO_GAPS:
                self._periods.append((check, rule.grain, set()))
                continue
            spec = columns.setdefault(rule.column, {"nullable": True, "checks": []})
            try:
                if rule.kind == Rule.Kind.NOT_NULL:
                    spec["nullable"] = False
                elif rule.kind == Rule.Kind.RANGE:
                    low = typed_value(rule.minimum, types[rule.column]) if rule.minimum else None
                    high = typed_value(rule.maximum, types[rule.column]) if rule.maximum else None
                    spec["checks"].append(_range_check(low, high, check))
                elif rule.kind == Rule.Kind.ALLOWED:
                    values = [typed_value(str(v), types[rule.column]) for v in rule.allowed_values]
                    spec["checks"].append(_pandera_check("in", values, check))
                elif rule.kind == Rule.Kind.REGEX:
                    spec["checks"].append(
                        pandera.Check.str_matches(rule.pattern, error=_label(check))
                    )
            except ValueError as error:
                check.skip("not applicable", str(error))
        schema = {
            name: _Column(_polars_type(types[name]), spec["nullable"], spec["checks"])
            for name, spec in columns.items()
        }
        return schema or None

    def _add(self, kind, column, origin, severity, description) -> Check:
        check = Check(kind, column, origin, severity, description)
        self.checks.append(check)
        return check

    # -- streaming ------------------------------------------------------------------------

    def expect(self, rows_expected: int):
        """The table's row count (or an estimate until it is known): sampled chunks are
        spread over it. Without either, chunks 0, 1, 2, 4, 8... are sampled."""
        chunks = max(1, -(-rows_expected // CHUNK_ROWS))
        self._stride = max(1, -(-chunks // SAMPLE_CHUNKS))

    def update(self, batch: pa.RecordBatch):
        self._pending.append(batch)
        self._pending_rows += batch.num_rows
        if self._pending_rows >= CHUNK_ROWS:
            self._check_chunk()

    def finish(self, rows: int) -> dict:
        self._check_chunk(final=True)
        for check, least in self._min_rows:
            if rows < least:
                check.fail(1, [(None, rows)])
        for check, grain, seen in self._periods:
            _report_gaps(check, grain, seen)
        for keys in self._keys:
            keys.report()
        return {
            "mode": self.mode,
            "status": self.status,
            "rows_checked": self.rows_checked,
            "rows": rows,
            # vars, not asdict: the examples are already plain values, and asdict's deep
            # copy cost more than a small table's export.
            "checks": [dict(vars(c)) for c in self.checks],
        }

    @property
    def status(self) -> str:
        failed = {c.severity for c in self.checks if c.status == "failed"}
        if "error" in failed:
            return "failed"
        return "passed with warnings" if failed else "passed"

    def errors(self) -> list[Check]:
        return [c for c in self.checks if c.status == "failed" and c.severity == "error"]

    def _check_chunk(self, final: bool = False):
        if not self._pending:
            return
        first_row = self._first_row
        batches, self._pending = self._pending, []
        self._first_row += self._pending_rows
        self._pending_rows = 0
        if self.mode == "full":
            in_sample = True
        elif self._stride:
            in_sample = self._chunk % self._stride == 0
        else:  # the table's size unknown: spread over its first chunks, fewer and fewer
            in_sample = self._chunk & (self._chunk - 1) == 0 and self._sampled < SAMPLE_CHUNKS
        sampled = self._auto is not None and in_sample
        self._sampled += sampled
        self._chunk += 1
        rule_columns = set(self._rules or ())
        rule_columns |= {k for keys in self._keys if not keys.automatic for k in keys.columns}
        rule_columns |= {check.column for check, _, _ in self._periods}
        needed = self._names if sampled else [n for n in self._names if n in rule_columns]
        if not needed:
            return
        needed = [*needed, *(k for k in self._primary_key if k not in needed)]
        table = pa.Table.from_batches(batches).select(needed)
        only_automatic = self._rules is None and not self._periods
        if sampled and only_automatic and final and not first_row:
            # The table's only chunk (most tables of a schema): when Arrow tells at once
            # that it passes, polars and pandera are not needed (they cost more).
            assert self._auto is not None  # sampled
            if _whole_and_plainly_valid(self._auto, self._keys, table):
                self.rows_checked += table.num_rows
                return
        frame = _frame(table)
        if sampled:
            self.rows_checked += frame.height
            self._validate(self._auto, frame, first_row, "source")
        if self._rules is not None:
            self._validate(self._rules, frame, first_row, "rule")
        for keys in self._keys:
            if sampled or not keys.automatic:
                keys.add(frame, first_row, self._row_keys, final)
        for check, grain, seen in self._periods:
            seen.update(_periods(frame.get_column(check.column), grain))

    def _row_keys(self, frame: pl.DataFrame, rows: list[int | None]) -> list[dict] | None:
        """The primary key of each of the frame's `rows`, or None without a usable key."""
        if not self._primary_key:
            return None
        keys = frame.select(self._primary_key)
        return [{} if r is None else keys.row(r, named=True) for r in rows]

    def _validate(self, columns: dict, frame: pl.DataFrame, first_row: int, origin: str):
        """Check the frame against the columns of `origin` (source or rule)."""
        if _plainly_valid(columns, frame):
            return
        # Built when first needed: it costs more than a small table's checks.
        if origin not in self._schemas:
            self._schemas[origin] = pandera.DataFrameSchema(
                {
                    name: pandera.Column(c.dtype, nullable=c.nullable, checks=c.checks)
                    for name, c in columns.items()
                }
            )
        schema = self._schemas[origin]
        try:
            schema.validate(frame.select(list(schema.columns)), lazy=True)
            return
        except pandera.errors.SchemaErrors as errors:
            cases = errors.failure_cases
        by_label = {_label(c): c for c in self.checks if c.origin.startswith(origin)}
        for (column, label), group in cases.group_by(["column", "check"], maintain_order=True):
            check = by_label.get(label) or self._builtin(origin, column, label)
            rows = group.get_column("index").to_list()
            values = group.get_column("failure_case").to_list()
            check.fail(
                group.height,
                [
                    (None if r is None else first_row + r, v)
                    for r, v in zip(rows, values, strict=True)
                ],
                self._row_keys(frame, rows[:MAX_EXAMPLES]),
            )

    def _builtin(self, origin: str, column: str, label: str) -> Check:
        """The check behind one of pandera's own labels: not_nullable, dtype('...')."""
        kind = "not_null" if label == "not_nullable" else "type"
        for check in self.checks:
            if check.origin.startswith(origin) and check.column == column and check.check == kind:
                return check
        # A failure no planned check explains (pandera's own): still reported, as an error.
        return self._add(kind, column, f"{origin}: {label}", "error", label)


class _KeySet:
    """The keys seen so far, as sorted runs of 64-bit hashes (merged like a binary counter)."""

    def __init__(self, check: Check, columns: list[str], automatic: bool):
        self.check = check
        self.columns = columns
        self.automatic = automatic
        self.runs: list[np.ndarray] = []
        self.kept = 0
        self.full = False

    def add(self, frame: pl.DataFrame, first_row: int, row_keys, final: bool = False):
        keys = frame.select(self.columns)
        if final and not self.runs and not keys.is_duplicated().any():
            # The only chunk (most tables of a schema), without a repeat: no hash to keep.
            # (A repeat here may be of NULLs, which are not duplicates: told below.)
            return
        present = ~pl.any_horizontal(pl.all().is_null())  # NULLs are never duplicates
        positions = keys.with_row_index("_row").filter(present)
        if not positions.height:
            return
        hashes = positions.select(self.columns).hash_rows(seed=0).to_numpy()
        order = np.argsort(hashes, kind="stable")
        ordered = hashes[order]
        repeat = np.zeros(len(hashes), dtype=bool)
        repeat[order[1:]] = ordered[1:] == ordered[:-1]
        for run in self.runs:
            at = np.searchsorted(run, hashes)
            repeat |= run[np.minimum(at, len(run) - 1)] == hashes
        if repeat.any():
            rows = [int(r) for r in positions.get_column("_row").to_numpy()[repeat][:MAX_EXAMPLES]]
            examples = [(first_row + r, _key_value(keys.row(r))) for r in rows]
            self.check.fail(int(repeat.sum()), examples, row_keys(frame, rows))
        if self.full or self.kept + len(hashes) > settings.VALIDATION_MAX_KEYS:
            self.full = True
            return
        self.kept += len(hashes)
        self.runs.append(np.unique(hashes))
        while len(self.runs) > 1 and len(self.runs[-2]) <= 2 * len(self.runs[-1]):
            last = self.runs.pop()
            self.runs[-1] = np.union1d(self.runs[-1], last)

    def report(self):
        if self.full:
            self.check.note = (
                f"compared across the first {self.kept:,} keys; later rows only with those"
            )
        self.runs = []


def _frame(table: pa.Table) -> pl.DataFrame:
    columns = [_storage(column) for column in table.columns]
    return pl.from_arrow(pa.table(columns, names=table.column_names), rechunk=False)


def _storage(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """An extension type's values (uuid) as their storage type, which polars reads."""
    if isinstance(column.type, pa.BaseExtensionType):
        return column.cast(column.type.storage_type)
    return column


def _whole_and_plainly_valid(
    columns: dict[str, "_Column"], keys: list[_KeySet], table: pa.Table
) -> bool:
    """Whether a table read in one chunk passes the automatic checks, told from Arrow alone:
    no column has a check of values, no NOT NULL column holds a null, and no key repeats.
    A column's type is the one its check was planned from (see _polars_type). Any doubt
    (a key with a NULL, a type Arrow cannot count) is False: the chunk is then checked as
    every other, which names the failures."""
    if any(column.checks for column in columns.values()):
        return False
    if any(table.column(n).null_count for n, column in columns.items() if not column.nullable):
        return False
    for key in keys:
        values = [_storage(table.column(k)) for k in key.columns]
        if any(v.null_count for v in values):
            return False  # NULLs never repeat: polars tells them from the rest
        try:
            if len(values) == 1:
                distinct = pc.count_distinct(values[0]).as_py()
            else:
                groups = pa.table(values, names=key.columns).group_by(key.columns)
                distinct = groups.aggregate([]).num_rows
        except pa.ArrowNotImplementedError:
            return False
        if distinct != table.num_rows:
            return False
    return True


@dataclass
class _Column:
    """What pandera checks of a column (its pandera.Column is built only when needed)."""

    dtype: pl.DataType
    nullable: bool
    checks: list


def _plainly_valid(columns: dict[str, _Column], frame: pl.DataFrame) -> bool:
    """Whether the frame passes columns of types and NOT NULLs alone, told without
    pandera, whose every call costs some milliseconds (most of a small table's export).
    Any doubt (a column with checks, another type, a null where none may be) is False:
    pandera then checks the frame and names the failures as always."""
    if any(column.checks for column in columns.values()):
        return False
    if any(frame.schema[name] != column.dtype for name, column in columns.items()):
        return False
    return not any(
        frame.get_column(name).null_count()
        for name, column in columns.items()
        if not column.nullable
    )


def _readable(arrow_type: pa.DataType) -> bool:
    """Whether polars reads this type (directly or through its storage type)."""
    try:
        _polars_type(arrow_type)
        return True
    # polars panics (a BaseException) on a type it has no kernel for, e.g. decimal256.
    except (Exception, pl.exceptions.PanicException):
        return False


@functools.cache  # the same few types in every table: 2 ms a table (measured)
def _polars_type(arrow_type: pa.DataType) -> pl.DataType:
    """The type of a polars column read from Arrow values of this type (see _frame)."""
    if isinstance(arrow_type, pa.BaseExtensionType):
        arrow_type = arrow_type.storage_type
    return pl.from_arrow(pa.array([], type=arrow_type)).dtype


def _label(check: Check) -> str:
    return f"{check.origin}: {check.description}"


_OPERATORS = {">=": "ge", ">": "gt", "<=": "le", "<": "lt", "=": "eq", "<>": "ne"}


def _pandera_check(op: str, value, check: Check):
    label = _label(check)
    if op == "in":
        return pandera.Check.isin(value, error=label)
    return getattr(pandera.Check, _OPERATORS[op])(value, error=label)


def _range_check(low, high, check: Check):
    label = _label(check)
    if low is not None and high is not None:
        return pandera.Check.in_range(low, high, error=label)
    if low is not None:
        return pandera.Check.ge(low, error=label)
    return pandera.Check.le(high, error=label)


# -- CHECK constraints ------------------------------------------------------------------------

_COMPARISON = re.compile(
    r'^(?P<column>"(?:[^"]|"")+"|[A-Za-z_][\w$]*) (?P<op>>=|<=|<>|>|<|=) (?P<value>.+)$'
)
_ANY = re.compile(r'^(?P<column>"(?:[^"]|"")+"|[A-Za-z_][\w$]*) = ANY \(ARRAY\[(?P<values>.*)\]\)$')
_CAST = re.compile(r"::[\w ]+(\(\d+(,\d+)?\))?(\[\])?$")


def _comparisons(definition: str, column: str, arrow_type: pa.DataType) -> list[tuple]:
    """The plain conditions on `column` in a CHECK constraint, as (operator, value).

    Only the parts joined by AND are taken, each a necessary condition on its own; a
    constraint with OR, functions or several columns in one term yields nothing for them.
    """
    body = definition.strip()
    if body.upper().startswith("CHECK"):
        body = body[5:].strip()
    if body.endswith(" NOT VALID"):
        return []
    found = []
    for term in _split_and(_unwrap(body)):
        term = _unwrap(term)
        match = _ANY.match(term) or _COMPARISON.match(term)
        if not match or _identifier(match["column"]) != column:
            continue
        try:
            if "values" in match.groupdict():
                values = [_literal(v, arrow_type) for v in _split_list(match["values"])]
                found.append(("in", values))
            else:
                found.append((match["op"], _literal(match["value"], arrow_type)))
        except ValueError:
            continue  # a value that is not a plain literal of the column's type
    return found


def _unwrap(text: str) -> str:
    text = text.strip()
    while text.startswith("(") and text.endswith(")") and _closes_at_end(text):
        text = text[1:-1].strip()
    return text


def _closes_at_end(text: str) -> bool:
    depth, quoted = 0, False
    for i, char in enumerate(text):
        if char == "'":
            quoted = not quoted
        elif not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")":
            depth -= 1
            if depth == 0 and i < len(text) - 1:
                return False
    return True


def _split_and(text: str) -> list[str]:
    return _split_top(text, " AND ")


def _split_list(text: str) -> list[str]:
    return _split_top(text, ",")


def _split_top(text: str, separator: str) -> list[str]:
    parts, depth, quoted, start, i = [], 0, False, 0, 0
    while i < len(text):
        char = text[i]
        if char == "'":
            quoted = not quoted
        elif not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")":
            depth -= 1
        elif not quoted and depth == 0 and text.startswith(separator, i):
            parts.append(text[start:i])
            start = i + len(separator)
            i = start
            continue
        i += 1
    parts.append(text[start:])
    return [p.strip() for p in parts]


def _identifier(text: str) -> str:
    return text[1:-1].replace('""', '"') if text.startswith('"') else text


def _literal(text: str, arrow_type: pa.DataType):
    text = _unwrap(text.strip())
    text = _CAST.sub("", text).strip()
    text = _unwrap(text)
    if text.startswith("'") and text.endswith("'"):
        text = text[1:-1].replace("''", "'")
    elif not re.fullmatch(r"-?\d+(\.\d+)?", text):
        raise ValueError(text)
    return typed_value(text, arrow_type)


# -- no gaps -----------------------------------------------------------------------------------


def _periods(column: pl.Series, grain: str) -> set[int]:
    dates = column.drop_nulls().cast(pl.Date)
    if grain == Rule.Grain.MONTH:
        values = dates.dt.year() * 12 + dates.dt.month() - 1
    else:
        values = dates.cast(pl.Int32)
    return set(values.unique().to_list())


def _report_gaps(check: Check, grain: str, seen: set[int]):
    if not seen:
        return
    low, high = min(seen), max(seen)
    missing = (high - low + 1) - len(seen)
    if not missing:
        return
    examples = []
    for period in range(low, high + 1):
        if period not in seen:
            examples.append((None, _period_text(period, grain)))
            if len(examples) >= MAX_EXAMPLES:
                break
    check.fail(missing, examples)
    check.note = f"{missing:,} {grain}(s) missing between {_period_text(low, grain)} and {_period_text(high, grain)}"


def _period_text(period: int, grain: str) -> str:
    if grain == Rule.Grain.MONTH:
        return f"{period // 12:04d}-{period % 12 + 1:02d}"
    return (datetime.date(1970, 1, 1) + datetime.timedelta(days=period)).isoformat()


def _key_value(values: tuple):
    return values[0] if len(values) == 1 else list(values)


def _shown(value):
    """A value as the report shows it: JSON-safe and short."""
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else str(value)
    if isinstance(value, (list, tuple)):
        return [_shown(v) for v in value]
    if isinstance(value, bytes):
        value = value.hex()
    text = str(value)
    return text if len(text) <= MAX_EXAMPLE_CHARS else text[:MAX_EXAMPLE_CHARS] + "…"
