"""Requests answered without a transaction, like Kamailio's sl: the router's fast path.

OPTIONS pings to the server itself get their 200, in-dialog requests for no dialog of
ours the sample config's ``404 Not here``, and under overload new dialog-creating
requests a 503: each built straight as bytes and handed to the transport, so nothing is
kept per request (a 200 or 503 gets a To-tag that is the same for every retransmission,
:func:`stateless_tag`). Whatever the fast path is unsure about takes the stateful
pipeline.
"""

from __future__ import annotations

import hashlib
import logging
from typing import TYPE_CHECKING

from sipsca.proxy.validate import check_request
from sipsca.runtime.trace import describe, trace, tracing
from sipsca.sip.address import Flow
from sipsca.sip.message import SipRequest, response_bytes
from sipsca.sip.validate import validate_request
from sipsca.transaction import response_destination

if TYPE_CHECKING:
    from sipsca.runtime.routing import RequestRouter

__all__ = [
    "ALLOW",
    "OVERLOAD_RETRY_AFTER",
    "SHED_METHODS",
    "SUPPORTED",
    "StatelessReplies",
    "stateless_tag",
]

ALLOW = ", ".join(
    [
        *("INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "REGISTER", "SUBSCRIBE", "NOTIFY"),
        *("PRACK", "REFER", "UPDATE", "INFO", "MESSAGE"),
    ]
)
SUPPORTED = frozenset({"path", "outbound", "replaces"})


SHED_METHODS = frozenset(("INVITE", "SUBSCRIBE", "REGISTER", "MESSAGE", "PUBLISH", "REFER"))
"""Out-of-dialog requests that start new work: shed first under overload."""
OVERLOAD_RETRY_AFTER = 5
"""Seconds in the Retry-After of an overload 503."""
# In-dialog methods the stateful pipeline handles itself: the stray ACK is absorbed, CANCEL
# matched (481), SUBSCRIBE goes to the SCA engine; other in-dialog requests to us get 404.
_OWN_IN_DIALOG = frozenset(("ACK", "CANCEL", "SUBSCRIBE"))


def stateless_tag(request: SipRequest) -> str:
    """A To-tag that is the same for retransmissions of one request (as Kamailio's sl).

    Made from the raw Call-ID, From and top Via texts (a retransmission repeats them byte
    for byte), so nothing is parsed for it.
    """
    headers = request.headers
    seed = f"{headers.get('call-id')}|{headers.get('from')}|{headers.values('via')[:1]}"
    return hashlib.blake2s(seed.encode(), digest_size=6).hexdigest()


class StatelessReplies:
    """The stateless 200 to OPTIONS, ``404 Not here`` and overload 503 of a router."""

    def __init__(self, router: RequestRouter) -> None:
        self.router = router
        self.app = router.app
        self._options_tail: str | None = None
        """The constant header lines of the stateless 200 to OPTIONS, built once."""

    def answer_statelessly(self, request: SipRequest, source: Flow) -> bool:
        """OPTIONS to the server itself, and in-dialog requests for no dialog, are answered
        without a transaction (like Kamailio's sl): a retransmission just gets the same reply
        again, and no state is kept for 32 s per ping or per stray BYE."""
        if request.headers.get("to") is None:
            return False
        if request.method != "OPTIONS":
            return self._not_here(request, source)
        if "require" in request.headers:
            return False  # a 420 perhaps: the stateful path decides
        ruri = request.ruri
        if (
            not ruri.is_sip
            or ruri.user
            or not self.router.is_myself(ruri)
            or request.to_tag is not None
        ):
            return False
        if validate_request(request) is not None:
            return False
        if request.max_forwards == 0 or "proxy-require" in request.headers:
            return False  # REQINIT's 483 / 420 come first (stateful path)
        if self._options_tail is None:
            extra = [
                ("Allow", ALLOW),
                ("Accept", "application/sdp"),
                ("Allow-Events", "call-info, line-seize"),
                ("Supported", ", ".join(sorted(SUPPORTED))),
            ]
            if self.app.config.server.user_agent:
                extra.append(("Server", self.app.config.server.user_agent))
            self._options_tail = "".join(f"{name}: {value}\r\n" for name, value in extra)
        data = response_bytes(
            request, 200, "OK", to_tag=stateless_tag(request), tail=self._options_tail
        )
        self._send_stateless(data, "OPTIONS", 200, response_destination(request.top_via, source))
        return True

    def _not_here(self, request: SipRequest, source: Flow) -> bool:
        """The sample config's ``sl_send_reply("404", "Not here")``: an in-dialog request with
        no Route to follow belongs to no dialog we route (a BYE for a call that a 503 or a
        crash ended, say; or a To-tag added to get a request relayed unauthenticated).
        Anything else takes the stateful pipeline, which gives the same answer for the same
        request and rejects malformed ones."""
        if (
            request.method in _OWN_IN_DIALOG
            or "route" in request.headers
            or request.to_tag is None
            or self.app.tl.find_server_key(request) is not None
        ):
            return False
        if not request.ruri.is_sip:
            return False
        if validate_request(request) is not None or check_request(
            request, supported=SUPPORTED, is_myself=self.router.is_myself
        ):
            return False
        tail = ""
        if self.app.config.server.user_agent:
            tail = f"Server: {self.app.config.server.user_agent}\r\n"
        data = response_bytes(request, 404, "Not here", to_tag=None, tail=tail)
        self._send_stateless(
            data, request.method, 404, response_destination(request.top_via, source)
        )
        return True

    def _send_stateless(self, data: bytes, method: str, status: int, dest: Flow) -> None:
        """A stateless fast-path reply: straight to the transport, counted as sent."""
        self.app.metrics.message_out("response", method, status)
        if tracing(logging.DEBUG):
            trace.debug("send %s %s", dest, describe(data))
        self.app.transports.send(data, dest)

    def shed(self, request: SipRequest, source: Flow) -> bool:
        """Overloaded: answer a new dialog-creating request 503 + Retry-After, statelessly.

        Costs a fraction of serving it (no validation, no transaction, nothing kept), so the
        backlog drains and what is accepted completes in time. In-dialog requests, CANCEL,
        ACK, responses and retransmissions of requests already in a transaction go on.
        """
        if request.method not in SHED_METHODS or request.to_tag is not None:
            return False
        if self.app.tl.find_server_key(request) is not None:
            return False  # a retransmission: its transaction answers it
        data = response_bytes(
            request,
            503,
            "Service Unavailable",
            to_tag=stateless_tag(request),
            tail=f"Retry-After: {OVERLOAD_RETRY_AFTER}\r\n",
        )
        self.app.overload.shed += 1
        self.app.metrics.overload()
        self._send_stateless(
            data, request.method, 503, response_destination(request.top_via, source)
        )
        return True
