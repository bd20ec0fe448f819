"""API answers that Django gives before or around the API's own views (no such URL, wrong
method, a server error) in the API's JSON error shape, never an HTML page."""

import json

PREFIX = "/api/v1/"
CODES = {
    400: "invalid_input",
    401: "not_authenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    409: "invalid_state",
    413: "too_large",
    429: "rate_limited",
}
MESSAGES = {
    404: "There is no such endpoint: see /api/v1/openapi.json.",
    405: "This endpoint does not answer to {method}; it answers to {allow}.",
}


class JsonErrors:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if (
            not request.path.startswith(PREFIX)
            or response.status_code < 400
            or response.streaming
            or response.get("Content-Type", "").startswith("application/json")
        ):
            return response
        status = response.status_code
        message = MESSAGES.get(status, "The request could not be answered ({status}).").format(
            method=request.method, allow=response.get("Allow", ""), status=status
        )
        body = {"error": {"code": CODES.get(status, "server_error" if status >= 500 else "error"),
                          "message": message, "field": None}}  # fmt: skip
        response.content = json.dumps(body).encode()
        response["Content-Type"] = "application/json"
        response.headers.pop("Content-Length", None)
        return response
