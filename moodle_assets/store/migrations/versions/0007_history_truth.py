"""Sync runs record the rows they left out on purpose, so their counts add up.

`rows_skipped`: fetched rows not stored by design (Moodle's site course, the guest user, an
enrollment of a user not in the user directory yet). With it, for a finished SUCCESS row:
rows_fetched = rows_inserted + rows_updated + rows_unchanged + rows_rejected + rows_skipped.
Rows written before this revision have NULL (unknown), not 0.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("integration_sync_run") as batch:
        batch.add_column(sa.Column("rows_skipped", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("integration_sync_run") as batch:
        batch.drop_column("rows_skipped")
