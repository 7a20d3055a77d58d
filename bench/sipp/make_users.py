"""Write the SIPp injection file of N distinct AoR users (default 10,000): users10k.csv.

    python bench/sipp/make_users.py [N] [PATH]

Line format ``USER;PASSWORD;`` after the ``SEQUENTIAL`` header; users are ``line00000``..,
passwords ``pw-<user>`` (used only when the server runs with digest authentication).
"""

from __future__ import annotations

import sys
from pathlib import Path


def write(n: int, path: Path) -> None:
    lines = ["SEQUENTIAL"] + [f"line{i:05d};pw-line{i:05d};" for i in range(n)]
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(__file__).with_name("users10k.csv")
    write(count, out)
