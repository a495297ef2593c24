"""NATS JetStream: an empty stream read again and again gives nothing, never an error.

nats-py ends an empty fetch in one of two ways, by chance: with its own TimeoutError or,
when the server's answer to its first probe lands as the deadline runs out, with a bare
asyncio one (about 1 fetch in 100 here). Either means "nothing yet", not "unavailable"."""

from __future__ import annotations

import asyncio
import secrets
from concurrent.futures import ThreadPoolExecutor

import nats

from gpufleet.index import Index
from gpufleet.streams.source import StreamSource, open_source
from tests.servers import NatsServer

READERS, READS = 8, 30  # 240 empty fetches: the bare timeout shows up in nearly every run


def _empty_stream(server: NatsServer) -> str:
    stream = "empty" + secrets.token_hex(4)

    async def create() -> None:
        conn = await nats.connect(server.url)
        await conn.jetstream().add_stream(name=stream, subjects=[f"{stream}.keys"])
        await conn.close()

    asyncio.run(create())
    return stream


def test_an_empty_stream_read_many_times_gives_nothing_and_no_error(
        nats_server: NatsServer, index: Index) -> None:
    stream = _empty_stream(nats_server)

    def read_often(reader: int) -> list[int]:
        source: StreamSource = open_source(f"{nats_server.url}/{stream}?durable=r{reader}",
                                           index=index, consumer=f"c{reader}")
        try:
            return [len(source.read(10, wait_s=0.2)) for _ in range(READS)]
        finally:
            source.close()

    with ThreadPoolExecutor(READERS) as pool:
        counts = [n for reads in pool.map(read_often, range(READERS)) for n in reads]
    assert counts == [0] * READERS * READS
