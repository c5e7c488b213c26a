"""Sync runs record which worker owns them and when that worker started.

`worker_token` is set when a run worker takes a RUNNING row (a front door may claim the row
earlier, while the Dagster run waits in the queue); heartbeat and finish only touch a row whose
token is the caller's. `worker_started_at` is when the sync itself began, so durations leave
out queue and process start-up.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("integration_sync_run") as batch:
        batch.add_column(sa.Column("worker_token", sa.String(length=36), nullable=True))
        batch.add_column(sa.Column("worker_started_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("integration_sync_run") as batch:
        batch.drop_column("worker_started_at")
        batch.drop_column("worker_token")
