"""The RFC 3261 17 transaction layer, sans-I/O: matching, the four machines, one timer heap.

Modelled on aioquic's ``QuicConnection``: it is driven by messages received
(:meth:`TransactionLayer.receive_request`, :meth:`TransactionLayer.receive_response`),
messages the TU sends (:meth:`TransactionLayer.send_request`,
:meth:`TransactionLayer.send_response`), transport errors and timers
(:meth:`TransactionLayer.handle_timer`). After each call the runtime drains
:meth:`TransactionLayer.messages_to_send` and :meth:`TransactionLayer.next_event`, then
re-arms its one timer from :meth:`TransactionLayer.get_timer`. Time is the ``now`` argument
(monotonic seconds); nothing here reads a clock, opens a socket or draws a random number.

Transaction keys are opaque strings: ``c|<branch>|<method>`` for client transactions
(RFC 3261 17.1.3), ``s|<branch>|<sent-by>|<method>`` for server transactions with an RFC
3261 branch (17.2.3) and ``s2543|...`` for the RFC 2543 fallback. Client and server keys
never collide, so one key names one transaction in every event.
"""

from __future__ import annotations

from collections.abc import Callable
from heapq import heappop as _heappop

from sipsca.config import TransactionConfig
from sipsca.errors import LocalProtocolError, RemoteProtocolError
from sipsca.sip.address import Flow
from sipsca.sip.fields import Via
from sipsca.sip.message import SipMessage, SipRequest, SipResponse
from sipsca.transaction._client import (
    ClientInviteTransaction,
    ClientNonInviteTransaction,
    ClientTransaction,
)
from sipsca.transaction._core import TIMER_BY_NAME, Input, State, Transaction, TransactionCore
from sipsca.transaction._server import (
    ServerInviteTransaction,
    ServerNonInviteTransaction,
    ServerTransaction,
    response_destination,
    stateless_response_destination,
)
from sipsca.transaction.events import (
    CancelReceived,
    Outgoing,
    RequestReceived,
    StrayResponseReceived,
    TransactionEvent,
    TransactionTerminated,
    TransportFailed,
)

__all__ = ["MAGIC_COOKIE", "TransactionLayer", "response_destination"]

MAGIC_COOKIE = "z9hG4bK"
"""RFC 3261 8.1.1.7: a branch starting with this was made by an RFC 3261 element, so it is
unique per transaction and can be matched on alone (17.2.3)."""


def _server_key(branch: str, via: Via, method: str) -> str:
    """17.2.3 with the magic cookie: branch, sent-by (host case-insensitively) and method."""
    port = via.port
    return f"s|{branch}|{via.host.lower()}:{'' if port is None else port}|{method}"


def _fallback_key(request: SipRequest, via: Via, method: str, to_tag: str | None) -> str:
    """17.2.3 for RFC 2543 peers: Request-URI, To tag, From tag, Call-ID, CSeq and top Via.

    ``method`` replaces the request's own for ACK and CANCEL lookups (they match the INVITE);
    ``to_tag`` is the request's, or for an ACK the tag of the response it acknowledges.
    """
    return (
        f"s2543|{request.uri}|{to_tag or ''}|{request.from_tag or ''}|{request.call_id}"
        f"|{request.cseq.number}|{method}|{via}"
    )


class TransactionLayer(TransactionCore):
    """RFC 3261 17 transaction layer (+ RFC 6026 Accepted states) with no I/O.

    ``now`` is monotonic seconds (``loop.time()``) everywhere. One instance serves every
    transport; a :class:`~sipsca.sip.address.Flow` says where a message came from or goes.

    Args:
        config: T1, T2, T4 and timer C.
        branch_factory: returns a fresh random token; :meth:`new_branch` prefixes the RFC
            3261 magic cookie. The runtime passes a ``secrets``-based one; tests a counter.
        timer_c: run the proxy's INVITE timer C (RFC 3261 16.6 step 11, ``config.timer_c``)
            in the client INVITE transactions and report it as
            ``TransactionTimedOut(timer="C")``. Off by default because the runtime's proxy
            runs timer C per forwarded request.
    """

    __slots__ = ("_ack_index", "_branch_factory")

    def __init__(
        self, config: TransactionConfig, *, branch_factory: Callable[[], str], timer_c: bool = False
    ) -> None:
        super().__init__(config, timer_c=timer_c)
        self._branch_factory = branch_factory
        self._ack_index: dict[str, str] = {}
        """RFC 2543 only: ACK view of an INVITE (To tag of our final) -> server tx key."""

    # -- helpers for the TU ------------------------------------------------------------

    def new_branch(self) -> str:
        """A Via branch for a new client transaction: the magic cookie plus a random token."""
        return MAGIC_COOKIE + self._branch_factory()

    # -- receiving -----------------------------------------------------------------------

    def receive_request(self, request: SipRequest, *, source: Flow, now: float) -> None:
        """Hand a request from the network to its server transaction, or start one.

        A new request becomes :class:`RequestReceived` (or :class:`CancelReceived`) with the
        key of a new server transaction. A retransmission is absorbed: its transaction
        re-sends the latest response (RFC 3261 17.2.1, 17.2.2) and the TU hears nothing. An
        ACK matching an INVITE transaction in Completed is absorbed too; any other ACK is
        reported with ``key=None`` (the ACK for a 2xx is not part of the transaction).

        Afterwards drain :meth:`messages_to_send` and :meth:`next_event`.

        Raises:
            RemoteProtocolError: matching is impossible (no or malformed Via or CSeq, or a
                CSeq method that differs from the request method; RFC 2543 requests also
                need Call-ID, From and To). The runtime answers ``status_hint`` (400),
                statelessly, unless the request is an ACK.
        """
        via = request.top_via
        method = request.method
        if request.cseq.method != method:
            raise RemoteProtocolError("CSeq method does not match the request method")
        is_ack = method == "ACK"
        branch = via.branch
        tx: Transaction | None
        if branch is not None and branch.startswith(MAGIC_COOKIE):
            key = _server_key(branch, via, "INVITE" if is_ack else method)
            tx = self._server.get(key)
        else:
            key = _fallback_key(request, via, "INVITE" if is_ack else method, request.to_tag)
            tx = self._server.get(key)
            if tx is None and is_ack:
                owner = self._ack_index.get(key)
                if owner is not None:
                    tx = self._server.get(owner)
        if is_ack:
            if tx is None:
                self._events.append(RequestReceived(request=request, source=source, key=None))
            else:
                tx.handle(self, Input.ACK, now, request, source)
            return
        if tx is not None:
            tx.handle(self, Input.REQUEST, now, request, source)
            return
        retired = self._retired.get(key)
        if retired is not None:  # a retransmission to a retired (Completed) transaction
            _, _, data, transport, host, port = retired
            if data:  # an abandoned one has nothing to send again
                self._outbox.append(Outgoing(data=data, destination=Flow(transport, host, port)))
            return
        if method == "INVITE":
            self._server[key] = ServerInviteTransaction(key, request, via, source)
            self._counts["server_invite"] += 1
            self._events.append(RequestReceived(request=request, source=source, key=key))
            return
        self._server[key] = ServerNonInviteTransaction(key, request, via, source)
        self._counts["server_non_invite"] += 1
        if method == "CANCEL":
            invite_key = self._invite_key_for(request, via, branch)
            self._events.append(
                CancelReceived(request=request, source=source, key=key, invite_key=invite_key)
            )
        else:
            self._events.append(RequestReceived(request=request, source=source, key=key))

    def _invite_key_for(self, request: SipRequest, via: Via, branch: str | None) -> str | None:
        """The INVITE server transaction a CANCEL or ACK matches: the 17.2.3 rules with
        method INVITE (RFC 3261 9.2), or ``None``."""
        if branch is not None and branch.startswith(MAGIC_COOKIE):
            key = _server_key(branch, via, "INVITE")
        else:
            key = _fallback_key(request, via, "INVITE", request.to_tag)
            if key not in self._server and request.method == "ACK":
                return self._ack_index.get(key)
        return key if key in self._server else None

    def receive_response(self, response: SipResponse, *, source: Flow, now: float) -> None:
        """Hand a response from the network to its client transaction (RFC 3261 17.1.3:
        top Via branch and CSeq method; a CANCEL's responses match the CANCEL, not the
        INVITE, because the method differs).

        Reports :class:`ResponseReceived` (1xx, the first final, every 2xx to INVITE) or,
        when nothing matches, :class:`StrayResponseReceived`. For a 300-699 to INVITE the
        layer queues the ACK itself. Afterwards drain :meth:`messages_to_send` and
        :meth:`next_event`.

        Raises:
            RemoteProtocolError: no or malformed Via or CSeq; the runtime drops the
                response (responses are never answered, RFC 3261 18.1.2).
        """
        via = response.top_via
        method = response.cseq.method
        branch = via.branch
        key = f"c|{branch}|{method}" if branch else ""
        tx = self._client.get(key)
        if tx is None:
            if key not in self._retired:  # else a retransmission absorbed in Completed
                self._events.append(StrayResponseReceived(response=response, source=source))
            return
        status = response.status
        if status < 200:
            event = Input.PROVISIONAL
        elif tx.KIND == "client_invite":
            event = Input.FINAL_2XX if status < 300 else Input.FINAL_NON2XX
        else:
            event = Input.FINAL
        tx.handle(self, event, now, response, source)

    # -- sending -------------------------------------------------------------------------

    def send_request(self, request: SipRequest, *, destination: Flow, now: float) -> str:
        """Start a client transaction for ``request`` and queue it for ``destination``.

        The request is serialised now; later changes to it are not sent. INVITE arms timers
        A (unreliable only), B and C; other methods arm E (unreliable only) and F. Sending a
        CANCEL also starts the RFC 3261 9.1 64*T1 guard (timer B) on the INVITE transaction
        it cancels, if that one has had a provisional response.

        Returns:
            The transaction key, used in every event about this transaction.

        Raises:
            LocalProtocolError: the top Via has no RFC 3261 (``z9hG4bK``) branch (use
                :meth:`new_branch`), Via or CSeq is missing or malformed, the CSeq method is
                not the request method, the method is ACK (an ACK for 2xx is not a
                transaction: use :meth:`send_stateless`), or a transaction with this key
                already exists.
        """
        method = request.method
        if method == "ACK":
            raise LocalProtocolError(
                "ACK is not a client transaction; use send_stateless (RFC 3261 17.1.1.3)"
            )
        try:
            via = request.top_via
            cseq = request.cseq
        except RemoteProtocolError as exc:
            raise LocalProtocolError(f"Cannot send request: {exc.reason}") from exc
        branch = via.branch
        if not branch or not branch.startswith(MAGIC_COOKIE):
            raise LocalProtocolError(
                "The top Via of a request must carry a z9hG4bK branch (RFC 3261 8.1.1.7)"
            )
        if cseq.method != method:
            raise LocalProtocolError("CSeq method does not match the request method")
        key = f"c|{branch}|{method}"
        if key in self._client or key in self._retired:
            raise LocalProtocolError(f"Client transaction {key} already exists")
        out = Outgoing(data=request.to_bytes(), destination=destination, message=request)
        tx: ClientTransaction
        if method == "INVITE":
            tx = ClientInviteTransaction(key, request, out)
        else:
            tx = ClientNonInviteTransaction(key, request, out)
        self._client[key] = tx
        self._counts[tx.KIND] += 1
        self._outbox.append(out)
        tx.start(self, now)
        if method == "CANCEL":
            invite = self._client.get(f"c|{branch}|INVITE")
            if invite is not None:
                invite.handle(self, Input.CANCEL_SENT, now)
        return key

    def send_response(self, response: SipResponse, *, now: float, key: str | None = None) -> None:
        """Send a response through its server transaction.

        The transaction is ``key`` or, without it, the one matching the response's top
        Via branch, sent-by and CSeq method (RFC 3261 17.2.3; RFC 2543 transactions need
        the key). 1xx: sent, kept for request retransmissions (the layer never sends 100
        Trying on its own). INVITE 2xx: Accepted for 64*T1 (RFC 6026 timer L), further 2xx
        from the TU are sent. INVITE 300-699: Completed, retransmitted on timer G over UDP,
        timer H waits for the ACK. Non-INVITE final: Completed for timer J.

        With no matching transaction (none ever, or already terminated) the response is
        sent statelessly to the Via's ``received``/``rport``/sent-by (RFC 3261 18.2.2), or
        dropped when that Via names a transport or ``rport`` nothing can reach.
        Afterwards drain :meth:`messages_to_send` and :meth:`next_event`.

        Raises:
            LocalProtocolError: the state does not allow this response (a 1xx or second
                non-2xx final after a final, a non-2xx after a 2xx; a 2xx after a non-2xx
                to INVITE is sent, for a proxy whose CANCEL raced a 200), the status is
                outside 100-699, or (without a transaction) the response has no usable Via.
        """
        status = response.status
        if not 100 <= status <= 699:
            raise LocalProtocolError(f"Status {status} is outside 100-699")
        if key is None:
            key = self._response_key(response)
        tx = self._server.get(key) if key is not None else None
        if tx is None:
            if key is not None and key in self._retired:
                raise LocalProtocolError(
                    f"server_non_invite transaction {key} in state completed cannot take"
                    f" {Input.PROVISIONAL if status < 200 else Input.FINAL}"
                )
            self._send_stateless_response(response)
            return
        if status < 200:
            event = Input.PROVISIONAL
        elif tx.KIND == "server_invite":
            event = Input.FINAL_2XX if status < 300 else Input.FINAL_NON2XX
        else:
            event = Input.FINAL
        tx.handle(self, event, now, response)
        if (
            status >= 200
            and tx.key.startswith("s2543|")
            and tx.KIND == "server_invite"
            and tx.state is not State.TERMINATED
        ):
            self._index_rfc2543_ack(tx, response)

    def abandon(self, key: str, *, now: float) -> None:
        """End non-INVITE server transaction ``key`` without a final response.

        RFC 4320 4.2: a transaction-stateful element MUST NOT send a 408 to a non-INVITE
        request; one that cannot answer in time sends no final response at all (the
        client's timer F has fired by then). The transaction still absorbs retransmissions
        of the request for timer J, silently, so they are not taken for new requests.
        Unknown or already answered transactions are left alone.
        """
        tx = self._server.get(key)
        if not isinstance(tx, ServerNonInviteTransaction):
            return
        if tx.state not in (State.TRYING, State.PROCEEDING):
            return
        wait = 0.0 if tx.reliable else self._timer_values.b
        self._retire(tx, now, wait)

    def _response_key(self, response: SipResponse) -> str | None:
        try:
            via = response.top_via
            method = response.cseq.method
        except RemoteProtocolError as exc:
            raise LocalProtocolError(f"Cannot send response: {exc.reason}") from exc
        branch = via.branch
        if not branch or not branch.startswith(MAGIC_COOKIE):
            return None
        return _server_key(branch, via, method)

    def _send_stateless_response(self, response: SipResponse) -> None:
        try:
            via = response.top_via
        except RemoteProtocolError as exc:
            raise LocalProtocolError(f"Cannot send response: {exc.reason}") from exc
        try:
            destination = stateless_response_destination(via)
        except RemoteProtocolError:
            return  # a peer's Via (transport, rport) nothing can reach: the response is lost
        self._outbox.append(
            Outgoing(data=response.to_bytes(), destination=destination, message=response)
        )

    def _index_rfc2543_ack(self, tx: Transaction, response: SipResponse) -> None:
        """An RFC 2543 ACK carries the To tag of our final response, not the INVITE's, so
        it is found through this index (17.2.3: "the To tag of the ACK matches the To tag
        of the response sent by the server transaction")."""
        assert isinstance(tx, ServerTransaction)
        if tx.ack_key is not None:
            return
        request = tx.request
        if request is None or tx.via is None:
            return
        try:
            ack_key = _fallback_key(request, tx.via, "INVITE", response.to_tag)
        except RemoteProtocolError:
            return
        if ack_key != tx.key:
            tx.ack_key = ack_key
            self._ack_index[ack_key] = tx.key

    def _forget(self, tx: Transaction) -> None:
        if tx.SERVER:
            assert isinstance(tx, ServerTransaction)
            if tx.ack_key is not None:
                self._ack_index.pop(tx.ack_key, None)

    def send_stateless(self, message: SipMessage, *, destination: Flow) -> None:
        """Queue ``message`` for ``destination`` outside any transaction: the ACK for a 2xx
        (RFC 3261 13.2.2.4), stateless forwards. Drain :meth:`messages_to_send` after."""
        self._outbox.append(
            Outgoing(data=message.to_bytes(), destination=destination, message=message)
        )

    def transport_failed(self, key: str, *, now: float) -> None:
        """The runtime could not send for transaction ``key`` (connection refused or
        closed, ICMP unreachable): report :class:`TransportFailed` and terminate
        (RFC 3261 17.1.4, 17.2.4). Unknown keys are ignored (already terminated)."""
        tx = (self._server if key[:1] == "s" else self._client).get(key)
        if tx is not None:
            tx.handle(self, Input.TRANSPORT_ERROR, now)
            return
        retired = self._retired.pop(key, None)
        if retired is not None:
            self._counts[retired[0]] -= 1
            self._events.append(TransportFailed(key=key))
            self._events.append(TransactionTerminated(key=key))

    # -- queries -------------------------------------------------------------------------

    def find_server_key(self, request: SipRequest) -> str | None:
        """The server transaction ``request`` belongs to, by the 17.2.3 rules, or ``None``.

        For a CANCEL or an ACK this is the INVITE transaction it matches (RFC 3261 9.2,
        17.2.3); for any other request, the transaction it would be a retransmission for.
        A request too malformed to match gives ``None``.
        """
        try:
            via = request.top_via
            method = request.method
            branch = via.branch
            if method in ("CANCEL", "ACK"):
                return self._invite_key_for(request, via, branch)
            if branch is not None and branch.startswith(MAGIC_COOKIE):
                key = _server_key(branch, via, method)
            else:
                key = _fallback_key(request, via, method, request.to_tag)
        except RemoteProtocolError:
            return None
        return key if key in self._server or key in self._retired else None

    def server_request(self, key: str) -> SipRequest | None:
        """The request that created server transaction ``key``, or ``None`` (unknown key,
        or a non-INVITE transaction that already sent its final response: it keeps only
        the response bytes)."""
        tx = self._server.get(key)
        return tx.request if isinstance(tx, ServerTransaction) else None

    def server_state(self, key: str) -> str | None:
        """State of server transaction ``key`` (``"proceeding"``, ``"completed"``...)."""
        tx = self._server.get(key)
        if tx is None:
            return State.COMPLETED.value if key in self._retired else None
        return tx.state.value

    def client_state(self, key: str) -> str | None:
        """State of client transaction ``key`` (``"calling"``, ``"accepted"``...)."""
        tx = self._client.get(key)
        if tx is None:
            return State.COMPLETED.value if key in self._retired else None
        return tx.state.value

    @property
    def counts(self) -> dict[str, int]:
        """Live transactions by kind (``client_invite``, ``client_non_invite``,
        ``server_invite``, ``server_non_invite``), for metrics."""
        return dict(self._counts)

    # -- timers and output -----------------------------------------------------------------

    def get_timer(self) -> float | None:
        """The earliest deadline (monotonic seconds) of any armed timer, or ``None``.

        The runtime arms one ``loop.call_at`` for it and calls :meth:`handle_timer`.
        """
        heap = self._heap
        client, server = self._client, self._server
        done = self._retired_deadline()
        while heap:
            deadline, seq, key, timer = heap[0]
            tx = (server if key[0] == "s" else client).get(key)
            if tx is not None and tx.timers.get(timer) == seq:
                return deadline if done is None or deadline < done else done
            _heappop(heap)
        return done

    def handle_timer(self, now: float) -> None:
        """Fire every timer due at ``now``. Afterwards drain :meth:`messages_to_send` and
        :meth:`next_event`, then re-arm from :meth:`get_timer`."""
        heap = self._heap
        client, server = self._client, self._server
        while heap and heap[0][0] <= now:
            _, seq, key, name = _heappop(heap)
            tx = (server if key[0] == "s" else client).get(key)
            if tx is None:
                continue
            timers = tx.timers
            if timers.get(name) != seq:
                continue
            del timers[name]
            self._live -= 1
            tx.handle(self, TIMER_BY_NAME[name], now)
            heap = self._heap  # _arm may have compacted (replaced) the heap
        self._expire_retired(now)

    def next_event(self) -> TransactionEvent | None:
        """The next event for the TU, oldest first, or ``None``."""
        events = self._events
        return events.popleft() if events else None

    def messages_to_send(self) -> list[Outgoing]:
        """Everything queued for the wire since the last call, in order (drains)."""
        out = self._outbox
        self._outbox = []
        return out
