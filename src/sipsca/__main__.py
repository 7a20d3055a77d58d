"""``python -m sipsca`` = the ``sipsca`` command."""

from __future__ import annotations

from sipsca.cli.main import main

main()
