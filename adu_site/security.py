"""The Content-Security-Policy of every response: scripts only from ADU's own static files."""

# No 'unsafe-inline' and no 'unsafe-eval' for scripts: the pages load htmx and adu.js from
# /static/ and carry no inline script. Inline styles stay allowed for the admin's widgets
# and the progress bars' widths, which run no code.
POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


class ContentSecurityPolicy:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        response.setdefault("Content-Security-Policy", POLICY)
        return response
