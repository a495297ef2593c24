"""One way to show a URL without its secrets, for every error message and log line."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit

# Query parameters that carry a secret in the URLs gpufleet accepts (redis-py and
# libpq read a password from the query string as well as from the user info).
_SECRET_PARAMETERS = frozenset({"password", "passwd", "secret", "token", "access_key",
                                "secret_key", "sslpassword"})


def redact_url(url: str) -> str:
    """url with any password, in the user info or the query, replaced by ``***``."""
    try:
        parts = urlsplit(url)
        password = parts.password
        query = parse_qsl(parts.query, keep_blank_values=True)
    except ValueError:
        return "<invalid URL>"
    # Edit the string rather than rebuild it: urlunsplit would turn sqlite:///x into sqlite:/x.
    shown = url
    if password is not None:
        user = parts.username or ""
        shown = shown.replace(parts.netloc, f"{user}:***@{parts.netloc.rsplit('@', 1)[1]}", 1)
    if any(key.lower() in _SECRET_PARAMETERS for key, _ in query):
        hidden = [(k, "***" if k.lower() in _SECRET_PARAMETERS else v) for k, v in query]
        shown = shown.replace("?" + parts.query, "?" + urlencode(hidden, safe="*"), 1)
    return shown
