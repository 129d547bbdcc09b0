"""The relay canary under a flood: bounded memory, bounded connections, tokens still arrive."""

from __future__ import annotations

import asyncio
import gc
import tracemalloc

import pytest

from rolecall.probes.active.canary import Canary


async def _knock(canary: Canary, data: bytes) -> None:
    """Connect to the canary, send data and close."""
    _, writer = await asyncio.open_connection(canary.bind, canary.port)
    writer.write(data)
    await writer.drain()
    writer.close()
    await writer.wait_closed()


async def _growth_over(canary: Canary, connections: int) -> int:
    """Return how many bytes the process holds more after that many canary connections."""
    for _ in range(200):  # warm the event loop's own caches first
        await _knock(canary, b"no token here\r\n")
    await asyncio.sleep(0.2)
    gc.collect()
    before, _ = tracemalloc.get_traced_memory()
    for _ in range(connections):
        await _knock(canary, b"no token here\r\n")
    await asyncio.sleep(0.2)
    gc.collect()
    after, _ = tracemalloc.get_traced_memory()
    return after - before


def test_many_connections_do_not_grow_the_canarys_memory() -> None:
    """3000 connections without a token leave nothing behind (no list of arrivals)."""

    async def flood() -> int:
        canary = Canary("127.0.163.1", read_timeout=1.0)
        await canary.start()
        try:
            return await _growth_over(canary, 3000)
        finally:
            await canary.close()

    tracemalloc.start()
    try:
        growth = asyncio.run(flood())
    finally:
        tracemalloc.stop()
    assert growth < 64 * 1024


async def _still_open(reader: asyncio.StreamReader) -> bool:
    """Return whether the canary keeps this connection open (nothing to read, no close)."""
    try:
        async with asyncio.timeout(0.3):
            await reader.read(1)
    except TimeoutError:
        return True
    return False


def test_connections_past_the_cap_are_closed_unread_and_tokens_still_arrive() -> None:
    """With 4 silent connections held, a fifth is closed at once; after them a token arrives."""

    async def flood() -> tuple[list[bool], bytes, bool]:
        canary = Canary("127.0.163.2", read_timeout=5.0, max_connections=4)
        await canary.start()
        try:
            held = [await asyncio.open_connection(canary.bind, canary.port) for _ in range(4)]
            await asyncio.sleep(0.1)
            extra_reader, extra_writer = await asyncio.open_connection(canary.bind, canary.port)
            async with asyncio.timeout(1.0):
                closed = await extra_reader.read(1)
            extra_writer.close()
            open_now = [await _still_open(reader) for reader, _ in held]
            for _, writer in held:
                writer.close()
            await asyncio.sleep(0.1)
            token = canary.new_token()
            await _knock(canary, token.encode("ascii") + b"\r\n")
            return open_now, closed, await canary.arrived(token, 2.0)
        finally:
            await canary.close()

    open_now, closed, arrived = asyncio.run(flood())
    assert open_now == [True] * 4
    assert closed == b""
    assert arrived


@pytest.mark.parametrize("max_connections", [1, 2])
def test_a_token_arrives_at_a_canary_of_few_connections(max_connections: int) -> None:
    """The cap never stops the one relay a probe has in flight."""

    async def relay() -> bool:
        canary = Canary("127.0.163.3", read_timeout=2.0, max_connections=max_connections)
        await canary.start()
        try:
            token = canary.new_token()
            await _knock(canary, b"GET /" + token.encode("ascii") + b" HTTP/1.1\r\n")
            return await canary.arrived(token, 2.0)
        finally:
            await canary.close()

    assert asyncio.run(relay())
