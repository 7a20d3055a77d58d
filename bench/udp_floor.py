"""The floor of a Python UDP server on this machine: answer every request, parse nothing.

A uvloop datagram server that replies ``200 OK`` to each request by copying its Via, From,
To (plus a tag), Call-ID and CSeq lines. Whatever SIPp rate it sustains, and the CPU it
needs for it, is what the event loop and the syscalls alone cost; everything a real server
spends above that is SIP work. Bounded: it exits after ``--seconds``.

    .venv/bin/python bench/udp_floor.py --port 5990 --seconds 60 &
    sipp 127.0.0.1:5990 -sf bench/sipp/register.xml -inf bench/sipp/users10k.csv -i 127.0.0.1 \\
         -p 16100 -r 20000 -m 160000 -buff_size 4194304 -timeout 30s -timeout_error -nostdin
"""

from __future__ import annotations

import argparse
import asyncio
import socket

import uvloop

KEEP = (b"via:", b"from:", b"to:", b"call-id:", b"cseq:", b"v:", b"f:", b"t:", b"i:")


class Responder(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.DatagramTransport)
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        head = data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
        out = [b"SIP/2.0 200 OK"]
        for line in head[1:]:
            low = line[:9].lower()
            if low.startswith(KEEP):
                if low.startswith((b"to:", b"t:")) and b";tag=" not in line:
                    line += b";tag=floor"
                out.append(line)
        out.append(b"Content-Length: 0\r\n\r\n")
        self.transport.sendto(b"\r\n".join(out), addr)


async def serve(sock: socket.socket, seconds: float) -> None:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(Responder, sock=sock)
    try:
        await asyncio.sleep(seconds)
    finally:
        transport.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=5990)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind(("127.0.0.1", args.port))
    sock.setblocking(False)
    uvloop.run(serve(sock, args.seconds))
