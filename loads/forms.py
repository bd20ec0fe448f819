"""The new-load form of the portal: the export's folder, a connection marked as a load
target, and the choices adu_load takes, checked by loads.creation.create_load."""

from django import forms
from django.conf import settings

from connections.models import Connection
from exports.selection import BadRequest
from loads.creation import parse_schema_map
from loads.models import DEFAULTS, Load

# The datalist of recent export folders the folder field suggests (new.html).
RECENT_EXPORTS_LIST = "recent-exports"


class NewLoadForm(forms.Form):
    folder = forms.CharField(label="Export folder", max_length=1000)
    target = forms.ModelChoiceField(
        label="Target",
        queryset=Connection.objects.none(),
        empty_label=None,
        help_text="Only connections marked as a load target (on their edit page).",
    )
    tables = forms.CharField(
        label="Tables",
        required=False,
        help_text="SCHEMA.TABLE, comma-separated; empty: every table of the export.",
    )
    schema_map = forms.CharField(
        label="Schema map",
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false"}),
        help_text="One SOURCE=TARGET a line: the tables of schema SOURCE go into TARGET.",
    )
    if_exists = forms.ChoiceField(
        label="If a table is already there",
        choices=Load.IfExists.choices,
        initial=Load.IfExists.FAIL,
    )
    # No limits here: create_load says what they are, in the same words as adu_load.
    parallel = forms.IntegerField(label="Tables at once", initial=DEFAULTS["parallel"])
    create_only = forms.BooleanField(
        label="Create the tables only",
        required=False,
        help_text="The tables with their keys and checks, empty: no rows are loaded.",
    )

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        # A load writes: into the user's own targets (an admin's: any), not shared ones.
        self.fields["target"].queryset = Connection.objects.editable_by(user).filter(is_target=True)
        self.fields["folder"].help_text = (
            f"The folder holding the export's manifest.json, under the receive root "
            f"({settings.RECEIVE_ROOT}). An export job's folder under the export root "
            f"({settings.EXPORT_ROOT}) works too."
        )
        self.fields["folder"].widget.attrs.update(list=RECENT_EXPORTS_LIST, spellcheck="false")

    def clean_tables(self) -> list[str]:
        return [name.strip() for name in self.cleaned_data["tables"].split(",") if name.strip()]

    def clean_schema_map(self) -> dict[str, str]:
        lines = [line for line in self.cleaned_data["schema_map"].splitlines() if line.strip()]
        try:
            return parse_schema_map(lines)
        except BadRequest as error:
            raise forms.ValidationError(str(error)) from None
