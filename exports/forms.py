"""The new-export form of the portal."""

from django import forms

from connections.models import Connection
from exports.engine.run import DEFAULT_OPTIONS


class NewExportForm(forms.Form):
    connection = forms.ModelChoiceField(queryset=Connection.objects.none(), empty_label=None)
    out = forms.CharField(
        label="Output folder",
        required=False,
        help_text="A new folder under the export root; empty: job-<id> (a name of that form "
        "is kept for jobs without one).",
    )
    parallel = forms.IntegerField(
        label="Parallel tables", min_value=1, max_value=64, initial=DEFAULT_OPTIONS["parallel"]
    )
    compression_level = forms.IntegerField(
        label="Compression level (ZSTD)",
        min_value=1,
        max_value=22,
        initial=DEFAULT_OPTIONS["compression_level"],
    )
    batch_rows = forms.IntegerField(
        label="Rows per batch",
        min_value=1000,
        max_value=10_000_000,
        initial=DEFAULT_OPTIONS["batch_rows"],
    )

    validation = forms.ChoiceField(
        label="Validation",
        choices=[
            ("sample", "Sample: the source's constraints on a sample of each table"),
            ("full", "Full: the source's constraints on every row"),
            ("off", "Off: rules only"),
        ],
        initial=DEFAULT_OPTIONS["validation"],
        required=False,
        help_text="Your rules always check every row.",
    )

    def clean_validation(self):
        return self.cleaned_data["validation"] or DEFAULT_OPTIONS["validation"]

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["connection"].queryset = Connection.objects.usable_by(user)
