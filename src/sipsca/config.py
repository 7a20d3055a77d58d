"""Typed configuration, passed into every layer (no global config, no file reading here).

``sipsca.cli.settings`` is the only place that reads TOML or the environment; keys of the
``[sca]`` section keep the names of Kamailio's ``sca`` module parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "AuthConfig",
    "DbConfig",
    "LineConfig",
    "LogConfig",
    "ProxyConfig",
    "RegistrarConfig",
    "RpcConfig",
    "ScaConfig",
    "ServerConfig",
    "SipscaConfig",
    "TransactionConfig",
]


@dataclass(frozen=True, slots=True)
class ServerConfig:
    listen: tuple[str, ...] = ("udp:127.0.0.1:5060", "tcp:127.0.0.1:5060")
    """Listeners as ``transport:host:port`` (transport udp, tcp or tls). A host name is
    resolved only when ``serve`` binds it: ``check-config`` checks its syntax, a name that
    does not resolve stops ``serve`` (exit 2) like a port in use."""
    domains: tuple[str, ...] = ()
    """Served domains/aliases besides the listen addresses ("myself")."""
    advertised_address: str = ""
    """Host[:port] put in Via/Record-Route instead of the listen address (NAT, 0.0.0.0);
    the port replaces the UDP/TCP listeners' port, a TLS listener keeps its own."""
    tls_cert: str = ""
    """PEM certificate (chain) for ``tls`` listeners."""
    tls_key: str = ""
    """PEM private key of ``tls_cert``."""
    tls_verify: bool = False
    """Verify the certificate chain of TLS peers sipsca connects to against ``tls_ca_file``
    (not the host name: connections go to resolved addresses); false as Kamailio's
    ``verify_certificate = no`` (phones mostly have self-signed certificates)."""
    tls_ca_file: str = ""
    """PEM CA bundle for ``tls_verify``; empty = the system's trusted CAs."""
    user_agent: str = "sipsca"
    """``Server``/``User-Agent`` header value of generated messages; empty = none."""
    max_message_size: int = 65535
    """Largest SIP message accepted, in bytes (larger ones are rejected or dropped)."""
    tcp_idle_timeout: float = 600.0
    """Seconds an idle TCP/TLS connection is kept open (nothing received or sent; one whose
    output is stuck because the peer does not read is dropped then)."""
    tcp_message_timeout: float = 20.0
    """Seconds a TCP/TLS message may take from its first byte to its last; a connection
    still short of the end of a message then is closed (slowloris), like Kamailio's
    ``tcp_msg_read_timeout``. An accepted connection must also deliver its first message
    within this time of being accepted (keep-alives alone do not count)."""
    tls_handshake_timeout: float = 10.0
    """Seconds a TLS client has to complete its handshake after connecting, else it is
    closed (asyncio's default would be 60)."""
    max_connections: int = 4096
    """Open TCP/TLS connections at most (a TLS one from its accept, handshake included);
    further ones are closed at once, with one warning per 10 s. Accepted connections and
    those sipsca opens are counted apart, each up to this number, so a flood of peers
    cannot stop sipsca's own (``LimitNOFILE`` must exceed twice this)."""
    overload_queue: int = 2048
    """Overload control: kB waiting in the UDP receive buffer (2048 kB: some 1,600 requests,
    a quarter of a second of work) above which new dialogs are shed with 503 + Retry-After
    once the queue has grown over two 0.1 s windows in a row (or at once above 4 times this),
    until it drains to half of it; event-loop lag above 0.5 s sheds too. 0 = lag only."""


@dataclass(frozen=True, slots=True)
class TransactionConfig:
    """RFC 3261 17 timer values in seconds."""

    t1: float = 0.5
    """RTT estimate T1: first retransmission interval over UDP; > 0."""
    t2: float = 4.0
    """T2: longest retransmission interval of non-INVITE requests and INVITE responses;
    at least ``t1``."""
    t4: float = 5.0
    """T4: how long a message may stay in the network (wait times of completed transactions);
    >= 0."""
    timer_c: float = 185.0
    """Proxy INVITE timer C (RFC 3261 16.6 step 11: it MUST be larger than 3 minutes); > 0."""


@dataclass(frozen=True, slots=True)
class LineConfig:
    """A shared line (AoR) with optional explicit membership and aliases."""

    aor: str
    """The line's address of record, e.g. ``sip:215@example.com``."""
    members: tuple[str, ...] = ()
    """AoRs/usernames allowed to subscribe (empty = anybody allowed to reach the line)."""
    aliases: tuple[str, ...] = ()
    """Other URIs (DIDs, E.164 numbers) that mean this line."""


@dataclass(frozen=True, slots=True)
class ScaConfig:
    """The ``sca`` module parameters (Kamailio's names and defaults, except the default of
    ``hash_table_size`` and, in ``[db]``, of ``db_url``) plus sipsca's own."""

    hash_table_size: int = -1
    """Kamailio's table size as a power-of-2 exponent (1..30); -1 = not set, which Kamailio reads
    as 9 (512 slots). Accepted for compatibility and ignored: Python dicts need no sizing."""
    call_info_max_expires: int = 3600
    """Longest call-info subscription granted, seconds (Kamailio's parameter)."""
    line_seize_max_expires: int = 15
    """Longest line-seize subscription granted, seconds (Kamailio's parameter)."""
    purge_expired_interval: int = 120
    """Seconds between purges of expired subscriptions and stale appearances."""
    server_address: str = ""
    """Used verbatim as Contact of SUBSCRIBE 2xx replies and NOTIFYs when set."""
    onhold_bflag: int = -1
    """Kamailio's branch flag marking a call as held: accepted for compatibility and ignored
    (sipsca reads hold from the SDP; a value >= 0 logs a warning). See docs/compat.md."""
    contact_fallback: str = ""
    """Owner URI used when a routed call message has no Contact (Kamailio's parameter)."""
    max_appearances: int = 0
    """Appearances per line; 0 = unbounded (Kamailio)."""
    seized_ttl: int = 120
    """A ``seized`` appearance not used by a call for this long is released by the purge."""
    pending_ttl: int = 35
    """An answered but not ACKed appearance older than this is promoted to ``active`` (full
    dialog) or released by the purge."""
    ringing_ttl: int = 300
    """A ``progressing`` / ``alerting`` appearance unchanged for this long is released by the
    purge unless its INVITE is still pending: past ``[transaction] timer_c`` it lost its final
    response (a restart while it rang, a reply that never came through)."""
    call_info_uri: str = "domain"
    """``domain`` renders ``<sip:DOMAIN>`` (Kamailio); ``aor`` renders the full AoR."""
    line_identification: tuple[str, ...] = ("request_uri", "to", "from", "alias")
    """Which message parts may name a line, in this order (``request_uri``, ``to``,
    ``from``, ``alias``); see docs/sca.md."""
    lines: tuple[LineConfig, ...] = ()
    """Shared lines with explicit members and aliases (``[[sca.lines]]`` tables)."""
    incoming_alerting: bool = True
    """Show incoming calls to a line as ``alerting`` and add Call-Info to forked INVITEs."""
    outgoing_auto_appearance: bool = True
    """Give outgoing calls without a prior line-seize the lowest free appearance."""


@dataclass(frozen=True, slots=True)
class DbConfig:
    db_url: str = "sqlite://var/sipsca.sqlite"
    """Kamailio style: ``sqlite://`` + path (``sqlite://var/x.sqlite`` is relative,
    ``sqlite:///var/lib/x.sqlite`` absolute), ``postgresql://user:pw@host:port/db``,
    ``mysql://user:pw@host:port/db``; a malformed URL is refused by ``check-config``. The
    default is not Kamailio's (``mysql://kamailio:kamailiorw@localhost/kamailio``)."""
    subs_table: str = "sca_subscriptions"
    """Name of Kamailio's subscriptions table (version 2); a plain SQL identifier."""
    db_update_interval: int = 300
    """Seconds a change may wait before it is written (Kamailio's write-back); 0 = write
    every change at once. Deletes of subscriptions are always written at once, and a graceful
    stop writes everything."""
    server_id: int = 0
    """This server's id in a shared database: it loads and deletes only its own rows."""


@dataclass(frozen=True, slots=True)
class AuthConfig:
    mode: str = "none"
    """``digest`` or ``none``."""
    realm: str = ""
    """Digest realm; empty: the request's own domain (From, To for REGISTER). A fixed realm
    makes one user space for every served domain (decisions 34)."""
    allow_unauthenticated: bool = False
    """Must be true to run ``mode = "none"`` on a non-loopback listener."""
    nonce_ttl: int = 300
    """Seconds a digest nonce is valid (> 0); an older one gets a ``stale=true`` challenge."""
    algorithms: tuple[str, ...] = ("SHA-256", "MD5")
    """Digest algorithms offered, in order (``SHA-256``, ``MD5``; at least one)."""
    secret: str = ""
    """Nonce signing key, at least 16 bytes with ``mode = "digest"``; random per start when
    empty. Servers sharing it accept each other's nonces (and a restart keeps them valid)."""


@dataclass(frozen=True, slots=True)
class RegistrarConfig:
    min_expires: int = 60
    """Shortest registration accepted, seconds (shorter: 423 Interval Too Brief)."""
    max_expires: int = 3600
    """Longest registration granted, seconds (longer requests are cut down)."""
    default_expires: int = 3600
    """Registration time when the REGISTER gives none, seconds."""
    max_contacts: int = 0
    """Contacts one AoR may register at most; 0 = no limit of its own (1,000 then, and
    a REGISTER carries at most 100 Contacts: decisions 40)."""


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    record_route: bool = True
    """Record-Route dialog-creating requests, so in-dialog requests pass through sipsca."""
    static_routes: tuple[tuple[str, str], ...] = ()
    """(domain, ``transport:host:port``) next hops for non-local domains; transport
    ``udp``, ``tcp`` or ``tls``, port 1-65535."""
    unknown_user_status: int = 404
    """Reply for a local user with no binding: 404 ``Not Found`` (the sample config's), or
    480 ``Temporarily Unavailable`` for every such user (sipsca does not look the user up
    first: a 404/480 split would tell a scanner which users exist)."""


@dataclass(frozen=True, slots=True)
class RpcConfig:
    listen: str = "127.0.0.1:5080"
    """``host:port`` of the JSON-RPC (``POST /RPC``), ``/metrics`` and ``/health`` listener;
    a non-loopback address needs ``token``."""
    token: str = ""
    """Bearer token required on every route when set (``Authorization: Bearer ...``)."""
    enabled: bool = True
    """Run the management listener at all."""


@dataclass(frozen=True, slots=True)
class LogConfig:
    level: str = "INFO"
    """``DEBUG``, ``INFO``, ``WARNING``, ``ERROR`` or ``CRITICAL`` (changeable at runtime with
    the ``log.set_level`` RPC). ``DEBUG`` adds one line per SIP message received and sent;
    the libraries sipsca uses (aiosqlite, asyncio, asyncpg, aiomysql, aiohttp) log at
    ``INFO`` or above whatever the level."""
    format: str = "text"
    """``text`` or ``json``."""


@dataclass(frozen=True, slots=True)
class SipscaConfig:
    server: ServerConfig = field(default_factory=ServerConfig)
    transaction: TransactionConfig = field(default_factory=TransactionConfig)
    sca: ScaConfig = field(default_factory=ScaConfig)
    db: DbConfig = field(default_factory=DbConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    registrar: RegistrarConfig = field(default_factory=RegistrarConfig)
    proxy: ProxyConfig = field(default_factory=ProxyConfig)
    rpc: RpcConfig = field(default_factory=RpcConfig)
    log: LogConfig = field(default_factory=LogConfig)
