"""Settings: read from GPUFLEET_* in one place; typos refused, not ignored."""

from __future__ import annotations

from pathlib import Path

import pytest

import gpufleet.errors
from gpufleet.config import Settings
from gpufleet.errors import ConfigError, GpufleetError


def test_defaults_live_under_home(tmp_path: Path) -> None:
    s = Settings.from_env({"GPUFLEET_HOME": str(tmp_path)})
    assert s.queue == f"sqlite:///{tmp_path}/queue.db"
    assert s.db == f"sqlite:///{tmp_path}/index.db"
    assert s.output == (tmp_path / "buckets/results").as_uri() + "/"


def test_values_are_coerced_to_their_types(tmp_path: Path) -> None:
    s = Settings.from_env({"GPUFLEET_HOME": str(tmp_path), "GPUFLEET_CHUNK_SIZE": "64",
                           "GPUFLEET_VISIBILITY_TIMEOUT_S": "2.5"})
    assert (s.tasks.chunk_size, s.tasks.visibility_timeout_s) == (64, 2.5)


@pytest.mark.parametrize(("env", "message"), [
    ({"GPUFLEET_CHUNKSIZE": "4"},
     "unknown setting GPUFLEET_CHUNKSIZE: did you mean GPUFLEET_CHUNK_SIZE\\?"),
    ({"GPUFLEET_WHATEVER": "4"}, "unknown setting GPUFLEET_WHATEVER; known: GPUFLEET_HOME, "),
    ({"GPUFLEET_CHUNK_SIZE": "many"}, "GPUFLEET_CHUNK_SIZE='many' is not an integer"),
    ({"GPUFLEET_CHUNK_SIZE": "0"}, "GPUFLEET_CHUNK_SIZE must be at least 1"),
    ({"GPUFLEET_VISIBILITY_TIMEOUT_S": "-1"}, "must be positive"),
])
def test_bad_settings_are_one_line_errors(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_every_problem_is_reported_at_once_one_line_each() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"GPUFLEET_MAX_RECIEVES": "3", "GPUFLEET_CHUNK_SIZE": "many",
                           "GPUFLEET_DRAIN_GRACE": "1"})
    assert str(caught.value).splitlines() == [
        "unknown setting GPUFLEET_MAX_RECIEVES: did you mean GPUFLEET_MAX_RECEIVES?",
        "GPUFLEET_CHUNK_SIZE='many' is not an integer",
        "unknown setting GPUFLEET_DRAIN_GRACE: did you mean GPUFLEET_DRAIN_GRACE_S?"]
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"GPUFLEET_CHUNK_SIZE": "0", "GPUFLEET_SSE": "rot13"})
    assert str(caught.value).splitlines() == [
        "GPUFLEET_CHUNK_SIZE must be at least 1",
        "GPUFLEET_SSE='rot13': expected AES256 or aws:kms"]


def test_every_public_error_derives_from_the_root() -> None:
    for name in gpufleet.errors.__all__:
        assert issubclass(getattr(gpufleet.errors, name), GpufleetError)
    public = {n for n, v in vars(gpufleet.errors).items()
              if isinstance(v, type) and issubclass(v, Exception)}
    assert public == set(gpufleet.errors.__all__)
