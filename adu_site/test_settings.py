"""The settings the tests run with: ADU's own, with var/ in a folder of the run's.

The checkout's var/ is `make run`'s. ADU_VAR_DIR is set before the settings read it, so
that not even the keys they make when missing land there (conftest.py then gives each
part of the run its own folders).
"""

import atexit
import os
import shutil
import tempfile

if "ADU_VAR_DIR" not in os.environ:
    os.environ["ADU_VAR_DIR"] = tempfile.mkdtemp(prefix="adu-test-settings-")
    atexit.register(shutil.rmtree, os.environ["ADU_VAR_DIR"], True)

from adu_site.settings import *  # noqa: E402, F403

# Tests create hundreds of users: PBKDF2's million rounds (about 0.3 s each) would be a
# third of the suite's time, and no test is about the hash's strength.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
