"""Server-side TLS on an accepted TCP connection, run by the connection's own protocol.

asyncio's ``create_server(ssl=...)`` tells the protocol nothing until the handshake is
done and nothing at all when it fails, so handshakes in flight could not be counted
against ``max_connections``; ``loop.start_tls`` on the accepted connection races uvloop's
first read. Here the protocol owns the TCP connection from the accept and feeds its bytes
through an ``ssl.SSLObject`` over memory BIOs (the mechanism asyncio's own SSL transport
uses), so it sees the handshake start, end and fail (docs/decisions.md 39).
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Protocol

__all__ = ["StreamTransport", "TlsServerTransport"]

_READ_CHUNK = 65536


class StreamTransport(Protocol):
    """What a stream connection's protocol writes SIP to: asyncio's transport, or TLS."""

    def write(self, data: bytes) -> None: ...
    def close(self) -> None: ...
    def abort(self) -> None: ...
    def is_closing(self) -> bool: ...
    def get_write_buffer_size(self) -> int: ...
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...


class TlsServerTransport:
    """The TLS session of one accepted connection, and the transport its protocol writes
    SIP to once the handshake is done (the subset of ``asyncio.Transport`` the stream
    protocol uses)."""

    def __init__(self, raw: asyncio.Transport, context: ssl.SSLContext) -> None:
        self.raw = raw
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._session = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self.established = False
        self.peer_closed = False
        """The peer sent close_notify: nothing more will come, the connection should close."""

    def receive(self, data: bytes) -> bytes:
        """Feed TLS records from the peer; the application bytes they carried (none while
        the handshake goes on). Raises ``ssl.SSLError`` when the peer breaks TLS."""
        self._incoming.write(data)
        try:
            if not self.established:
                try:
                    self._session.do_handshake()
                except ssl.SSLWantReadError:
                    return b""
                self.established = True
            chunks = []
            while True:
                try:
                    chunk = self._session.read(_READ_CHUNK)
                except ssl.SSLWantReadError:
                    break
                except ssl.SSLZeroReturnError:
                    self.peer_closed = True
                    break
                if not chunk:  # b"": the peer's close_notify (no data is SSLWantReadError)
                    self.peer_closed = True
                    break
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            self._flush()  # handshake messages, alerts, session tickets

    def _flush(self) -> None:
        pending = self._outgoing.read()
        if pending and not self.raw.is_closing():
            self.raw.write(pending)

    def write(self, data: bytes) -> None:
        if self.raw.is_closing():
            return
        try:
            self._session.write(data)
        except ssl.SSLError:
            self.raw.abort()
            return
        self._flush()

    def close(self) -> None:
        """close_notify, then close the TCP connection once its output is sent."""
        if self.established and not self.raw.is_closing():
            try:
                self._session.unwrap()
            except ssl.SSLError:  # SSLWantReadError: the peer's close_notify is not awaited
                pass
            self._flush()
        self.raw.close()

    def abort(self) -> None:
        self.raw.abort()

    def is_closing(self) -> bool:
        return self.raw.is_closing()

    def get_write_buffer_size(self) -> int:
        return self.raw.get_write_buffer_size()

    def pause_reading(self) -> None:
        self.raw.pause_reading()

    def resume_reading(self) -> None:
        self.raw.resume_reading()
