"""Alembic migrations of taas-server's schema (run programmatically; no alembic.ini)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

# The newest revision in versions/ (a test checks it against Alembic's own view). Knowing it
# lets a start on a current schema skip importing and running Alembic (most of a second on a
# loaded machine).
HEAD = "0009"


def is_current(engine: Engine) -> bool:
    """Whether the database's schema is already at HEAD (one small query, no Alembic)."""
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT version_num FROM alembic_version")).all()
    except DBAPIError:
        return False  # no schema yet (or unreadable): let Alembic decide and report
    return [r[0] for r in rows] == [HEAD]


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Create or migrate the schema to `revision` on the engine's database."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def script_head() -> str | None:
    """The head revision according to Alembic's scripts."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent))
    return ScriptDirectory.from_config(cfg).get_current_head()
