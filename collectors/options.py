"""The command-line options every collector command that talks to the server takes."""

from __future__ import annotations

import argparse
import os


def add_server(p: argparse.ArgumentParser, scope: str, port: int) -> None:
    """--url and --token, from $PERFDASH_URL and $PERFDASH_TOKEN by default: a token in the
    environment stays out of `ps`."""
    p.add_argument(
        "--url",
        default=os.environ.get("PERFDASH_URL"),
        help=f"perfdash server, e.g. http://perfdash:{port} (default: $PERFDASH_URL)",
    )
    p.add_argument(
        "--token",
        default=os.environ.get("PERFDASH_TOKEN"),
        help=f"a token with scope '{scope}' (default: $PERFDASH_TOKEN, which keeps it out of `ps`)",
    )


def require_server(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if not args.url or not args.token:
        parser.error("--url and --token are required (or $PERFDASH_URL and $PERFDASH_TOKEN)")
