"""Our own addresses as we write them into messages: Via sent-by, Record-Route, SIPS values.

Every value names the listener on the side a message leaves or arrives by, with
``server.advertised_address`` (host, and for UDP/TCP its port) in place of the bound
address when the server sits behind NAT or a load balancer. A ``sips:`` Record-Route
always names the TLS listener (RFC 3261 16.6 step 4, RFC 5630); the Warning values of a
SIPS refusal name us as the warn-agent (RFC 5630 5.3 and 9).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sipsca.proxy.route import sips_not_allowed_warning, sips_record_route, sips_required_warning
from sipsca.sip.address import Flow

if TYPE_CHECKING:
    from sipsca.runtime.app import SipApplication

__all__ = ["LocalAddresses", "split_hostport"]


def split_hostport(text: str) -> tuple[str, int | None]:
    """``host``, ``host:port``, ``[v6]`` or ``[v6]:port`` (``advertised_address``, a
    served domain) -> (host without brackets, port or None).

    Raises:
        ValueError: a port that is not 1-65535, or text after ``]`` that is no port.
    """
    text = text.strip()
    if text.startswith("[") and "]" in text:
        end = text.index("]")
        host, rest = text[1:end], text[end + 1 :]
        if rest and not rest.startswith(":"):
            raise ValueError(f"{text!r}: {rest!r} after the IPv6 reference")
        number = rest[1:]
    elif text.count(":") == 1:
        host, _, number = text.partition(":")
    else:
        host, number = text, ""  # a name, or a bare IPv6 address
    if not number:
        return host, None
    if not (number.isascii() and number.isdigit() and 0 < int(number) < 65536):
        raise ValueError(f"{text!r}: port {number!r} is not 1-65535")
    return host, int(number)


class LocalAddresses:
    """Our ``host:port`` per transport, Via and Record-Route values, and SIPS Warnings.

    The values depend only on the configuration and the listeners, which do not change
    once the server has started, so each is worked out on first use and kept: they go
    into every forwarded request.
    """

    def __init__(self, app: SipApplication) -> None:
        self.app = app
        host, port = split_hostport(app.config.server.advertised_address)
        self._advertised_host = f"[{host}]" if ":" in host else host
        self._advertised_port = port
        self._hostports: dict[str, str] = {}
        self._record_routes: dict[str, str] = {}

    def local_hostport(self, transport: str) -> str:
        """``host:port`` of our Via and Record-Route on the side using ``transport``.

        ``advertised_address`` replaces the host; its port (if any) replaces the port of
        the UDP/TCP listeners only. A TLS listener keeps its own port (5061 beside 5060:
        one advertised port for every transport sent TLS peers to the UDP port), and a
        port is always written, so a listener off 5060 is never reached at the default.
        """
        value = self._hostports.get(transport)
        if value is None:
            transports = self.app.transports
            listener = transports.listener_for(transport) or transports.listeners[0]
            host = f"[{listener.host}]" if ":" in listener.host else listener.host
            port = listener.port
            if self._advertised_host:
                host = self._advertised_host
                if self._advertised_port is not None and listener.transport != "tls":
                    port = self._advertised_port
            value = self._hostports[transport] = f"{host}:{port}"
        return value

    def advertised_host(self) -> str:
        """The host part of ``advertised_address`` (IPv6 in brackets), or ""."""
        return self._advertised_host

    def advertised_port(self) -> int | None:
        """The port of ``advertised_address``, or None when it names none."""
        return self._advertised_port

    def via_value(self, dest: Flow, branch: str) -> str:
        sent_by = self.local_hostport(dest.transport)
        return f"SIP/2.0/{dest.transport.upper()} {sent_by};branch={branch};rport"

    def record_route_uri(self, transport: str, *, sips: bool = False) -> str:
        """Our Record-Route value on the side using ``transport``; with ``sips`` (the
        request or branch needs TLS, :func:`~sipsca.proxy.route.needs_tls`) the
        ``sips:`` URI of the TLS listener whatever ``transport`` (RFC 3261 16.6 step 4)."""
        if sips:
            return self.sips_record_uri()
        value = self._record_routes.get(transport)
        if value is None:
            side = transport
            transports = self.app.transports
            if transports.listener_for(side) is None:
                # A next hop reached by a transport we do not listen on (TLS out with no
                # TLS listener): in-dialog requests must come back by one we do, TCP first
                stream = side != "udp" and transports.listener_for("tcp") is not None
                side = "tcp" if stream else transports.listeners[0].transport
            params = "" if side == "udp" else f";transport={side}"
            value = self._record_routes[transport] = f"<sip:{self.local_hostport(side)}{params};lr>"
        return value

    def tls_listener(self) -> bool:
        """Whether sipsca listens on TLS (so a ``sips:`` Record-Route can name it)."""
        return self.app.transports.listener_for("tls") is not None

    def sips_record_uri(self) -> str:
        """``<sips:host:port;lr>``: the advertised host (else the TLS listener's address)
        and the TLS listener's port, where the far end's in-dialog requests must come
        over TLS (:meth:`RequestRouter.configure
        <sipsca.runtime.routing.RequestRouter.configure>` makes it "myself")."""
        listener = self.app.transports.listener_for("tls")
        if listener is None:  # not reached: a SIPS request is refused 416 without TLS
            return f"<sips:{self.local_hostport('tls')};lr>"
        return sips_record_route(self.advertised_host() or listener.host, listener.port)

    def sips_warning(self, *, required: bool = False) -> str:
        """``380 host:port "SIPS Not Allowed"``, or with ``required`` ``381 ... "SIPS
        Required"`` (RFC 5630 5.3 and 9), we being the warn-agent."""
        agent = self.local_hostport("tls")
        return sips_required_warning(agent) if required else sips_not_allowed_warning(agent)
