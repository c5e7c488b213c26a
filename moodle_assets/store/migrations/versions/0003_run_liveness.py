"""Sync runs record which process is responsible for them, and when their changes landed.

- `worker_host`, `worker_pid`: the process that holds the row's liveness lock (the `sync`
  command from the moment it claims, a run worker from the moment it takes the row), so the
  person paged for a stuck sync knows where to look.
- `worker_lock`: which liveness lock that process holds (PostgreSQL advisory lock or a file
  lock beside the SQLite file); NULL when none is held, and the row is then judged by its
  Dagster run and heartbeat only (e.g. a row taken by a worker of an older version).
- `applied_at`: when the sync's write transaction committed (set inside that transaction), so
  a run whose worker died between its commit and closing the row still says its changes landed.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("integration_sync_run") as batch:
        batch.add_column(sa.Column("worker_host", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("worker_pid", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("worker_lock", sa.Text(), nullable=True))
        batch.add_column(sa.Column("applied_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("integration_sync_run") as batch:
        batch.drop_column("applied_at")
        batch.drop_column("worker_lock")
        batch.drop_column("worker_pid")
        batch.drop_column("worker_host")
