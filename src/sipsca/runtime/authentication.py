"""AUTH of the pipeline: digest challenges and checks against subscribers from storage.

The digest itself is pure (:class:`~sipsca.auth.digest.DigestAuthenticator`, RFC 3261 22,
RFC 8760); this module owns what needs I/O around it: the nonce secret and entropy, the
subscriber look-up through the cache (which may wait on the database, so it runs as a
task), and the 503 when the password cannot be checked.
"""

from __future__ import annotations

import logging
import os
import secrets
from typing import TYPE_CHECKING

from sipsca.auth.digest import DigestAuthenticator
from sipsca.errors import RemoteProtocolError, StorageError
from sipsca.runtime.persistence import SubscriberCache
from sipsca.sip.address import Flow
from sipsca.sip.message import SipRequest
from sipsca.sip.uri import unescape

if TYPE_CHECKING:
    from sipsca.runtime.routing import RequestRouter

__all__ = ["Authentication"]

logger = logging.getLogger(__name__)


class Authentication:
    """Digest authentication of the requests the router sends through AUTH (``auth.mode
    = "digest"``); an authenticated request goes back to the router's next step."""

    def __init__(self, router: RequestRouter) -> None:
        self.router = router
        app = router.app
        cfg = app.config.auth
        secret = cfg.secret.encode() if cfg.secret else secrets.token_bytes(32)
        self.digest = DigestAuthenticator(
            secret=secret,
            nonce_ttl=cfg.nonce_ttl,
            algorithms=cfg.algorithms,
            entropy=os.urandom,
        )
        self.subscribers = SubscriberCache(app.storage, on_error=app.metrics.db_error)

    async def authenticate_then_route(self, request: SipRequest, source: Flow, key: str) -> None:
        router = self.router
        app = router.app
        proxy = request.method != "REGISTER"
        header_uri = request.to.uri if not proxy else request.from_.uri
        realm = app.config.auth.realm or header_uri.host.lower()
        now = app.clock.time()
        try:
            creds = self.digest.credentials(request, realm=realm, proxy=proxy)
        except RemoteProtocolError as exc:  # a malformed Digest value: answer, never hang
            app.metrics.auth_failure("invalid")
            router.reply(request, key, exc.status_hint or 400, exc.reason)
            return
        if creds is None:
            app.metrics.auth_failure("challenge")
            router.send_reply(
                self.digest.challenge(
                    request, realm=realm, now=now, proxy=proxy, to_tag=secrets.token_hex(6)
                ),
                key,
            )
            return
        try:
            subscriber = await self.subscribers.get(creds.username, realm)
        except StorageError as exc:  # cannot check the password: ask the phone to come back
            logger.warning("cannot authenticate %s@%s: %s", creds.username, realm, exc)
            app.metrics.auth_failure("db_unavailable")
            router.reply(request, key, 503, "Service Unavailable", [("Retry-After", "5")])
            return
        if app.tl.server_state(key) not in ("trying", "proceeding"):
            return  # answered meanwhile (a CANCEL got it its 487): nothing more to do
        result = self.digest.verify(request, creds, subscriber, now=app.clock.time())
        if not result.ok:
            app.metrics.auth_failure("stale" if result.stale else "invalid")
            logger.info(
                "authentication of %s@%s from %s failed: %s",
                creds.username,
                realm,
                source,
                result.reason,
            )
            router.send_reply(
                self.digest.challenge(
                    request,
                    realm=realm,
                    now=app.clock.time(),
                    proxy=proxy,
                    stale=result.stale,
                    to_tag=secrets.token_hex(6),
                ),
                key,
            )
            return
        # the same user however the URI escapes it (RFC 3261 19.1.4: %61lice is alice)
        if header_uri.user and unescape(header_uri.user) != creds.username:
            router.reply(request, key, 403, "Forbidden - identity mismatch")
            return
        if proxy:
            self.digest.strip_credentials(request, realm=realm)
        identity = f"sip:{creds.username}@{realm}"
        if not (router.from_local(request) or router.ruri_ours(request)):
            router.reply(request, key, 403, "Not relaying")
            return
        router.initial(request, source, key, identity=identity)
