"""Tests of the management plane: JSON-RPC methods, the aiohttp app, metrics and ``sipsca rpc``."""
