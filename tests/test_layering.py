"""Import rules between layers, checked on the source with ``ast`` (architecture 6.1, style rule 1).

The core (``sipsca.sip``, ``transaction``, ``dialog``, ``registrar``, ``proxy``, ``sca``,
``auth``, plus the ``config`` and ``errors`` modules) is sans-I/O: it never imports an
event loop, sockets, clocks, randomness, threads, processes or database and HTTP drivers,
nor the layers above it, and never reads the clock (time is a parameter). ``storage`` does
not import the runtime, RPC or CLI layers. After aiohttp's ``test_circular_imports.py`` and
asyncpg's ``test__sourcecode.py``: a failing rule names the module, the line and the import.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

CORE = (
    "sipsca.sip",
    "sipsca.transaction",
    "sipsca.dialog",
    "sipsca.registrar",
    "sipsca.proxy",
    "sipsca.sca",
    "sipsca.auth",
    "sipsca.config",
    "sipsca.errors",
)
IO_MODULES = (
    "asyncio",
    "socket",
    "ssl",
    "selectors",
    "time",
    "random",
    "sqlite3",
    "aiosqlite",
    "asyncpg",
    "aiomysql",
    "redis",
    "aiohttp",
    "uvloop",
    "subprocess",
    "threading",
)
UPPER_LAYERS = ("sipsca.runtime", "sipsca.storage", "sipsca.rpc", "sipsca.cli")
# Qualified names of calls that read the wall clock.
CLOCK_CALLS = frozenset({"datetime.datetime.now", "datetime.datetime.utcnow", "time.time"})


@dataclass(frozen=True)
class Rule:
    """Modules under ``scope`` must not import ``forbidden`` (nor read the clock if asked)."""

    scope: tuple[str, ...]
    forbidden: tuple[str, ...]
    no_clock: bool


RULES = (
    Rule(CORE, IO_MODULES + UPPER_LAYERS, no_clock=True),
    Rule(("sipsca.storage",), ("sipsca.runtime", "sipsca.rpc", "sipsca.cli"), no_clock=False),
)


@dataclass(frozen=True)
class Violation:
    module: str
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.module}:{self.line}: {self.what}"


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """Absolute module named by ``from X import ...`` (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    parts = module.split(".")
    base = parts if is_package else parts[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def imported_names(module: str, source: str, *, is_package: bool = False) -> list[tuple[int, str]]:
    """Every module an import statement in ``source`` may load, with its line.

    ``from a import b`` yields both ``a`` and ``a.b`` (``b`` may be a submodule, as in
    ``from sipsca import runtime``). Imports inside functions and under ``TYPE_CHECKING``
    count too: a layer that needs another for its types still depends on it.
    """
    out: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, is_package, node)
            out.append((node.lineno, base))
            out += [
                (node.lineno, f"{base}.{alias.name}") for alias in node.names if alias.name != "*"
            ]
    return out


def clock_calls(source: str) -> list[tuple[int, str]]:
    """Calls in ``source`` that read the clock, with import aliases resolved."""
    tree = ast.parse(source)
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                aliases[alias.asname or alias.name.split(".")[0]] = (
                    alias.name if alias.asname else alias.name.split(".")[0]
                )
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        parts: list[str] = []
        target: ast.expr = node.func
        while isinstance(target, ast.Attribute):
            parts.append(target.attr)
            target = target.value
        if not isinstance(target, ast.Name):
            continue
        qualified = ".".join([aliases.get(target.id, target.id), *reversed(parts)])
        if qualified in CLOCK_CALLS:
            found.append((node.lineno, qualified))
    return found


def check_source(module: str, source: str, *, is_package: bool = False) -> list[Violation]:
    """Violations of :data:`RULES` by ``module`` whose code is ``source``."""
    violations: list[Violation] = []
    for rule in RULES:
        if not _within(module, rule.scope):
            continue
        for line, name in imported_names(module, source, is_package=is_package):
            if _within(name, rule.forbidden):
                violations.append(Violation(module, line, f"imports {name}"))
        if rule.no_clock:
            violations += [
                Violation(module, line, f"calls {call}()") for line, call in clock_calls(source)
            ]
    return sorted(set(violations), key=lambda v: (v.module, v.line, v.what))


def modules() -> list[tuple[str, Path, bool]]:
    """``(dotted name, path, is_package)`` of every module under src/sipsca."""
    out = []
    for path in sorted((SRC / "sipsca").rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        out.append((".".join(parts), path, is_package))
    return out


def test_the_walk_finds_the_packages() -> None:
    names = {name for name, _, _ in modules()}
    assert {"sipsca", "sipsca.sip", "sipsca.sip.parser", "sipsca.errors", "sipsca.config"} <= names


@pytest.mark.parametrize("rule", RULES, ids=["core-is-sans-io", "storage-below-runtime"])
def test_layering(rule: Rule) -> None:
    violations = [
        str(v)
        for name, path, is_package in modules()
        if _within(name, rule.scope)
        for v in check_source(name, path.read_text("utf-8"), is_package=is_package)
    ]
    assert violations == []


# --- the checker itself -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "import asyncio",
        "import asyncio.events",
        "from asyncio import sleep",
        "import socket as s",
        "import time",
        "from time import monotonic",
        "import random",
        "from redis.asyncio import Redis",
        "import aiohttp.web",
        "import threading, re",
        "def f():\n    import subprocess",
        "if TYPE_CHECKING:\n    from sipsca.storage.base import Storage",
        "from sipsca import runtime",
        "from sipsca.rpc.api import X",
        "import sipsca.cli.main",
        "from ..runtime import app",
        "from .. import storage",
        "from datetime import datetime\nx = datetime.now()",
        "import datetime\nx = datetime.datetime.utcnow()",
        "import datetime as dt\nx = dt.datetime.now(dt.UTC)",
        "from datetime import datetime as D\nx = D.now()",
    ],
)
def test_checker_flags_core_violations(source: str) -> None:
    assert check_source("sipsca.sip.example", source) != []


@pytest.mark.parametrize(
    "source",
    [
        "import re\nimport logging\nfrom dataclasses import dataclass",
        "from datetime import UTC, datetime\nx = datetime(2010, 1, 1, tzinfo=UTC)",
        "from sipsca.sip.uri import parse_uri\nfrom sipsca.errors import RemoteProtocolError",
        "from . import fields\nfrom .headers import Headers",
        "from ..errors import RemoteProtocolError",
        "import ipaddress, hashlib, secrets",
        "def now(t: float) -> float:\n    return t\nnow(1.0)",
        "class C:\n    def time(self) -> int:\n        return 0\nC().time()",
    ],
)
def test_checker_allows_pure_code(source: str) -> None:
    assert check_source("sipsca.sip.example", source) == []


def test_checker_scopes_and_relative_imports() -> None:
    # The runtime may do I/O; storage may import drivers but not the runtime.
    assert check_source("sipsca.runtime.app", "import asyncio\nimport time\ntime.time()") == []
    assert check_source("sipsca.storage.sqlite", "import aiosqlite") == []
    assert [
        str(v) for v in check_source("sipsca.storage.sqlite", "from sipsca.runtime import clock")
    ] == [
        "sipsca.storage.sqlite:1: imports sipsca.runtime",
        "sipsca.storage.sqlite:1: imports sipsca.runtime.clock",
    ]
    # "from .. import runtime" in the sipsca.sip package (__init__) is sipsca.runtime.
    assert check_source("sipsca.sip", "from .. import runtime", is_package=True) != []
    assert check_source("sipsca.sip.parser", "from .. import runtime") != []
    assert check_source("sipsca.sip.parser", "from . import runtime") == []  # sipsca.sip.runtime
    assert check_source("sipsca.config", "import time") != []
    assert check_source("sipsca.errors", "import socket") != []
    assert check_source("sipsca.cli.main", "import socket") == []
    violation = check_source("sipsca.sca.engine", "\n\nimport time\ntime.time()")
    assert [str(v) for v in violation] == [
        "sipsca.sca.engine:3: imports time",
        "sipsca.sca.engine:4: calls time.time()",
    ]
