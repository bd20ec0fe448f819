// The API page: Swagger UI (vendored in swagger-ui/) reading ADU's OpenAPI document. Started
// from this file, not an inline script, so the page keeps the site's Content-Security-Policy.
// "Try it out" calls the API with the login session: the browser sends the session cookie
// (same origin) and this adds the CSRF token that unsafe methods need.
document.addEventListener("DOMContentLoaded", function () {
  var root = document.getElementById("swagger-ui");
  if (!root || !window.SwaggerUIBundle) return;
  var SAFE = ["GET", "HEAD", "OPTIONS", "TRACE"];

  function csrfToken() {
    // The csrftoken cookie, else the token the page was rendered with (the cookie may be
    // HttpOnly).
    var match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : root.dataset.csrfToken;
  }

  window.SwaggerUIBundle({
    url: root.dataset.openapiUrl,
    domNode: root,
    deepLinking: true,
    tryItOutEnabled: false,
    // No badge from validator.swagger.io: the network is closed and the CSP would block it.
    validatorUrl: null,
    presets: [window.SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    requestInterceptor: function (request) {
      request.credentials = "same-origin";
      if (SAFE.indexOf((request.method || "GET").toUpperCase()) < 0) {
        request.headers["X-CSRFToken"] = csrfToken();
      }
      return request;
    },
  });
});
