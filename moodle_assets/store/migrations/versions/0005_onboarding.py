"""Sync runs record who the token was and what the run could not see.

`token_user_id`, `token_username` and `token_is_site_admin` come from Moodle's site info at the
start of every sync: a history row says which account's view of Moodle it reflects (a token of a
user without the needed capabilities sees less). `warning` holds what a person should know
although the run succeeded: rows kept because the token could not see them, fields Moodle did not
show it, courses that refused it.

Revision ID: 0005
Revises: 0002
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("integration_sync_run") as batch:
        batch.add_column(sa.Column("token_user_id", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("token_username", sa.Text(), nullable=True))
        batch.add_column(sa.Column("token_is_site_admin", sa.Boolean(), nullable=True))
        batch.add_column(sa.Column("warning", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("integration_sync_run") as batch:
        batch.drop_column("warning")
        batch.drop_column("token_is_site_admin")
        batch.drop_column("token_username")
        batch.drop_column("token_user_id")
