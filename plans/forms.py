from django import forms

from connections.models import Connection
from plans.models import DEFAULT_PATTERN, Notification


def _names(text: str) -> list[str]:
    return [n.strip() for n in text.replace(",", "\n").splitlines() if n.strip()]


class PlanForm(forms.Form):
    """A plan as a person types it; plans.models.ExportPlan.create checks it."""

    name = forms.CharField(max_length=64)
    connection = forms.ModelChoiceField(queryset=Connection.objects.none())
    tables = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        required=False,
        help_text="SCHEMA.TABLE, one per line. None: every table of the schemas below.",
    )
    schemas = forms.CharField(required=False, help_text="Schemas, separated by commas.")
    incremental = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}),
        required=False,
        help_text="Tables exported by their changes since the plan's last export (PostgreSQL), "
        "one per line, or * for all.",
    )
    cron = forms.CharField(required=False, help_text="When, as cron: 0 2 * * * is 02:00 every day.")
    every_minutes = forms.IntegerField(
        required=False, label="Or every (minutes)", min_value=1, max_value=60 * 24 * 366
    )
    timezone = forms.CharField(initial="UTC", max_length=64)
    folder_pattern = forms.CharField(
        initial=DEFAULT_PATTERN, help_text="Each run's folder: {plan}, {date}, {time}, {run}."
    )
    email = forms.CharField(required=False, help_text="E-mail addresses, separated by commas.")
    webhook = forms.URLField(required=False, assume_scheme="https", help_text="A URL to POST to.")
    notify_on = forms.ChoiceField(choices=Notification.When.choices, initial="problems")

    def __init__(self, user, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["connection"].queryset = Connection.objects.usable_by(user)

    def plan_fields(self) -> dict:
        data = self.cleaned_data
        return {
            "name": data["name"].strip(),
            "connection": data["connection"],
            "definition": {"tables": _names(data["tables"]), "schemas": _names(data["schemas"])},
            "incremental": _names(data["incremental"]),
            "cron": data["cron"].strip(),
            "every_minutes": data["every_minutes"],
            "timezone": data["timezone"].strip(),
            "folder_pattern": data["folder_pattern"].strip(),
            "notify_on": data["notify_on"],
        }

    def emails(self) -> list[str]:
        return _names(self.cleaned_data["email"])
