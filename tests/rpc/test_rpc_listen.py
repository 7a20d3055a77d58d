"""``check_rpc_listen``: the management API is loopback-only unless a token is set."""

from __future__ import annotations

import pytest

from sipsca.errors import ConfigError
from sipsca.rpc.app import check_rpc_listen
from sipsca.rpc.listen import client_url, is_loopback_host, parse_listen

LOOPBACK = ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "LOCALHOST", "localhost.",
            "::ffff:127.0.0.1"]  # fmt: skip
NOT_LOOPBACK = ["0.0.0.0", "::", "", "192.0.2.10", "10.0.0.1", "2001:db8::1", "example.com",
                "localhost.example.com", "128.0.0.1"]  # fmt: skip


@pytest.mark.parametrize("host", LOOPBACK)
def test_loopback_needs_no_token(host: str) -> None:
    assert is_loopback_host(host)
    check_rpc_listen(host, "")


@pytest.mark.parametrize("host", NOT_LOOPBACK)
def test_non_loopback_needs_a_token(host: str) -> None:
    assert not is_loopback_host(host)
    with pytest.raises(ConfigError, match=r"a non-loopback rpc listen address needs \[rpc\] token"):
        check_rpc_listen(host, "")
    with pytest.raises(ConfigError):
        check_rpc_listen(host, "   ")  # blank is no token
    check_rpc_listen(host, "t0k3n")


@pytest.mark.parametrize(
    ("listen", "expected", "url"),
    [
        ("127.0.0.1:5080", ("127.0.0.1", 5080), "http://127.0.0.1:5080/RPC"),
        ("[::1]:5080", ("::1", 5080), "http://[::1]:5080/RPC"),
        ("0.0.0.0:8080", ("0.0.0.0", 8080), "http://127.0.0.1:8080/RPC"),
        ("[::]:8080", ("::", 8080), "http://[::1]:8080/RPC"),
        ("localhost:1", ("localhost", 1), "http://localhost:1/RPC"),
    ],
)
def test_parse_listen(listen: str, expected: tuple[str, int], url: str) -> None:
    assert parse_listen(listen) == expected
    assert client_url(listen) == url


@pytest.mark.parametrize("listen", ["127.0.0.1", "::1:5080", "host:http", "host:70000", ":5080"])
def test_parse_listen_rejects(listen: str) -> None:
    with pytest.raises(ConfigError):
        parse_listen(listen)
