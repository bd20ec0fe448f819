from accounts import roles


def role(request):
    """What the pages offer this user: links to actions their role cannot take are hidden."""
    user = request.user
    if not user.is_authenticated:
        return {}
    return {
        "adu_role": roles.role(user),
        "can_operate": roles.is_operator(user),
        "is_adu_admin": roles.is_admin(user),
    }
