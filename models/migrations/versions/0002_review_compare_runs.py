"""Decisions, coders and codings; source retirement, segment cuts and the study lock.

Revision ID: 0002_review_compare_runs
Revises: 0001_first_schema
Create Date: 2026-11-27
"""
from alembic import op
import sqlalchemy as sa

revision = '0002_review_compare_runs'
down_revision = '0001_first_schema'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('coder',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=10), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name')
    )
    op.create_table('review_secret',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('study_lock',
    sa.Column('study', sa.String(length=200), nullable=False),
    sa.Column('owner', sa.String(length=300), nullable=False),
    sa.Column('acquired_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('study')
    )
    op.create_table('coder_token',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('study_id', sa.Integer(), nullable=False),
    sa.Column('coder_id', sa.Integer(), nullable=False),
    sa.Column('token_sha256', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['coder_id'], ['coder.id'], ),
    sa.ForeignKeyConstraint(['study_id'], ['study.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('token_sha256')
    )
    with op.batch_alter_table('coder_token', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_coder_token_coder_id'), ['coder_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_coder_token_study_id'), ['study_id'], unique=False)

    op.create_table('source_cut',
    sa.Column('source_id', sa.Integer(), nullable=False),
    sa.Column('cut', sa.String(length=32), nullable=False),
    sa.Column('segment_ids', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['source_id'], ['source.id'], ),
    sa.PrimaryKeyConstraint('source_id', 'cut')
    )
    op.create_table('coding',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('study_id', sa.Integer(), nullable=False),
    sa.Column('coder_id', sa.Integer(), nullable=False),
    sa.Column('segment_id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=300), nullable=False),
    sa.Column('origin', sa.Text(), nullable=False),
    sa.Column('imported_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['coder_id'], ['coder.id'], ),
    sa.ForeignKeyConstraint(['segment_id'], ['segment.id'], ),
    sa.ForeignKeyConstraint(['study_id'], ['study.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('study_id', 'coder_id', 'segment_id', 'code')
    )
    with op.batch_alter_table('coding', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_coding_coder_id'), ['coder_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_coding_segment_id'), ['segment_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_coding_study_id'), ['study_id'], unique=False)

    op.create_table('decision',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('uid', sa.String(length=36), nullable=False),
    sa.Column('study_id', sa.Integer(), nullable=False),
    sa.Column('coder_id', sa.Integer(), nullable=False),
    sa.Column('coder', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('action', sa.String(length=20), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=True),
    sa.Column('theme_id', sa.Integer(), nullable=True),
    sa.Column('theme_key', sa.String(length=100), nullable=True),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('via', sa.String(length=10), nullable=False),
    sa.ForeignKeyConstraint(['coder_id'], ['coder.id'], ),
    sa.ForeignKeyConstraint(['run_id'], ['run.id'], ),
    sa.ForeignKeyConstraint(['study_id'], ['study.id'], ),
    sa.ForeignKeyConstraint(['theme_id'], ['theme.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('uid')
    )
    with op.batch_alter_table('decision', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_decision_study_id'), ['study_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_decision_theme_key'), ['theme_key'], unique=False)

    op.create_table('theme_key',
    sa.Column('theme_id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=100), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['run.id'], ),
    sa.ForeignKeyConstraint(['theme_id'], ['theme.id'], ),
    sa.PrimaryKeyConstraint('theme_id')
    )
    with op.batch_alter_table('theme_key', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_theme_key_key'), ['key'], unique=False)
        batch_op.create_index(batch_op.f('ix_theme_key_run_id'), ['run_id'], unique=False)

    with op.batch_alter_table('source', schema=None) as batch_op:
        batch_op.add_column(sa.Column('retired_at', sa.DateTime(timezone=True), nullable=True))

    # The decision log is append-only in the database too, not only in the ORM.
    if op.get_bind().dialect.name == "sqlite":
        for what in ("UPDATE", "DELETE"):
            op.execute(f"CREATE TRIGGER decision_no_{what.lower()} BEFORE {what} ON decision "
                       "BEGIN SELECT RAISE(ABORT, 'decisions are append-only'); END")
    elif op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE FUNCTION decision_append_only() RETURNS trigger LANGUAGE plpgsql AS "
                   "$$ BEGIN RAISE EXCEPTION 'decisions are append-only'; END $$")
        op.execute("CREATE TRIGGER decision_append_only BEFORE UPDATE OR DELETE ON decision "
                   "FOR EACH ROW EXECUTE FUNCTION decision_append_only()")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER decision_append_only ON decision")
        op.execute("DROP FUNCTION decision_append_only()")
    with op.batch_alter_table('source', schema=None) as batch_op:
        batch_op.drop_column('retired_at')

    with op.batch_alter_table('theme_key', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_theme_key_run_id'))
        batch_op.drop_index(batch_op.f('ix_theme_key_key'))

    op.drop_table('theme_key')
    with op.batch_alter_table('decision', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_decision_theme_key'))
        batch_op.drop_index(batch_op.f('ix_decision_study_id'))

    op.drop_table('decision')
    with op.batch_alter_table('coding', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_coding_study_id'))
        batch_op.drop_index(batch_op.f('ix_coding_segment_id'))
        batch_op.drop_index(batch_op.f('ix_coding_coder_id'))

    op.drop_table('coding')
    op.drop_table('source_cut')
    with op.batch_alter_table('coder_token', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_coder_token_study_id'))
        batch_op.drop_index(batch_op.f('ix_coder_token_coder_id'))

    op.drop_table('coder_token')
    op.drop_table('study_lock')
    op.drop_table('review_secret')
    op.drop_table('coder')
