"""Where each tenant's API jobs may read and write.

A tenant owns ``<GPUFLEET_INPUT>/<tenant>/`` and ``<GPUFLEET_OUTPUT>/<tenant>/``,
plus the prefixes an operator grants it in GPUFLEET_API_LOCATIONS
(``tenant=location``, comma-separated), which it may read and write. A
location given relative (``photos/``, ``manifests/m.csv``) lies under the
tenant's own input (or output) root. Nothing outside is read or written
through the API: manifests, items, inputs and outputs alike. Refusals name
no other tenant's location and none of the deployment's.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from urllib.parse import urlsplit

from gpufleet.api.keys import check_tenant
from gpufleet.config import Settings
from gpufleet.errors import ConfigError
from gpufleet.keys import key_problem


def parse_grants(text: str) -> dict[str, tuple[str, ...]]:
    """GPUFLEET_API_LOCATIONS: ``alpha=s3://shared/alpha/,beta=file:///data/beta/``."""
    grants: dict[str, list[str]] = defaultdict(list)
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        tenant, sep, uri = entry.partition("=")
        if not sep or not uri.strip():
            raise ConfigError(f"GPUFLEET_API_LOCATIONS: {entry!r} should read tenant=location, "
                              "e.g. alpha=s3://bucket/alpha/")
        grants[check_tenant(tenant.strip())].append(_folder(uri.strip()))
    return {tenant: tuple(uris) for tenant, uris in grants.items()}


def _folder(uri: str) -> str:
    return uri if uri.endswith("/") else uri + "/"


class TenantLocations:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.grants = parse_grants(settings.server.locations)
        self._input = _folder(settings.input)
        self._output = _folder(settings.output)

    def roots(self, tenant: str) -> dict[str, tuple[str, ...]]:
        """The tenant's own locations: what it may read (input) and write (output)."""
        granted = self.grants.get(tenant, ())
        return {"input": (f"{self._input}{tenant}/", *granted),
                "output": (f"{self._output}{tenant}/", *granted)}

    def resolve(self, tenant: str, uri: str | None, *, what: str, use: str) -> str:
        """The location named by uri (relative to the tenant's root of ``use``, input or
        output; None or ".": that root), if the tenant may use it; ConfigError if not."""
        roots = self.roots(tenant)[use]
        if uri is None or uri.rstrip("/") in ("", "."):
            return self._normal(roots[0])
        parts = urlsplit(uri)
        if not parts.scheme and not uri.startswith("/"):
            problem = key_problem(uri.rstrip("/"))
            if problem:
                raise ConfigError(f"{what} {uri!r}: {problem}")
            uri = roots[0] + uri
        elif any(segment in (".", "..") for segment in parts.path.split("/")):
            raise ConfigError(f"{what} {uri!r}: '.' and '..' segments are refused")
        found = self._normal(uri)
        if any(found.startswith(self._normal(root)) for root in roots):
            return found
        raise ConfigError(f"{what} {uri!r} is not one of this tenant's locations: give a "
                          f"path relative to its {use} location, or one an operator granted "
                          "(GPUFLEET_API_LOCATIONS)")

    def shown(self, tenant: str, uri: str, *, use: str) -> str:
        """A location as the tenant sees it: relative to its own root when under it
        ("." for the root), so a job view tells nothing of the deployment's paths."""
        root = self._normal(self.roots(tenant)[use][0])
        if not uri.startswith(root):
            return uri
        return uri[len(root):] or "."

    @staticmethod
    def _normal(uri: str) -> str:
        """The URI open_location would give, without opening a store."""
        parts = urlsplit(uri)
        if parts.scheme == "s3":
            if not parts.netloc or "?" in uri or "#" in uri:
                raise ConfigError(f"{uri!r}: expected s3://bucket/prefix/")
            return f"s3://{parts.netloc}/{_folder(parts.path).lstrip('/')}"
        if parts.scheme in ("", "file"):
            path = (parts.path if parts.scheme else uri) or "/"
            return _folder(Path(path).expanduser().resolve().as_uri())
        raise ConfigError(f"unsupported location {uri!r}: expected file:///path/ or "
                          "s3://bucket/prefix/")
