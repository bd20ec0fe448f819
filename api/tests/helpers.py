"""Small helpers of the API tests."""

import json


def body(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


def post_json(client, url, data, **headers):
    return client.post(url, json.dumps(data), content_type="application/json", **headers)


def error_of(response) -> dict:
    """The {"code", "message", "field"} of an error answer (which must have that shape)."""
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    data = json.loads(body(response))
    assert set(data) == {"error"} and set(data["error"]) == {"code", "message", "field"}, data
    assert "Traceback" not in data["error"]["message"]
    return data["error"]
