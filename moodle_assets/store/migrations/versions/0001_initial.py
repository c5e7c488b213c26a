"""Create the six contract tables and seed one config row per target.

Revision ID: 0001
Revises: 
Create Date: 2026-11-26
"""
from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('course_category',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('moodle_category_id', sa.BigInteger(), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('parent_moodle_category_id', sa.BigInteger(), nullable=True),
    sa.Column('path', sa.Text(), nullable=True),
    sa.Column('depth', sa.Integer(), nullable=True),
    sa.Column('sort_order', sa.BigInteger(), nullable=True),
    sa.Column('is_visible', sa.Boolean(), nullable=True),
    sa.Column('is_active', sa.Boolean(), nullable=False),
    sa.Column('synced_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_course_category')),
    sa.UniqueConstraint('moodle_category_id', name=op.f('uq_course_category_moodle_category_id'))
    )
    op.create_table('integration_sync_config',
    sa.Column('target', sa.String(length=32), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('frequency_minutes', sa.Integer(), nullable=False),
    sa.Column('last_run_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('next_run_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint('frequency_minutes >= 1', name=op.f('ck_integration_sync_config_frequency_positive')),
    sa.PrimaryKeyConstraint('target', name=op.f('pk_integration_sync_config'))
    )
    op.create_table('integration_sync_run',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('target', sa.String(length=32), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('trigger', sa.String(length=16), nullable=False),
    sa.Column('dagster_run_id', sa.String(length=64), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('forced', sa.Boolean(), nullable=False),
    sa.Column('rows_fetched', sa.Integer(), nullable=True),
    sa.Column('rows_inserted', sa.Integer(), nullable=True),
    sa.Column('rows_updated', sa.Integer(), nullable=True),
    sa.Column('rows_unchanged', sa.Integer(), nullable=True),
    sa.Column('rows_deactivated', sa.Integer(), nullable=True),
    sa.Column('rows_rejected', sa.Integer(), nullable=True),
    sa.Column('rows_unmatched', sa.Integer(), nullable=True),
    sa.Column('requests_made', sa.Integer(), nullable=True),
    sa.Column('retries', sa.Integer(), nullable=True),
    sa.Column('responses_429', sa.Integer(), nullable=True),
    sa.Column('backoff_seconds', sa.Numeric(precision=12, scale=3, asdecimal=False), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('skip_reason', sa.Text(), nullable=True),
    sa.CheckConstraint("status IN ('RUNNING', 'SUCCESS', 'FAILED', 'SKIPPED')", name=op.f('ck_integration_sync_run_status_known')),
    sa.CheckConstraint("trigger IN ('SCHEDULE', 'MANUAL', 'API', 'GRAPHQL', 'CLI')", name=op.f('ck_integration_sync_run_trigger_known')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_integration_sync_run'))
    )
    with op.batch_alter_table('integration_sync_run', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_integration_sync_run_dagster_run_id'), ['dagster_run_id'], unique=False)
        batch_op.create_index('ix_integration_sync_run_target_started_at', ['target', 'started_at'], unique=False)
        batch_op.create_index('uq_integration_sync_run_one_running', ['target'], unique=True, sqlite_where=sa.text("status = 'RUNNING' AND NOT forced"), postgresql_where=sa.text("status = 'RUNNING' AND NOT forced"))

    op.create_table('users',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('email', sa.String(length=320), nullable=True),
    sa.Column('moodle_user_id', sa.BigInteger(), nullable=True),
    sa.Column('username', sa.Text(), nullable=True),
    sa.Column('first_name', sa.Text(), nullable=True),
    sa.Column('last_name', sa.Text(), nullable=True),
    sa.Column('id_number', sa.Text(), nullable=True),
    sa.Column('is_suspended', sa.Boolean(), nullable=True),
    sa.Column('last_access_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('is_active', sa.Boolean(), nullable=False),
    sa.Column('synced_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_users')),
    sa.UniqueConstraint('email', name=op.f('uq_users_email')),
    sa.UniqueConstraint('moodle_user_id', name=op.f('uq_users_moodle_user_id'))
    )
    op.create_table('course_catalog',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('moodle_course_id', sa.BigInteger(), nullable=False),
    sa.Column('category_id', sa.Integer(), nullable=True),
    sa.Column('moodle_category_id', sa.BigInteger(), nullable=True),
    sa.Column('shortname', sa.Text(), nullable=False),
    sa.Column('fullname', sa.Text(), nullable=False),
    sa.Column('summary', sa.Text(), nullable=True),
    sa.Column('summary_format', sa.Integer(), nullable=True),
    sa.Column('id_number', sa.Text(), nullable=True),
    sa.Column('is_visible', sa.Boolean(), nullable=True),
    sa.Column('start_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('end_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('price', sa.Numeric(precision=18, scale=4), nullable=True),
    sa.Column('currency', sa.String(length=3), nullable=True),
    sa.Column('is_active', sa.Boolean(), nullable=False),
    sa.Column('synced_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint('price IS NOT NULL OR currency IS NULL', name=op.f('ck_course_catalog_currency_needs_price')),
    sa.CheckConstraint('price IS NULL OR price >= 0', name=op.f('ck_course_catalog_price_not_negative')),
    sa.ForeignKeyConstraint(['category_id'], ['course_category.id'], name=op.f('fk_course_catalog_category_id_course_category')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_course_catalog')),
    sa.UniqueConstraint('moodle_course_id', name=op.f('uq_course_catalog_moodle_course_id'))
    )
    with op.batch_alter_table('course_catalog', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_course_catalog_category_id'), ['category_id'], unique=False)

    op.create_table('user_course_enrollment',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('course_id', sa.Integer(), nullable=False),
    sa.Column('moodle_user_id', sa.BigInteger(), nullable=True),
    sa.Column('moodle_course_id', sa.BigInteger(), nullable=True),
    sa.Column('is_active', sa.Boolean(), nullable=False),
    sa.Column('roles', sa.Text(), nullable=True),
    sa.Column('last_access_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('first_seen_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('synced_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['course_id'], ['course_catalog.id'], name=op.f('fk_user_course_enrollment_course_id_course_catalog')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_user_course_enrollment_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_user_course_enrollment')),
    sa.UniqueConstraint('user_id', 'course_id', name=op.f('uq_user_course_enrollment_user_id_course_id'))
    )
    with op.batch_alter_table('user_course_enrollment', schema=None) as batch_op:
        batch_op.create_index('ix_user_course_enrollment_course_id', ['course_id'], unique=False)


    # One config row per target: disabled until an operator turns it on, with a sensible
    # rhythm (the catalog changes slowly; people and enrolments change through the day).
    # Literal values on purpose: a migration must not change when app constants do.
    config = sa.table(
        "integration_sync_config",
        sa.column("target", sa.String),
        sa.column("enabled", sa.Boolean),
        sa.column("frequency_minutes", sa.Integer),
    )
    op.bulk_insert(
        config,
        [
            {"target": "COURSE_CATALOG", "enabled": False, "frequency_minutes": 360},
            {"target": "USER_DIRECTORY", "enabled": False, "frequency_minutes": 60},
            {"target": "ENROLLMENTS", "enabled": False, "frequency_minutes": 60},
        ],
    )


def downgrade() -> None:
    with op.batch_alter_table('user_course_enrollment', schema=None) as batch_op:
        batch_op.drop_index('ix_user_course_enrollment_course_id')

    op.drop_table('user_course_enrollment')
    with op.batch_alter_table('course_catalog', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_course_catalog_category_id'))

    op.drop_table('course_catalog')
    op.drop_table('users')
    with op.batch_alter_table('integration_sync_run', schema=None) as batch_op:
        batch_op.drop_index('uq_integration_sync_run_one_running', sqlite_where=sa.text("status = 'RUNNING' AND NOT forced"), postgresql_where=sa.text("status = 'RUNNING' AND NOT forced"))
        batch_op.drop_index('ix_integration_sync_run_target_started_at')
        batch_op.drop_index(batch_op.f('ix_integration_sync_run_dagster_run_id'))

    op.drop_table('integration_sync_run')
    op.drop_table('integration_sync_config')
    op.drop_table('course_category')
