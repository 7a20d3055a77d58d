"""Fuzz target for the SIP parser: the only exception allowed out is RemoteProtocolError.

With atheris installed (``pip install atheris``), run it as a libFuzzer target::

    python fuzz/fuzz_parser.py -max_len=4096 -runs=1000000 [corpus_dir]

Without atheris it runs a stdlib-only loop of random and mutated inputs::

    .venv/bin/python fuzz/fuzz_parser.py --iterations 100000 --seed 1

The invariant is h11's (``fuzz/afl-server.py``): for any bytes, ``parse_message``, every
typed accessor on its result, ``validate_request``/``validate_response``, ``make_response``
and ``StreamFramer.feed`` either succeed or raise RemoteProtocolError; an accepted message
re-serialises to bytes that parse back to the same message. Anything else is a bug, and the
loop stops with the input that caused it written to ``crash-<sha1>.bin``.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import random
import sys
from collections.abc import Callable
from pathlib import Path

from sipsca.errors import RemoteProtocolError
from sipsca.sip import (
    NameAddr,
    SipMessage,
    SipRequest,
    SipResponse,
    StreamFramer,
    check_message,
    make_response,
    parse_auth_params,
    parse_message,
    parse_name_addr,
    parse_value_params,
    validate_request,
    validate_response,
)

SEEDS_DIR = Path(__file__).resolve().parents[1] / "tests" / "sip" / "data" / "rfc4475"
SPECIAL = [
    b"\r",
    b"\n",
    b"\r\n",
    b"\r\n ",
    b"\x00",
    b'"',
    b"\\",
    b"<",
    b">",
    b";",
    b",",
    b":",
    b"=",
    b"%",
    b" ",
    b"\xff",
]
ACCESSORS = (
    "call_id",
    "cseq",
    "from_",
    "to",
    "from_tag",
    "to_tag",
    "vias",
    "top_via",
    "contacts",
    "max_forwards",
    "expires",
    "date",
    "content_type",
    "event",
)


def _attempt(action: Callable[[], object]) -> object:
    try:
        return action()
    except RemoteProtocolError:
        return None


def _touch(msg: SipMessage) -> None:
    for name in ACCESSORS:
        _attempt(lambda name=name: getattr(msg, name))  # type: ignore[misc]
    for getter in (lambda: msg.from_, lambda: msg.to):
        value = _attempt(getter)
        if isinstance(value, NameAddr):
            _attempt(lambda value=value: value.uri)  # type: ignore[misc]
    contacts = _attempt(lambda: msg.contacts)
    for contact in contacts if isinstance(contacts, list) else ():
        if contact.uri_text != "*":
            _attempt(lambda contact=contact: contact.uri)  # type: ignore[misc]
    for value in msg.route_set() + msg.route_set("route") + msg.headers.values("call-info"):
        _attempt(lambda value=value: parse_name_addr(value).uri)  # type: ignore[misc]
    for name in ("authorization", "proxy-authorization", "www-authenticate", "proxy-authenticate"):
        raw = msg.headers.get(name)
        if raw is not None:
            _attempt(lambda raw=raw: parse_auth_params(raw))  # type: ignore[misc]
    for name in ("event", "subscription-state", "replaces", "content-type"):
        raw = msg.headers.get(name)
        if raw is not None:
            _attempt(lambda raw=raw: parse_value_params(raw))  # type: ignore[misc]
    if isinstance(msg, SipRequest):
        _attempt(lambda: msg.ruri)
        validate_request(msg)
        make_response(msg, 400, "Bad Request", to_tag="x")
    elif isinstance(msg, SipResponse):
        validate_response(msg)
    _attempt(lambda: check_message(msg))
    copy = msg.copy()
    out = copy.to_bytes()  # adds or fixes Content-Length on the copy
    again = parse_message(out)
    if (
        list(again.headers) != list(copy.headers)
        or again.body != msg.body
        or again.to_bytes() != out
    ):
        raise AssertionError("re-serialised message does not parse back to itself")


def test_one_input(data: bytes) -> None:
    """The fuzz target: raises only on a bug (anything but RemoteProtocolError escaping)."""
    try:
        msg = parse_message(data)
    except RemoteProtocolError:
        pass
    else:
        _touch(msg)
    framer = StreamFramer()
    try:
        for start in range(0, len(data), 61):
            for raw in framer.feed(data[start : start + 61]):
                try:
                    _touch(parse_message(raw, stream=True))
                except RemoteProtocolError:
                    pass
    except RemoteProtocolError:
        pass


def _seeds() -> list[bytes]:
    seeds = [path.read_bytes() for path in sorted(SEEDS_DIR.glob("*.dat"))]
    return seeds or [
        b"OPTIONS sip:a@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nl: 0\r\n\r\n"
    ]


def _mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        pos = rng.randint(0, len(buf))
        kind = rng.randrange(6)
        if kind == 0 and buf:
            buf[min(pos, len(buf) - 1)] ^= 1 << rng.randrange(8)
        elif kind == 1:
            del buf[pos:]
        elif kind == 2:
            buf[pos:pos] = rng.choice(SPECIAL)
        elif kind == 3:
            del buf[pos : pos + rng.randint(1, 16)]
        elif kind == 4:
            buf[pos:pos] = buf[pos : pos + rng.randint(1, 64)]
        else:
            buf[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    return bytes(buf)


def run_loop(iterations: int, seed: int) -> int:
    """Plain random loop (no atheris): returns 0, or 1 after writing a crashing input."""
    rng = random.Random(seed)
    seeds = _seeds()
    for i in range(iterations):
        if i % 4 == 0:
            data = bytes(rng.randrange(256) for _ in range(rng.randint(0, 512)))
        else:
            data = _mutate(rng, rng.choice(seeds))
        try:
            test_one_input(data)
        except Exception:
            name = f"crash-{hashlib.sha1(data).hexdigest()}.bin"
            Path(name).write_bytes(data)
            print(f"iteration {i}: crash, input saved to {name}", file=sys.stderr)
            raise
    print(f"{iterations} inputs, no exception other than RemoteProtocolError")
    return 0


def main(argv: list[str]) -> int:
    """Run under atheris when it is importable (and --iterations is not given), else the loop."""
    try:
        atheris = importlib.import_module("atheris")
    except ImportError:
        atheris = None
    if atheris is not None and "--iterations" not in argv:
        atheris.Setup(argv, test_one_input)
        atheris.Fuzz()
        return 0
    parser = argparse.ArgumentParser(description="stdlib fuzz loop for sipsca.sip")
    parser.add_argument("--iterations", type=int, default=10_000, help="inputs to try")
    parser.add_argument("--seed", type=int, default=0, help="random seed (reproducible runs)")
    args = parser.parse_args(argv[1:])
    return run_loop(args.iterations, args.seed)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
