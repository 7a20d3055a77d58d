"""Message builders for the transaction tests; everything goes through the real parser."""

from __future__ import annotations

from collections.abc import Iterable

from sipsca.sip import SipRequest, SipResponse, make_response, parse_message
from sipsca.transaction import MAGIC_COOKIE

UAC_VIA = "SIP/2.0/UDP 10.0.0.1:5060"


def request(
    method: str = "OPTIONS",
    *,
    branch: str | None = MAGIC_COOKIE + "b1",
    via: str = UAC_VIA,
    via_params: str = "",
    uri: str = "sip:bob@example.com",
    call_id: str = "call-1",
    cseq: int = 1,
    cseq_method: str | None = None,
    from_tag: str = "ft1",
    to_tag: str | None = None,
    extra: Iterable[str] = (),
) -> SipRequest:
    """A parsed request; ``branch=None`` leaves the branch out (RFC 2543 style)."""
    branch_part = f";branch={branch}" if branch is not None else ""
    to = "<sip:bob@example.com>" + (f";tag={to_tag}" if to_tag else "")
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: {via}{branch_part}{via_params}",
        "Max-Forwards: 70",
        f"From: <sip:alice@example.com>;tag={from_tag}",
        f"To: {to}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {cseq_method or method}",
        *extra,
        "Content-Length: 0",
        "",
        "",
    ]
    msg = parse_message("\r\n".join(lines).encode())
    assert isinstance(msg, SipRequest)
    return msg


def response(
    req: SipRequest, status: int, *, to_tag: str | None = "tt1", reason: str | None = None
) -> SipResponse:
    """A response to ``req``, serialised and parsed again (as received from the wire)."""
    msg = parse_message(make_response(req, status, reason, to_tag=to_tag).to_bytes())
    assert isinstance(msg, SipResponse)
    return msg


def reply(req: SipRequest, status: int, *, to_tag: str | None = "tt1") -> SipResponse:
    """A response object as a TU builds it (not re-parsed)."""
    return make_response(req, status, to_tag=to_tag)


def ack_for_2xx(invite: SipRequest, ok: SipResponse, branch: str) -> SipRequest:
    """The UAC core's ACK for a 2xx: a new transaction-less request with its own branch."""
    return request(
        "ACK",
        branch=branch,
        uri=invite.uri,
        call_id=invite.call_id,
        cseq=invite.cseq.number,
        from_tag=invite.from_tag or "",
        to_tag=ok.to_tag,
        via=str(invite.top_via).split(";")[0],
    )
