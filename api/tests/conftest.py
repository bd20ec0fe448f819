import pytest
from django.core.cache import cache

from api.models import ApiToken
from exports.engine.run import run_job
from exports.jobs import create_job


@pytest.fixture(autouse=True)
def fresh_rate_counts():
    # The rate limit counts in the cache, which outlives each test's database.
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def bearer():
    """bearer(user, days=None) -> the headers of a request with a new token of the user."""

    def make(user, name="test", days=None):
        _, plaintext = ApiToken.issue(user, name, days=days)
        return {"HTTP_AUTHORIZATION": f"Bearer {plaintext}"}

    return make


@pytest.fixture
def world(owner, source_db):
    """The owner's connection, a finished job with one table exported and one failed, and a
    queued job that no cluster runs."""
    source_db.execute("CREATE TABLE t AS SELECT generate_series(1, 5) AS i")
    connection = source_db.connection(owner, name="warehouse")
    done = run_job(create_job(owner, connection, tables=["public.t", "public.missing"]).pk)
    queued = create_job(owner, connection, tables=["public.t"])
    return {"connection": connection, "done": done, "queued": queued}
