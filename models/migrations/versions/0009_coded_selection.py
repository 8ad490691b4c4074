"""The spans a coder selected in an imported file are kept beside the segment codings they gave.

A new table ``coded_selection``; coders imported before it have no spans, and an export writes their codes
on the segments they were mapped to, as before.

Revision ID: 0009_coded_selection
Revises: 0008_study_settings
Create Date: 2026-12-08
"""
from alembic import op
import sqlalchemy as sa

revision = '0009_coded_selection'
down_revision = '0008_study_settings'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'coded_selection',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('study_id', sa.Integer(), nullable=False),
        sa.Column('coder_id', sa.Integer(), nullable=False),
        sa.Column('source_id', sa.Integer(), nullable=False),
        sa.Column('start', sa.Integer(), nullable=False),
        sa.Column('end', sa.Integer(), nullable=False),
        sa.Column('code', sa.String(length=300), nullable=False),
        sa.Column('origin', sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(['coder_id'], ['coder.id'], ),
        sa.ForeignKeyConstraint(['source_id'], ['source.id'], ),
        sa.ForeignKeyConstraint(['study_id'], ['study.id'], ),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('coded_selection', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_coded_selection_coder_id'), ['coder_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_coded_selection_study_id'), ['study_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('coded_selection', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_coded_selection_study_id'))
        batch_op.drop_index(batch_op.f('ix_coded_selection_coder_id'))
    op.drop_table('coded_selection')
