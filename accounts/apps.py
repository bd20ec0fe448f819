from django.apps import AppConfig
from django.db.models.signals import m2m_changed, post_migrate


class AccountsConfig(AppConfig):
    name = "accounts"

    def ready(self):
        from django.contrib.auth import get_user_model

        # Every app's post_migrate, not only ours: the permissions of the apps after this
        # one in INSTALLED_APPS exist only once theirs has run.
        post_migrate.connect(grant_admin_permissions, dispatch_uid="adu-roles")
        m2m_changed.connect(
            sync_staff, sender=get_user_model().groups.through, dispatch_uid="adu-sync-staff"
        )


def grant_admin_permissions(using="default", **kwargs):
    """ADU Admin holds every permission, so its members can use the whole admin site.

    The roles' groups come from migration 0001; they are made again here when missing,
    since a database flush (as tests do) empties the tables but runs post_migrate again.
    """
    from django.contrib.auth.models import Group, Permission

    from accounts import roles

    for name in roles.ROLES:
        group, _ = Group.objects.using(using).get_or_create(name=name)
        if name == roles.ADMIN:
            group.permissions.set(Permission.objects.using(using).all())


def sync_staff(instance, action, reverse, pk_set, **kwargs):
    """The admin site lets in staff: an ADU Admin is staff, and only while they are one."""
    if action not in ("post_add", "post_remove", "post_clear"):
        return
    from django.contrib.auth import get_user_model

    from accounts import roles

    User = get_user_model()
    if not reverse:
        users = [instance]
    elif pk_set:
        users = User.objects.filter(pk__in=pk_set)
    else:  # a group emptied of its users: who they were is gone, so look at all staff
        users = User.objects.filter(is_staff=True)
    for user in users:
        roles.forget(user)
        staff = user.is_superuser or user.groups.filter(name=roles.ADMIN).exists()
        if user.is_staff != staff:
            user.is_staff = staff
            user.save(update_fields=["is_staff"])
