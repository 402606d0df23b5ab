"""Fuzz broker/stream.py ``_Lines``, the SSE reader, against a model of what it must do with any bytes.

The byte stream is arbitrary (invalid UTF-8, lone and doubled ``\\r``, comments, every field, lines past the size
limit, a cut last line) and arrives in arbitrary chunks. The model splits the whole stream on ``\\n`` at once and
frames it; the reader must agree with it whatever the chunking: the same messages in the same order (one ``\\r``
before the ``\\n`` removed, anything not UTF-8 as U+FFFD, ``id:`` and ``retry:`` ignored), comments to
``on_comment`` in their place among them, each over-long line reported once with its head, length and hash and
never read, a cut last line never read (and counted when the body ended cleanly), and then only ``StreamClosed``.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from unittest.mock import patch

import aiohttp
from aiohttp.http_exceptions import HttpProcessingError
from hypothesis import given, settings
from hypothesis import strategies as st

from broker import stream
from broker.stream import Message, Oversized, StreamClosed, _Lines
from tests.fuzz.mutate import Draw
from tests.fuzz.profiles import examples

SMALL_LIMIT, SMALL_HEAD = 64, 16
"""The line limit and dead-letter head most examples run with, so that lines past the limit are cheap to make."""
FIELDS = (b"data:", b"data: ", b"id: ", b"event: ", b"retry: ", b":", b": ", b"foo: ", b"data", b"", b"\xef\xbb\xbf")
CONTENT = st.one_of(
    st.binary(max_size=20),
    st.text(max_size=12).map(str.encode),
    st.sampled_from([b"\r", b"\r\r", b"\xff\xfe", b"caf\xe9", b"\xed\xa0\x80", "café".encode(), b'{"n": 1}', b"9" * 9]),
)
"""What follows a field name: bytes of any kind (lone surrogates encoded, Latin-1, a BOM), short UTF-8 text, JSON."""
ENDS = (b"\n", b"\r\n", b"\r\r\n", b"\n\n")


@st.composite
def streams(draw: st.DrawFn, limit: int) -> bytes:
    """A stream of SSE-ish lines, some longer than ``limit``, the last one maybe cut."""
    parts: list[bytes] = []
    for _ in range(draw(st.integers(0, 12))):
        if draw(st.integers(0, 7)) == 0:  # a line at, just under or past the limit
            size = draw(st.integers(limit - 3, limit + 3)) if draw(st.booleans()) else draw(st.integers(0, 3 * limit))
            parts.append(draw(st.sampled_from([b"data: ", b":", b""])) + b"x" * size)
        else:
            parts.append(draw(st.sampled_from(FIELDS)) + b"".join(draw(st.lists(CONTENT, max_size=3))))
        parts.append(draw(st.sampled_from(ENDS)))
    if draw(st.booleans()):
        parts.append(draw(CONTENT))  # a last line without its newline: cut
    return b"".join(parts)


def chunked(draw: Draw, data: bytes) -> list[bytes]:
    """``data`` cut at arbitrary points into non-empty chunks (an empty read means the end of the body)."""
    cuts = sorted(set(draw(st.lists(st.integers(1, max(len(data) - 1, 1)), max_size=8)))) if len(data) > 1 else []
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds) if data[a:b]]


@dataclass(frozen=True)
class Report:
    head: bytes
    length: int
    sha256: str


def model(data: bytes, limit: int, head: int) -> tuple[list[Any], int]:
    """What the reader must produce for ``data``: messages, comments and reports in order, and the cut-line count.

    Framing as the SSE standard says: ``data`` values joined by newlines, the last ``event`` value as the type,
    a blank line dispatches (nothing without data); other fields, ``id`` and ``retry`` included, change nothing.
    """
    *complete, rest = data.split(b"\n")
    out: list[Any] = []
    buffer: list[str] = []
    event = ""
    for line in complete:
        if len(line) > limit:
            out.append(Report(line[:head], len(line), hashlib.sha256(line).hexdigest()))
            continue
        text = line.removesuffix(b"\r").decode("utf-8", "replace")
        if not text:
            if buffer:
                out.append(Message("\n".join(buffer), event or None))
            buffer, event = [], ""
        elif text.startswith(":"):
            out.append(("comment", text[1:].strip()))
        else:
            name, _, value = text.partition(":")
            if name == "data":
                buffer.append(value.removeprefix(" "))
            elif name == "event":
                event = value.removeprefix(" ")
    return out, 1 if rest else 0


class Body:
    """A response body that hands out these chunks (one per ``readany``), then ends as ``ending`` says."""

    def __init__(self, chunks: list[bytes], ending: BaseException | None) -> None:
        self.chunks, self.ending = list(chunks), ending

    async def readany(self) -> bytes:
        if self.chunks:
            return self.chunks.pop(0)
        if self.ending is not None:
            raise self.ending
        return b""


@contextmanager
def limits(limit: int, head: int) -> Iterator[None]:
    with patch.object(stream, "MAX_LINE_BYTES", limit), patch.object(stream, "OVERSIZED_HEAD_BYTES", head):
        yield


async def split(chunks: list[bytes], ending: BaseException | None) -> tuple[list[Any], _Lines]:
    """Everything the splitter hands out for ``chunks``, in order, until it raises (which must be StreamClosed)."""
    seen: list[Any] = []

    async def on_oversized(found: Oversized) -> None:
        seen.append(Report(found.head, found.length, found.sha256))

    lines = _Lines(Body(chunks, ending), lambda text: seen.append(("comment", text)), on_oversized)  # type: ignore[arg-type]
    try:
        async for batch in lines.messages():
            assert batch, "an empty batch"
            seen.extend(batch)
    except StreamClosed:
        return seen, lines
    raise AssertionError("the messages ended without StreamClosed")


ENDINGS = st.sampled_from(
    [None, None, aiohttp.ClientPayloadError("cut"), TimeoutError(), HttpProcessingError(message="bad chunk")]
)
"""How a body ends: cleanly, or broken (a cut connection, the read watchdog, a bad chunked encoding)."""


@given(st.data(), ENDINGS)
async def test_any_bytes_in_any_chunks_split_as_the_model_says(
    data: st.DataObject, ending: BaseException | None
) -> None:
    """Lines, comments, over-long reports and the cut-line count match the model for any stream and any chunking."""
    body = data.draw(streams(SMALL_LIMIT))
    with limits(SMALL_LIMIT, SMALL_HEAD):
        seen, lines = await split(chunked(data.draw, body), ending)
    expected, cut = model(body, SMALL_LIMIT, SMALL_HEAD)
    assert seen == expected
    assert lines.truncated == (cut if ending is None else 0)  # a broken read discards its cut line uncounted


GIANT_LINES = st.tuples(
    st.lists(
        st.tuples(st.integers(stream.MAX_LINE_BYTES - 2, stream.MAX_LINE_BYTES + 2), st.sampled_from([b"\n", b"\r\n"])),
        min_size=1,
        max_size=3,
    ),
    st.none() | st.integers(0, stream.MAX_LINE_BYTES + 10),
)
"""Lines around the real limit (2 MiB) as (size, end), and the size of a cut last line or None. Only the sizes are
drawn: the megabytes are made in the test, so that Hypothesis, which keeps what it draws, never holds them."""


def giant_body(plan: tuple[list[tuple[int, bytes]], int | None]) -> bytes:
    sizes, tail = plan
    body = (
        b'data: {"n": 1}\n\n'.join(b"data: " + b"y" * (size - 6) + end for size, end in sizes) + b'data: {"n": 2}\n\n'
    )
    return body if tail is None else body + b"data: " + b"z" * tail


@settings(max_examples=examples(100))
@given(GIANT_LINES, st.lists(st.integers(1, 3 * stream.MAX_LINE_BYTES), max_size=8))
async def test_lines_around_the_real_limit_split_as_the_model_says(
    plan: tuple[list[tuple[int, bytes]], int | None], cuts: list[int]
) -> None:
    """With the real 2 MiB limit, lines just under, at and past it are yielded or reported as the model says."""
    body = giant_body(plan)
    points = sorted({cut for cut in cuts if cut < len(body)})
    seen, lines = await split([body[a:b] for a, b in itertools.pairwise([0, *points, len(body)])], None)
    expected, cut = model(body, stream.MAX_LINE_BYTES, stream.OVERSIZED_HEAD_BYTES)
    assert seen == expected
    assert lines.truncated == cut
