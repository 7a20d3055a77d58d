"""``server.advertised_address`` as the application starts with it (in process, UDP on
127.0.0.1): every accepted form starts, and the advertised name is "myself"."""

from __future__ import annotations

import pytest

from sipsca.config import ServerConfig, SipscaConfig
from sipsca.runtime.addressing import split_hostport
from sipsca.runtime.app import SipApplication
from sipsca.sip.uri import parse_uri
from sipsca.storage.memory import MemoryStorage


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sip.example.com", ("sip.example.com", None)),
        ("sip.example.com:5070", ("sip.example.com", 5070)),
        ("[2001:db8::1]", ("2001:db8::1", None)),
        ("[2001:db8::1]:5070", ("2001:db8::1", 5070)),
        ("2001:db8::1", ("2001:db8::1", None)),
    ],
)
def test_split_hostport(text: str, expected: tuple[str, int | None]) -> None:
    assert split_hostport(text) == expected


@pytest.mark.parametrize(
    ("advertised", "mine", "not_mine"),
    [
        ("[2001:db8::1]:5070", "sip:[2001:db8::1]:5070", "sip:[2001:db8::1]:5080"),
        ("[2001:db8::1]", "sip:[2001:db8::1]", "sip:[2001:db8::2]"),
        ("sip.example.com:5070", "sip:SIP.example.com:5070", "sip:sip.example.com:5080"),
    ],
)
async def test_advertised_address_starts_and_is_myself(
    advertised: str, mine: str, not_mine: str
) -> None:
    """An IPv6 ``advertised_address`` passed ``check-config`` and then crashed ``serve``
    (``int("db8::1]")``) while building the "myself" table."""
    storage = MemoryStorage()
    await storage.open()
    app = SipApplication(SipscaConfig(server=ServerConfig(advertised_address=advertised)), storage)
    await app.start(("udp:127.0.0.1:0",))
    try:
        assert app.router.is_myself(parse_uri(mine))
        assert not app.router.is_myself(parse_uri(not_mine))
    finally:
        await app.stop()
        await storage.close()
