"""What a page may show of a connection to the user looking at it."""

from django import template

from connections.models import Connection

register = template.Library()


@register.filter
def editable_by(connection, user) -> bool:
    """{% if job.connection|editable_by:request.user %}: the user may edit the connection,
    and so may see where it points (host, port, database, user)."""
    if connection is None or not getattr(user, "is_authenticated", False):
        return False
    return Connection.objects.editable_by(user).filter(pk=connection.pk).exists()
