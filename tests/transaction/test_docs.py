"""docs/transactions.md shows the state tables as the code has them."""

from __future__ import annotations

from .make_diagrams import BEGIN, DOC, END, render


def test_generated_tables_are_up_to_date() -> None:
    text = DOC.read_text(encoding="utf-8")
    generated = text.split(BEGIN, 1)[1].split(END, 1)[0]
    assert generated.strip() == render().strip(), "run tests/transaction/make_diagrams.py --write"
