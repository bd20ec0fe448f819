"""The one way the pages write counts (rows, tables, lines, bytes): digits grouped by
thousands, "1,234,567". A builtin of the templates (settings.TEMPLATES), so no page needs
to load it."""

from django import template

register = template.Library()


@register.filter
def number(value) -> str:
    """12345678 -> "12,345,678"; a float (a rate) to the whole number: 1234.6 -> "1,235";
    None and "" -> ""; anything else not a number as it is.

    Not django.contrib.humanize's intcomma: that one follows the active locale, and a page
    of ADU must read the same for every user and in every test."""
    if value is None or value == "":
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.0f}"
    try:
        return f"{int(str(value)):,}"
    except ValueError:
        return str(value)
