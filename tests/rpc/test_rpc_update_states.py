"""``sca.update_appearance`` names the states it accepts, in its help and in docs/sca.md;
an unknown one keeps Kamailio's fault text."""

from __future__ import annotations

from pathlib import Path

import pytest

from sipsca.sca.model import AppearanceState

from .conftest import Server

AOR = "sip:215@example.com"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "sca.md"
STATES = ("idle", "seized", "progressing", "alerting", "active", "held", "held-private")


def test_the_states_are_those_the_engine_parses() -> None:
    accepted = []
    for state in AppearanceState:
        try:
            accepted.append(AppearanceState.from_wire(state.value).value)
        except ValueError:
            pass
    assert tuple(accepted) == STATES


async def test_method_help_lists_the_states(server: Server) -> None:
    text = await server.result("system.methodHelp", "sca.update_appearance")
    listed = text.split("STATE is one of ", 1)[1]
    for state in STATES:
        assert f" {state}," in f" {listed}" or f" {state} " in f" {listed}", (state, text)


@pytest.mark.parametrize("state", ["ringing", "Active", "active-pending"])
async def test_an_unknown_state_keeps_kamailios_fault(server: Server, state: str) -> None:
    assert await server.fault("sca.update_appearance", AOR, 1, state) == (
        500,
        f"{state}: invalid state",
    )


def test_the_rpc_table_of_docs_sca_lists_the_states() -> None:
    row = next(
        line
        for line in DOCS.read_text().splitlines()
        if line.startswith("| `sca.update_appearance")
    )
    for state in STATES:
        assert f"`{state}`" in row, state
