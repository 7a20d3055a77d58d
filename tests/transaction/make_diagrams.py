"""Render the transaction state machines from their ``_TRANSITIONS`` tables.

The tables in ``docs/transactions.md`` are this script's output, pasted between the
GENERATED markers (``test_docs.py`` fails when they drift). Run::

    .venv/bin/python tests/transaction/make_diagrams.py            # print
    .venv/bin/python tests/transaction/make_diagrams.py --write    # update the doc
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

from sipsca.transaction._client import ClientInviteTransaction, ClientNonInviteTransaction
from sipsca.transaction._core import Effect, Input, State, Transaction
from sipsca.transaction._server import ServerInviteTransaction, ServerNonInviteTransaction
from sipsca.transaction.timers import Timer

MACHINES: list[tuple[str, type[Transaction]]] = [
    ("INVITE client transaction (RFC 3261 17.1.1, RFC 6026)", ClientInviteTransaction),
    ("Non-INVITE client transaction (RFC 3261 17.1.2)", ClientNonInviteTransaction),
    ("INVITE server transaction (RFC 3261 17.2.1, RFC 6026)", ServerInviteTransaction),
    ("Non-INVITE server transaction (RFC 3261 17.2.2)", ServerNonInviteTransaction),
]


def _input(event: Input | Timer) -> str:
    return f"timer {event.value}" if isinstance(event, Timer) else event.value


def _effect(effect: Effect | None) -> str:
    return "—" if effect is None else f"`{getattr(effect, '__name__', '?').lstrip('_')}`"


def _doc(effect: Effect) -> str:
    return " ".join((inspect.getdoc(effect) or "").split())


def render() -> str:
    """Markdown: per machine a transition table, a mermaid diagram and the effects."""
    out: list[str] = []
    for title, machine in MACHINES:
        table = machine._TRANSITIONS
        out.append(f"### {title}")
        out.append("")
        out.append(f"`{machine.__name__}`, initial state `{machine.INITIAL.value}`.")
        out.append("")
        out.append("| State | Input | Effect | Next state |")
        out.append("| --- | --- | --- | --- |")
        for (state, event), (effect, new_state) in table.items():
            out.append(
                f"| {state.value} | {_input(event)} | {_effect(effect)} | {new_state.value} |"
            )
        out.append("")
        out.append("```mermaid")
        out.append("stateDiagram-v2")
        out.append(f"    [*] --> {machine.INITIAL.value}")
        for (state, event), (effect, new_state) in table.items():
            target = "[*]" if new_state is State.TERMINATED else new_state.value
            label = _input(event) + ("" if effect is None else " / " + _effect(effect).strip("`"))
            out.append(f"    {state.value} --> {target}: {label}")
        out.append("```")
        out.append("")
        out.append("| Effect | What it does |")
        out.append("| --- | --- |")
        seen: set[str] = set()
        for effect, _ in table.values():
            if effect is None or _effect(effect) in seen:
                continue
            seen.add(_effect(effect))
            out.append(f"| {_effect(effect)} | {_doc(effect)} |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


DOC = Path(__file__).resolve().parents[2] / "docs" / "transactions.md"
BEGIN = "<!-- BEGIN GENERATED: tests/transaction/make_diagrams.py -->"
END = "<!-- END GENERATED -->"


def write(doc: Path = DOC) -> None:
    """Replace the text between the GENERATED markers of ``doc`` with :func:`render`."""
    text = doc.read_text(encoding="utf-8")
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    doc.write_text(f"{head}{BEGIN}\n\n{render()}\n{END}{tail}", encoding="utf-8")


if __name__ == "__main__":
    if "--write" in sys.argv[1:]:
        write()
    else:
        print(render(), end="")
