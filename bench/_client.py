"""A keep-alive HTTP/1.1 client on raw asyncio streams, for the benches' load.

The benches share two cores with the servers they measure, so the client's own CPU per request
is taken from the server's. httpx spends ~1.9 ms of CPU per booking POST (bench/bookings.py's
`client` column, round 7), as much as half of what `serve` spends on the booking; this client
writes the request bytes and reads the status line, the headers and the body, ~0.1-0.2 ms.
It speaks only what the benches need: one request at a time per connection, a Content-Length
or chunked body in the answer, no redirects, no TLS.
"""

from __future__ import annotations

import asyncio
from types import TracebackType


class KeepAlive:
    """One keep-alive connection to ``host``:``port``, opened on first use."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def request(
        self, method: str, target: str, body: bytes | None = None, *, json: bool = True
    ) -> tuple[int, bytes]:
        """The answer's status and body. A kept connection that the server closed while it was
        idle (uvicorn's keep-alive timeout, 5 s: a bench under valgrind can pause that long
        between its phases) is opened again and the request sent once more, as HTTP clients
        do: no byte of an answer came, so the server never read the request."""
        head = f"{method} {target} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
        if body is not None:
            kind = "application/json" if json else "application/octet-stream"
            head += f"Content-Type: {kind}\r\nContent-Length: {len(body)}\r\n"
        request = head.encode() + b"\r\n" + (body or b"")
        kept = self._streams is not None
        reader = await self._send(request)
        try:
            answer = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionResetError) as error:
            if not kept or (isinstance(error, asyncio.IncompleteReadError) and error.partial):
                raise
            await self.aclose()
            reader = await self._send(request)
            answer = await reader.readuntil(b"\r\n\r\n")
        status = int(answer[9:12])
        length, chunked, closing = 0, False, False
        for line in answer.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"connection":
                closing = b"close" in value.lower()
        if chunked:
            parts = []
            while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
                parts.append(await reader.readexactly(size + 2))
            await reader.readuntil(b"\r\n")
            content = b"".join(part[:-2] for part in parts)
        else:
            content = await reader.readexactly(length)
        if closing:
            await self.aclose()
        return status, content

    async def _send(self, request: bytes) -> asyncio.StreamReader:
        if self._streams is None:
            self._streams = await asyncio.open_connection(self.host, self.port)
        reader, writer = self._streams
        writer.write(request)
        return reader

    async def aclose(self) -> None:
        if self._streams is not None:
            writer = self._streams[1]
            self._streams = None
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass

    async def __aenter__(self) -> KeepAlive:
        return self

    async def __aexit__(
        self,
        _type: type[BaseException] | None,
        _error: BaseException | None,
        _trace: TracebackType | None,
    ) -> None:
        await self.aclose()
