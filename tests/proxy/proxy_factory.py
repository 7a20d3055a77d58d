"""Message builders for the proxy tests: wire text parsed by the real parser."""

from __future__ import annotations

from collections.abc import Sequence

from sipsca.proxy.route import is_myself_factory
from sipsca.sip.message import SipRequest, SipResponse, make_response
from sipsca.sip.parser import parse_message

PROXY_HOST = "proxy.example.com"
PROXY_IP = "10.0.0.10"
UA_VIA = "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKua1;rport"

# Our names: the IP on 5060 (UDP/TCP) and 5061 (TLS), the domain served.
is_myself = is_myself_factory(
    [(PROXY_IP, 5060), (PROXY_IP, 5061), (PROXY_HOST, None), ("example.com", None)]
)


def request(
    method: str = "INVITE",
    uri: str = "sip:bob@example.com",
    *,
    vias: Sequence[str] = (UA_VIA,),
    to: str = "<sip:bob@example.com>",
    from_: str = '"Alice" <sip:alice@example.com>;tag=a1',
    call_id: str = "call-1@192.0.2.1",
    cseq: int = 1,
    max_forwards: int | None = 70,
    extra: Sequence[tuple[str, str]] = (),
    body: bytes = b"",
) -> SipRequest:
    lines = [f"{method} {uri} SIP/2.0"]
    lines += [f"Via: {v}" for v in vias]
    if max_forwards is not None:
        lines.append(f"Max-Forwards: {max_forwards}")
    lines += [
        f"To: {to}",
        f"From: {from_}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {method}",
    ]
    lines += [f"{name}: {value}" for name, value in extra]
    lines.append(f"Content-Length: {len(body)}")
    data = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
    msg = parse_message(data)
    assert isinstance(msg, SipRequest)
    return msg


def response(
    req: SipRequest,
    status: int,
    *,
    to_tag: str | None = "b1",
    extra: Sequence[tuple[str, str]] = (),
) -> SipResponse:
    """A downstream response to ``req`` as the context sees it (our Via already stripped)."""
    return make_response(req, status, to_tag=to_tag, extra=list(extra))
