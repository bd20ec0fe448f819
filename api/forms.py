from django import forms

EXPIRY_CHOICES = [
    ("", "Never"),
    ("7", "In 7 days"),
    ("30", "In 30 days"),
    ("90", "In 90 days"),
    ("365", "In a year"),
]


class TokenForm(forms.Form):
    name = forms.CharField(
        max_length=100, help_text="What it is for, e.g. the nightly scheduler on etl-01."
    )
    expires = forms.TypedChoiceField(
        choices=EXPIRY_CHOICES,
        required=False,
        coerce=int,
        empty_value=None,
        label="Expires",
    )
