"""What a safe object key is: the one rule every store, manifest and API route applies.

A key names an object under a location's prefix on any store, so it must mean
the same thing on a file system and in a bucket: no empty, '.' or '..'
segments, no leading or trailing '/', no control characters, valid UTF-8,
at most 1 KiB (S3's limit).
"""

from __future__ import annotations

MAX_KEY_BYTES = 1024


def key_problem(key: str) -> str | None:
    """Why key is not a safe object key, or None if it is."""
    if not key:
        return "empty key"
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        return f"key longer than {MAX_KEY_BYTES} UTF-8 bytes"
    if any(ord(c) < 32 or ord(c) == 127 for c in key):
        return "key contains a NUL or control character"
    if key.startswith("/"):
        return "key starts with '/'"
    if key.endswith("/"):
        return "key ends with '/' (a folder, not an object)"
    for segment in key.split("/"):
        if segment in ("..", "."):
            return f"key has a {segment!r} segment"
        if not segment:
            return "key has an empty segment ('//')"
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        return "key is not valid UTF-8"
    return None
