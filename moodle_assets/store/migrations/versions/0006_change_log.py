"""The change log: what each sync changed, row by row, written in the sync's own transaction.

`integration_change_log.id` is the cursor downstream consumers poll with (docs/data.md).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "integration_change_log",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("target", sa.String(32), nullable=False),
        sa.Column("entity", sa.String(32), nullable=False),
        sa.Column("moodle_key", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("changed_columns", sa.Text(), nullable=True),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "kind IN ('inserted', 'updated', 'deactivated', 'reactivated')",
            name=op.f("ck_integration_change_log_kind_known"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_integration_change_log")),
    )
    op.create_index("ix_integration_change_log_run_id", "integration_change_log", ["run_id"])
    op.create_index("ix_integration_change_log_target_id", "integration_change_log", ["target", "id"])


def downgrade() -> None:
    op.drop_index("ix_integration_change_log_target_id", table_name="integration_change_log")
    op.drop_index("ix_integration_change_log_run_id", table_name="integration_change_log")
    op.drop_table("integration_change_log")
