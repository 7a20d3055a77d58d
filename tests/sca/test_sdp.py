"""Hold detection (sca-behaviour.md §5.2, decisions.md #5)."""

from __future__ import annotations

import pytest

from sipsca.sca.sdp import HoldState, is_on_hold, sdp_hold_state

from .factory import sdp


@pytest.mark.parametrize(
    ("body", "held"),
    [
        (sdp("sendrecv"), False),
        (sdp("recvonly"), False),
        (sdp(None), False),
        (sdp("sendonly"), True),
        (sdp("inactive"), True),
        (sdp("sendrecv", zero=True), True),
        (sdp("sendonly", session_level=True), True),  # [K] misses this one
        (sdp("inactive", session_level=True), True),
        (sdp("recvonly", session_level=True), False),
    ],
)
def test_hold_detection(body: str, held: bool) -> None:
    assert is_on_hold(body.encode()) is held


def test_media_level_overrides_session_level() -> None:
    body = sdp("sendonly", session_level=True) + "a=sendrecv\r\n"
    assert not is_on_hold(body.encode())


def test_one_held_stream_is_enough_disabled_streams_ignored() -> None:
    body = sdp("sendrecv") + "m=video 0 RTP/AVP 96\r\na=inactive\r\n"
    assert not is_on_hold(body.encode())
    body = sdp("sendrecv") + "m=video 40002 RTP/AVP 96\r\na=inactive\r\n"
    assert is_on_hold(body.encode())


def test_trickle_ice_offer_is_not_hold() -> None:
    body = (
        "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n"
        "a=ice-options:trickle\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
    )
    assert not is_on_hold(body.encode())


def test_no_body_and_non_sdp() -> None:
    assert sdp_hold_state(b"") is HoldState.NO_SDP
    assert sdp_hold_state(b"hello", "text/plain") is HoldState.NO_SDP
    assert sdp_hold_state(sdp("sendrecv").encode()) is HoldState.NOT_HELD


def test_multipart_body() -> None:
    body = (
        "--xyz\r\nContent-Type: application/isup\r\n\r\nbinary\r\n"
        "--xyz\r\nContent-Type: application/sdp\r\n\r\n" + sdp("sendonly") + "--xyz--\r\n"
    ).encode()
    assert is_on_hold(body, 'multipart/mixed;boundary="xyz"')
    assert sdp_hold_state(body, "multipart/mixed") is HoldState.NO_SDP
