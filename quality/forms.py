"""The rule form of the portal and the admin: a rule is checked against the source's columns
before it is saved, so a rule that could never run is refused with its reason."""

from django import forms
from django.core.exceptions import ValidationError

from connections.models import Connection, ConnectionFailed, NoSuchTable
from quality.models import Rule, source_column_types

# The kind comes before the fields it decides on.
FIELDS = [
    "connection",
    "schema",
    "table",
    "kind",
    "column",
    "minimum",
    "maximum",
    "allowed_values",
    "pattern",
    "min_rows",
    "grain",
    "severity",
    "enabled",
]
# The fields only some kinds use, and what they hold when another kind is chosen: a value
# left over from a kind the user tried first is cleared rather than stored unseen.
KIND_FIELDS = {
    "column": (sorted(Rule.COLUMN_KINDS), ""),
    "minimum": ([Rule.Kind.RANGE], ""),
    "maximum": ([Rule.Kind.RANGE], ""),
    "allowed_values": ([Rule.Kind.ALLOWED], []),
    "pattern": ([Rule.Kind.REGEX], ""),
    "min_rows": ([Rule.Kind.MIN_ROWS], None),
    "grain": ([Rule.Kind.NO_GAPS], ""),
}


class RuleForm(forms.ModelForm):
    allowed_values = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 5}),
        help_text="Allowed values: one value per line.",
    )

    class Meta:
        model = Rule
        fields = FIELDS

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        if user is not None:
            self.fields["connection"].queryset = Connection.objects.editable_by(user)
        self.initial["allowed_values"] = "\n".join(
            str(value) for value in self.instance.allowed_values or []
        )
        # The page's script shows only the fields the chosen kind uses; without it, all show.
        for name, (kinds, _) in KIND_FIELDS.items():
            self.fields[name].widget.attrs["data-kinds"] = " ".join(kinds)

    def clean_allowed_values(self) -> list[str]:
        # Values pasted from a spreadsheet carry stray spaces and blank lines.
        lines = self.cleaned_data["allowed_values"].splitlines()
        return [line.strip() for line in lines if line.strip()]

    def clean(self):
        cleaned = super().clean()
        kind = cleaned.get("kind")
        for name, (kinds, empty) in KIND_FIELDS.items():
            if kind and kind not in kinds and name in cleaned:
                cleaned[name] = empty
        return cleaned

    def _post_clean(self):
        # Django fills the instance and runs Rule.clean() here, putting its errors next to
        # their fields; the source is asked only after that, as UserCreationForm checks a
        # password only once the user it belongs to is built.
        super()._post_clean()
        if not self.errors:
            self.check_against_source()

    def check_against_source(self):
        """Refuse a rule the source's table cannot satisfy: no such table or column, a kind
        that cannot apply to the column's type, bounds or values not of that type."""
        rule = self.instance
        try:
            types = source_column_types(rule.connection, rule.schema, rule.table)
            rule.check_column(types)
        except NoSuchTable as error:
            self.add_error("table", str(error))
        except ConnectionFailed as error:
            self.add_error(None, f"ADU could not check the rule against the source: {error}")
        except ValidationError as error:
            self.add_error(None, error)
