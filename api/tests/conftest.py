import pytest

from api.models import ApiToken


@pytest.fixture
def bearer():
    """bearer(user, **issue_args) -> the headers of a request with a new token of the user."""

    def make(user, name="test", days=None):
        _, plaintext = ApiToken.issue(user, name, days=days)
        return {"HTTP_AUTHORIZATION": f"Bearer {plaintext}"}

    return make
