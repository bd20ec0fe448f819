"""Schemathesis against the live test server: a few hundred cases generated from
/api/v1/openapi.json (valid and invalid input, wrong methods, missing auth, sequences of
calls that follow the ids one answer gives) find no server error and no answer that breaks
the document: status, content type, headers and body all as documented."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from exports.models import ExportJob

# Runs export jobs: `make test` runs it again on PostgreSQL metadata and the Redis broker.
pytestmark = pytest.mark.jobs
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
# Cases per operation and phase; with 15 operations this makes about 1,000 cases.
MAX_EXAMPLES = 8

# - createJob: the document cannot say which schemas exist on the source, which folders are
#   free, or that excluding every named table leaves nothing to export. Such a well-formed
#   body is still refused with a 400 naming the field, which this check counts as a failure
#   unless listed.
#   Its bodies name the test's connection, so that they reach create_job (random ids are
#   404s).
# - createLoad: likewise, the document cannot say which folders hold an export or which
#   connections are load targets: a well-formed body is refused with a 400 naming the field.
# - createJobBundle: a well-formed size may lie outside 64K..1024T, and the document cannot
#   say which strings are age recipients: refused with a 400 naming the field.
# - createPlan: the document cannot say which plan names are free, which cron expressions
#   and time zones exist, or which folder patterns make folder names: a well-formed body is
#   refused with a 400 naming the field. runPlan: a run is refused (400) or skipped (409)
#   by what the plan and its last job are.
# - downloadJobFile: a job and a file it lists, so that the download itself is checked
#   against the document (random ids and paths are all 404s; test_jobs.py tries those).
CONFIG = """
[[operations]]
include-operation-id = "createJob"
parameters = {{ "body.connection" = {connection_id} }}
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409", "429"]

[[operations]]
include-operation-id = "createLoad"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409", "429"]

[[operations]]
include-operation-id = "createJobBundle"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409", "429"]

[[operations]]
include-operation-id = "createPlan"
parameters = {{ "body.connection" = {connection_id} }}
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409", "429"]

[[operations]]
include-operation-id = "runPlan"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409", "429"]

[[operations]]
include-operation-id = "downloadJobFile"
parameters = {{ job_id = {job_id}, path = "{path}" }}
"""


@pytest.mark.django_db(transaction=True)
def test_schemathesis_finds_no_server_error_and_nothing_off_the_schema(
    live_server, world, owner, bearer, settings, tmp_path
):
    settings.API_RATE_PER_MINUTE = 0  # hundreds of requests in seconds are the point here
    token = bearer(owner)["HTTP_AUTHORIZATION"]
    config = tmp_path / "schemathesis.toml"
    done = world["done"]
    path = done.tables.get(table="t").files[0]["path"]
    config.write_text(
        CONFIG.format(job_id=done.pk, path=path, connection_id=world["connection"].pk)
    )
    result = subprocess.run(
        [
            str(SCHEMATHESIS), "--config-file", str(config), "run",
            f"{live_server.url}/api/v1/openapi.json",
            "--header", f"Authorization: {token}",
            "--checks", "all",
            "--max-examples", str(MAX_EXAMPLES),
            "--seed", "10",
            "--workers", "1",  # schemathesis 4.32 with 2 threads can crash in hypothesis
            "--no-shrink",
        ],
        capture_output=True, text=True, timeout=150, cwd=tmp_path,
    )  # fmt: skip
    summary = result.stdout[result.stdout.find("SUMMARY") :] or result.stdout[-4000:]
    print(summary)  # shown with -s: operations, phases and the number of cases
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
    cases = int(re.search(r"(\d+) generated", result.stdout).group(1))
    assert cases >= 200, summary
    print(f"jobs the fuzzer started: {ExportJob.objects.count() - 2}")
    assert ExportJob.objects.count() > 2  # some bodies got as far as a queued job
