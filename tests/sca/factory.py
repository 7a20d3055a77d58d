"""Realistic SIP messages for the SCA engine tests (h2's FrameFactory idea).

Everything is written as wire text and parsed with :func:`sipsca.sip.parse_message`, so the
tests exercise the same parsing a real phone's message goes through. The cast:

* the shared line ``sip:1000@example.com`` with phones A, B, C
  (Contacts ``sip:1000@192.0.2.10:5060``, ``.11``, ``.12``);
* Bob, a remote party on ``example.com`` (Contact ``sip:bob@198.51.100.7``);
* Carol, an outside caller behind a carrier (Contact ``sip:carol@203.0.113.9:5060``).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from sipsca.sip import SipRequest, SipResponse, parse_message

AOR = "sip:1000@example.com"
DOMAIN = "example.com"
PREFIX = "<sip:example.com>"
WILDCARD = "<sip:example.com>;appearance-index=*;appearance-state=idle"


@dataclass(frozen=True)
class Party:
    """A SIP endpoint: its address-of-record, display name (as written) and Contact."""

    name: str
    uri: str
    contact: str
    display: str = ""

    @property
    def name_addr(self) -> str:
        return f"{self.display} <{self.uri}>" if self.display else f"<{self.uri}>"

    @property
    def host(self) -> str:
        return self.contact.split("@", 1)[1]


A = Party("A", AOR, "sip:1000@192.0.2.10:5060")
B = Party("B", AOR, "sip:1000@192.0.2.11:5060")
C = Party("C", AOR, "sip:1000@192.0.2.12:5060")
BOB = Party("Bob", "sip:bob@example.com", "sip:bob@198.51.100.7", '"Bob"')
CAROL = Party("Carol", "sip:carol@carrier.net", "sip:carol@203.0.113.9:5060", '"Carol"')
PHONES = (A, B, C)


def sdp(
    direction: str | None = "sendrecv",
    *,
    zero: bool = False,
    session_level: bool = False,
    port: int = 40000,
) -> str:
    """An audio offer/answer. ``zero``: ``c=IN IP4 0.0.0.0``; ``session_level``: the
    direction attribute before the ``m=`` line instead of after it."""
    address = "0.0.0.0" if zero else "192.0.2.99"
    lines = ["v=0", "o=- 1000 1 IN IP4 192.0.2.99", "s=-", f"c=IN IP4 {address}", "t=0 0"]
    if session_level and direction:
        lines.append(f"a={direction}")
    lines += [f"m=audio {port} RTP/AVP 0", "a=rtpmap:0 PCMU/8000"]
    if direction and not session_level:
        lines.append(f"a={direction}")
    return "\r\n".join(lines) + "\r\n"


@dataclass
class SubDialog:
    """A phone's subscription dialog as the phone sees it."""

    phone: Party
    event: str
    call_id: str
    from_tag: str
    to_tag: str = ""
    cseq: int = 0

    def accept(self, reply: SipResponse) -> None:
        """Learn the notifier's tag from a 2xx (what the phone does)."""
        if 200 <= reply.status < 300 and not self.to_tag:
            self.to_tag = reply.to.tag or ""


@dataclass
class Call:
    """An INVITE dialog: ``caller`` sent the initial INVITE to ``callee``.

    ``answerer`` is the Contact of the phone that answered (for calls to the line);
    ``cseq`` counts per direction.
    """

    call_id: str
    caller: Party
    callee: Party
    from_tag: str
    ruri: str
    to_tag: str = ""
    early_tag: str = ""
    answerer: str = ""
    cseqs: dict[str, int] = field(default_factory=lambda: {"caller": 0, "callee": 0})

    def contact_of(self, side: str) -> str:
        if side == "caller":
            return self.caller.contact
        return self.answerer or self.callee.contact


class MessageFactory:
    """Builds requests and responses; every identifier is deterministic."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)

    def _next(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids)}"

    # -- SUBSCRIBE ---------------------------------------------------------------------

    def new_sub(self, phone: Party, event: str = "call-info") -> SubDialog:
        return SubDialog(
            phone=phone,
            event=event,
            call_id=self._next(f"{event}-{phone.name.lower()}-"),
            from_tag=self._next(f"{phone.name.lower()}s"),
        )

    def subscribe(
        self,
        sub: SubDialog,
        *,
        expires: int | None = 3600,
        call_info: str | None = None,
        record_route: tuple[str, ...] = (),
        event: str | None = None,
        to_uri: str | None = None,
        ruri: str = AOR,
        contact: str | None = None,
        omit: tuple[str, ...] = (),
        extra: tuple[tuple[str, str], ...] = (),
    ) -> SipRequest:
        """SUBSCRIBE in ``sub``'s dialog (out-of-dialog while ``sub.to_tag`` is empty)."""
        sub.cseq += 1
        phone = sub.phone
        to = f"<{to_uri or AOR}>" + (f";tag={sub.to_tag}" if sub.to_tag else "")
        headers = [
            ("Via", f"SIP/2.0/UDP {phone.host};branch=z9hG4bK{self._next('s')};rport"),
            ("Max-Forwards", "70"),
            ("From", f"<{AOR}>;tag={sub.from_tag}"),
            ("To", to),
            ("Call-ID", sub.call_id),
            ("CSeq", f"{sub.cseq} SUBSCRIBE"),
            ("Contact", contact if contact is not None else f"<{phone.contact}>"),
            ("Event", event if event is not None else sub.event),
        ]
        if expires is not None:
            headers.append(("Expires", str(expires)))
        if call_info is not None:
            headers.append(("Call-Info", call_info))
        for route in record_route:
            headers.append(("Record-Route", route))
        headers += list(extra)
        headers.append(("User-Agent", f"test-phone{phone.name}"))
        headers = [(n, v) for n, v in headers if n not in omit]
        return _request("SUBSCRIBE", ruri, headers)

    def line_seize(self, sub: SubDialog, index: int | str = 0, **kw: object) -> SipRequest:
        kw.setdefault("expires", 15)
        kw.setdefault("call_info", f"{PREFIX};appearance-index={index}")
        return self.subscribe(sub, **kw)  # type: ignore[arg-type]

    # -- INVITE dialogs ----------------------------------------------------------------

    def new_call(
        self,
        caller: Party,
        callee: Party,
        *,
        ruri: str | None = None,
        call_id: str | None = None,
        from_tag: str | None = None,
    ) -> Call:
        return Call(
            call_id=call_id or self._next(f"call-{caller.name.lower()}-"),
            caller=caller,
            callee=callee,
            from_tag=from_tag or self._next(f"{caller.name.lower()}t"),
            ruri=ruri or callee.uri,
        )

    def request(
        self,
        method: str,
        call: Call,
        *,
        by: str = "caller",
        body: str | None = None,
        call_info: str | None = None,
        extra: tuple[tuple[str, str], ...] = (),
        cseq: int | None = None,
        with_contact: bool = True,
    ) -> SipRequest:
        """A request of ``call`` sent by its ``caller`` or ``callee`` side.

        An INVITE without a To-tag in ``call`` is the initial INVITE; CANCEL reuses the
        INVITE's CSeq number (pass ``cseq``).
        """
        if by == "caller":
            sender, receiver = call.caller, call.callee
            from_hdr = f"{sender.name_addr};tag={call.from_tag}"
            to_hdr = receiver.name_addr + (f";tag={call.to_tag}" if call.to_tag else "")
            uri = call.contact_of("callee") if call.to_tag else call.ruri
            contact = sender.contact
        else:
            sender, receiver = call.callee, call.caller
            from_hdr = f"{sender.name_addr};tag={call.to_tag}"
            to_hdr = f"{receiver.name_addr};tag={call.from_tag}"
            uri = call.caller.contact
            contact = call.contact_of("callee")
        if cseq is None:
            call.cseqs[by] += 1
            cseq = call.cseqs[by] if by == "caller" else 100 + call.cseqs[by]
        host = contact.split("@", 1)[-1]
        headers = [
            ("Via", f"SIP/2.0/UDP {host};branch=z9hG4bK{self._next('c')};rport"),
            ("Max-Forwards", "70"),
            ("From", from_hdr),
            ("To", to_hdr),
            ("Call-ID", call.call_id),
            ("CSeq", f"{cseq} {method}"),
        ]
        if with_contact and method not in ("CANCEL",):
            headers.append(("Contact", f"<{contact}>"))
        if call_info is not None:
            headers.append(("Call-Info", call_info))
        headers += list(extra)
        if body is not None:
            headers.append(("Content-Type", "application/sdp"))
        return _request(method, uri, headers, body or "")

    def invite(
        self,
        call: Call,
        *,
        by: str = "caller",
        body: str | None = None,
        call_info: str | None = None,
        extra: tuple[tuple[str, str], ...] = (),
    ) -> SipRequest:
        """Initial INVITE (no To-tag yet) or re-INVITE; SDP sendrecv unless ``body`` given.

        Pass ``body=""`` for an INVITE without SDP (Polycom's music-on-hold re-INVITE).
        """
        if body is None:
            body = sdp()
        return self.request(
            "INVITE", call, by=by, body=body or None, call_info=call_info, extra=extra
        )

    def ack(self, call: Call, *, by: str = "caller", body: str | None = None) -> SipRequest:
        return self.request(
            "ACK", call, by=by, body=body, cseq=call.cseqs[by] + (0 if by == "caller" else 100)
        )

    def bye(self, call: Call, *, by: str = "caller", call_info: str | None = None) -> SipRequest:
        return self.request("BYE", call, by=by, call_info=call_info)

    def cancel(self, call: Call, invite: SipRequest) -> SipRequest:
        cancel = self.request("CANCEL", call, cseq=invite.cseq.number)
        cancel.headers.set("Via", invite.headers.get("via") or "")
        return cancel

    def response(
        self,
        request: SipRequest,
        status: int,
        *,
        call: Call | None = None,
        to_tag: str | None = None,
        contact: str | None = None,
        call_info: str | None = None,
        body: str | None = None,
        reason: str | None = None,
    ) -> SipResponse:
        """A response to ``request``. With ``call``, a To-tag is taken from / stored in it."""
        tag = to_tag
        if call is not None and status > 100 and not request.to_tag:
            # One remote tag per call unless the test names another (a fork).
            if tag is None:
                tag = call.early_tag or self._next("rt")
            call.early_tag = call.early_tag or tag
            if 200 <= status < 300 and request.method == "INVITE":
                call.to_tag = tag
        elif call is not None and status > 100:
            tag = tag or call.to_tag
        to_value = request.headers.get("to") or ""
        if tag and ";tag=" not in to_value:
            to_value += f";tag={tag}"
        headers = [
            ("Via", request.headers.get("via") or ""),
            ("From", request.headers.get("from") or ""),
            ("To", to_value),
            ("Call-ID", request.call_id),
            ("CSeq", request.headers.get("cseq") or ""),
        ]
        if contact is not None:
            headers.append(("Contact", f"<{contact}>"))
        if call_info is not None:
            headers.append(("Call-Info", call_info))
        if body is not None:
            headers.append(("Content-Type", "application/sdp"))
        text = f"SIP/2.0 {status} {reason or _REASONS.get(status, 'Reason')}"
        message = parse_message(_encode(text, headers, body or ""))
        assert isinstance(message, SipResponse)
        return message


_REASONS = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    200: "OK",
    202: "Accepted",
    302: "Moved Temporarily",
    401: "Unauthorized",
    404: "Not Found",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    491: "Request Pending",
    503: "Service Unavailable",
    603: "Decline",
}


def _encode(start: str, headers: list[tuple[str, str]], body: str) -> bytes:
    lines = [start] + [f"{n}: {v}" for n, v in headers]
    lines.append(f"Content-Length: {len(body.encode())}")
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


def _request(method: str, uri: str, headers: list[tuple[str, str]], body: str = "") -> SipRequest:
    message = parse_message(_encode(f"{method} {uri} SIP/2.0", headers, body))
    assert isinstance(message, SipRequest)
    return message
