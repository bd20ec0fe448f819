"""Production never starts on the public placeholders of docker/adu.env.example (issue 17,
point 8f): each is refused by name, in one sentence, before anything runs."""

import pytest
from cryptography.fernet import Fernet

from tests.factories import ROOT, manage

GOOD_KEY = "k3Xq9-vLp2_Zr8sW4tYb6nM1cD0fGhJ5aE7uQiOo" * 2


def example() -> dict:
    values = {}
    for line in (ROOT / "docker" / "adu.env.example").read_text().splitlines():
        name, sep, value = line.strip().partition("=")
        if sep and not name.startswith("#"):
            values[name] = value
    return values


def production(**env):
    return {
        "ADU_DEBUG": "false",
        "ADU_SECRET_KEY": GOOD_KEY,
        "ADU_FERNET_KEYS": Fernet.generate_key().decode(),
        **env,
    }


def refused(result, named: str):
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"ADU cannot start: {named}"), last
    assert "placeholder of docker/adu.env.example" in last
    return last


def test_the_example_file_still_has_the_placeholders_these_tests_try():
    values = example()
    for name in ("ADU_SECRET_KEY", "ADU_FERNET_KEYS", "POSTGRES_PASSWORD", "REDIS_PASSWORD"):
        assert "CHANGE" in values[name].upper(), name


def test_the_example_secret_key_is_refused(tmp_path):
    secret = example()["ADU_SECRET_KEY"]
    last = refused(manage(tmp_path, "check", **production(ADU_SECRET_KEY=secret)), "ADU_SECRET_KEY")
    assert secret not in last


def test_the_example_fernet_key_is_refused_even_beside_a_real_one(tmp_path):
    keys = f"{Fernet.generate_key().decode()},{example()['ADU_FERNET_KEYS']}"
    result = manage(tmp_path, "check", **production(ADU_FERNET_KEYS=keys))
    # Today's placeholder is not even a Fernet key; a well-formed one is refused as such.
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("ADU cannot start: ADU_FERNET_KEYS")
    well_formed = "CHANGE-ME-" + Fernet.generate_key().decode()[10:]
    Fernet(well_formed)
    refused(manage(tmp_path, "check", **production(ADU_FERNET_KEYS=well_formed)), "ADU_FERNET_KEYS")


def test_the_example_database_and_redis_passwords_are_refused(tmp_path):
    values = example()
    database = f"postgres://adu:{values['POSTGRES_PASSWORD']}@postgres:5432/adu"
    refused(
        manage(tmp_path, "check", **production(ADU_DATABASE_URL=database)),
        "The password in ADU_DATABASE_URL (POSTGRES_PASSWORD)",
    )
    redis = f"redis://:{values['REDIS_PASSWORD']}@redis:6379/0"
    refused(
        manage(tmp_path, "check", **production(ADU_BROKER="redis", ADU_REDIS_URL=redis)),
        "The password in ADU_REDIS_URL (REDIS_PASSWORD)",
    )


@pytest.mark.parametrize(
    "env",
    [
        {"ADU_SECRET_KEY": "CHANGE-ME" + "x" * 60},  # half edited
        {"ADU_MASKING_KEY": "changeme-" + "y" * 40},
    ],
)
def test_anything_still_marked_change_me_is_refused(tmp_path, env):
    [name] = env
    refused(manage(tmp_path, "check", **production(**env)), name)


def test_debug_mode_and_real_secrets_start(tmp_path):
    debug = manage(
        tmp_path,
        "check",
        **production(ADU_DEBUG="true", ADU_SECRET_KEY=example()["ADU_SECRET_KEY"]),
    )
    assert debug.returncode == 0, debug.stderr
    assert manage(tmp_path, "check", **production()).returncode == 0
