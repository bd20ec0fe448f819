"""ADU's three roles, as Django groups (created by accounts' migration 0001).

- ADU Admin: everything, the admin site included, and every user's objects.
- ADU Operator: creates and runs their own connections and jobs, and exports from the
  connections shared with one of their groups.
- ADU Viewer: sees the jobs of connections shared with one of their groups and downloads
  their files; no credentials, no new jobs.

A superuser counts as an ADU Admin; a user in no group may log in and sees nothing.
"""

ADMIN = "ADU Admin"
OPERATOR = "ADU Operator"
VIEWER = "ADU Viewer"
ROLES = (ADMIN, OPERATOR, VIEWER)


def _groups(user) -> frozenset[str]:
    # Asked several times per request: cache on the user object of this request.
    cached = getattr(user, "_adu_groups", None)
    if cached is None:
        cached = frozenset(user.groups.values_list("name", flat=True)) if user.pk else frozenset()
        user._adu_groups = cached
    return cached


def teams(user):
    """The user's groups that share connections: a role is not a team, so a connection
    shared with a role group is not thereby open to everyone of that role."""
    from django.contrib.auth.models import Group

    if not user.pk:
        return Group.objects.none()
    return user.groups.exclude(name__in=ROLES)


def is_admin(user) -> bool:
    return bool(user.is_active and (user.is_superuser or ADMIN in _groups(user)))


def is_operator(user) -> bool:
    """May create connections and start jobs (an admin may too)."""
    return is_admin(user) or bool(user.is_active and OPERATOR in _groups(user))


def role(user) -> str:
    """The user's highest role, or '' for none."""
    if is_admin(user):
        return ADMIN
    if is_operator(user):
        return OPERATOR
    return VIEWER if user.is_active and VIEWER in _groups(user) else ""


def forget(user):
    """Drop the cached groups (after they change)."""
    user.__dict__.pop("_adu_groups", None)


def visible(queryset, user, connection: str):
    """What the user may see of a queryset of things owned and run on a connection (jobs
    from a source, loads into a target): their own, and those whose connection (the
    field named) is shared with one of their groups; an ADU Admin: all."""
    from django.db.models import Q

    if is_admin(user):
        return queryset.all()
    shared = Q(**{f"{connection}__shared_with__in": teams(user)})
    return queryset.filter(Q(owner_id=user.pk) | shared).distinct()


def actionable(queryset, user):
    """What the user may cancel, retry or delete of such a queryset: an operator's own
    (an ADU Admin: all)."""
    if is_admin(user):
        return queryset.all()
    return queryset.filter(owner_id=user.pk) if is_operator(user) else queryset.none()
