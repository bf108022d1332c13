"""`python -m registry.migrations revision -m "what changed"`: a new revision script in versions/.

The script holds what `alembic revision --autogenerate` finds between registry.models and a scratch SQLite
database brought to the newest revision; read it, and fix what autogenerate cannot see (renames, data).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from alembic import command
from sqlalchemy import create_engine

from registry.migrations import config, next_revision, upgrade


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m registry.migrations")
    sub = parser.add_subparsers(dest="command", required=True)
    revision = sub.add_parser("revision", help="write a new revision from the models' changes")
    revision.add_argument("-m", "--message", required=True)
    revision.add_argument("--empty", action="store_true", help="no autogenerate: an empty script")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        engine = create_engine(f"sqlite:///{Path(scratch) / 'head.db'}")
        try:
            with engine.begin() as conn:
                upgrade(conn)
                cfg = config(conn)
                command.revision(cfg, message=args.message, autogenerate=not args.empty,
                                 rev_id=next_revision(cfg))
        finally:
            engine.dispose()


if __name__ == "__main__":
    main()
