"""The directory store's reads and writes on a descriptor: whole files, whatever the
size fstat gave, and never more than one byte past a limit."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpufleet.store.local import _read_fd, _write_fd

BODY = bytes(range(256)) * 12_000  # 3 MB: past one read's chunk


@pytest.fixture
def fd(tmp_path: Path) -> Iterator[int]:
    path = tmp_path / "object"
    path.write_bytes(BODY)
    descriptor = os.open(path, os.O_RDONLY)
    yield descriptor
    os.close(descriptor)


def test_a_file_is_read_whole_in_one_go(fd: int) -> None:
    assert _read_fd(fd, len(BODY), None) == BODY


def test_a_file_that_grew_since_its_size_was_taken_is_read_to_its_end(fd: int) -> None:
    # Given a size taken when the file was 10 bytes long
    assert _read_fd(fd, 10, None) == BODY


def test_a_file_that_grew_past_the_limit_is_read_one_byte_over_it(fd: int) -> None:
    # (the caller then refuses it as too large, with no more read than that)
    assert _read_fd(fd, 10, 1_000_000) == BODY[:1_000_001]


def test_a_file_that_shrank_is_what_is_left(fd: int) -> None:
    assert _read_fd(fd, len(BODY) + 500, None) == BODY


def test_an_empty_file_is_empty(tmp_path: Path) -> None:
    (tmp_path / "empty").write_bytes(b"")
    descriptor = os.open(tmp_path / "empty", os.O_RDONLY)
    try:
        assert _read_fd(descriptor, 0, 10) == b""
    finally:
        os.close(descriptor)


def test_a_write_puts_every_byte(tmp_path: Path) -> None:
    descriptor = os.open(tmp_path / "out", os.O_WRONLY | os.O_CREAT)
    try:
        _write_fd(descriptor, BODY)
    finally:
        os.close(descriptor)
    assert (tmp_path / "out").read_bytes() == BODY
