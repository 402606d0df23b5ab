"""A loopback server that answers each connection with exactly the bytes a test scripted: a valid response, a
response no framework would write (a bad status line, a header of arbitrary bytes, a body cut short), or garbage.

Each connection reads one request (head and ``Content-Length`` body), writes its answer chunk by chunk and closes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

Chunks = Sequence[bytes]


@dataclass
class RawServer:
    """Answers connection *n* with ``script[n]`` (``default`` once the script ran out); records every request."""

    url: str = ""
    script: list[Chunks] = field(default_factory=list)
    default: Chunks = (b"HTTP/1.1 204 No Content\r\n\r\n",)
    requests: list[bytes] = field(default_factory=list)

    def answer(self, *answers: Chunks) -> None:
        """Replace the script: these answers, in order, to the next connections."""
        self.script = list(answers)
        self.requests.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            fields = [line.split(b":", 1) for line in head.split(b"\r\n")[1:] if b":" in line]
            length = next((int(value) for name, value in fields if name.lower() == b"content-length"), 0)
            self.requests.append(head + await reader.readexactly(length))
            for chunk in self.script.pop(0) if self.script else self.default:
                writer.write(chunk)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # the client gave up first: nothing to answer
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


@contextlib.asynccontextmanager
async def raw_server(path: str = "/") -> AsyncIterator[RawServer]:
    """A :class:`RawServer` on a free loopback port; ``url`` ends with ``path``."""
    raw = RawServer()
    server = await asyncio.start_server(raw._handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    raw.url = f"http://127.0.0.1:{port}{path}"
    try:
        yield raw
    finally:
        server.close()
        await server.wait_closed()


def response(status: int | bytes, headers: Sequence[tuple[bytes, bytes]], body: bytes, *, length: bool = True) -> bytes:
    """An HTTP/1.1 response: status (a number, or a whole status line of any bytes), headers as given, the body, and a
    ``Content-Length`` unless ``length`` is False (then the body runs to the close)."""
    line = status if isinstance(status, bytes) else f"HTTP/1.1 {status} Whatever".encode()
    fields = [*headers, *([(b"Content-Length", str(len(body)).encode())] if length else [])]
    return line + b"\r\n" + b"".join(name + b": " + value + b"\r\n" for name, value in fields) + b"\r\n" + body
