"""Persistence: SQLAlchemy models, repositories (all SQL), engine/session, migrations."""
