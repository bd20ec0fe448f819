"""Start-up: a bad variable stops with one sentence; production settings pass check --deploy."""

import os
import subprocess
import sys

from cryptography.fernet import Fernet

from tests.factories import ROOT, manage


def test_malformed_fernet_keys_stop_startup_with_one_sentence(tmp_path):
    result = manage(tmp_path, "check", ADU_FERNET_KEYS="not-a-key,also-bad")
    assert result.returncode == 2
    assert "ADU_FERNET_KEYS" in result.stderr
    assert "Traceback" not in result.stderr
    assert "not-a-key" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("ADU cannot start: ADU_FERNET_KEYS")


def test_malformed_database_url_stops_startup_with_one_sentence(tmp_path):
    result = manage(tmp_path, "check", ADU_DATABASE_URL="mysqlish://u:secretpw@h:notaport/db")
    assert result.returncode == 2
    assert "ADU_DATABASE_URL" in result.stderr
    assert "Traceback" not in result.stderr
    assert "secretpw" not in result.stderr


def test_first_run_generates_keys_into_var_with_a_warning(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADU_")}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env={**env, "ADU_VAR_DIR": str(tmp_path / "var")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "Generated" in result.stderr
    assert (tmp_path / "var" / "secret_key").stat().st_mode & 0o777 == 0o600
    Fernet((tmp_path / "var" / "fernet_keys").read_text().strip())


def test_production_settings_pass_check_deploy(tmp_path):
    result = manage(
        tmp_path,
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        ADU_SECRET_KEY="k3Xq9-vLp2_Zr8sW4tYb6nM1cD0fGhJ5aE7uQiOo" * 2,
        ADU_FERNET_KEYS=f"{Fernet.generate_key().decode()},{Fernet.generate_key().decode()}",
        ADU_ALLOWED_HOSTS="adu.example.internal",
        ADU_DEBUG="false",
        ADU_HTTPS="true",
        ADU_DATABASE_URL=f"sqlite:///{tmp_path}/prod.sqlite3",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout
