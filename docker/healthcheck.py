"""The container's HEALTHCHECK: GET /healthz on the local gunicorn; exit 0 when it answers 200.

It sends a Host header the portal accepts (the first of ADU_ALLOWED_HOSTS), since Django
refuses any other with 400.
"""

import os
import sys
import urllib.error
import urllib.request

# The port gunicorn binds (adu_site/gunicorn.conf.py reads the same variable).
PORT = os.environ.get("ADU_BIND", "0.0.0.0:8000").rpartition(":")[2]


def main() -> int:
    hosts = [h.strip() for h in os.environ.get("ADU_ALLOWED_HOSTS", "localhost").split(",")]
    host = next((h.lstrip(".") for h in hosts if h and h != "*"), "localhost")
    request = urllib.request.Request(f"http://127.0.0.1:{PORT}/healthz", headers={"Host": host})
    try:
        with urllib.request.urlopen(request, timeout=8) as response:
            print(response.read().decode())
            return 0
    except urllib.error.HTTPError as error:
        print(error.read().decode())
    except OSError as error:
        print(f"no answer: {error}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
