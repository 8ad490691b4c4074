"""A study's team settings: blind or shared coding, the lead, when the lead opened the comparison.

A new table only: decision logs written before it stay readable as they are (a study without settings
codes blind in team mode; local mode is shared as before).

Revision ID: 0008_study_settings
Revises: 0007_code_info
Create Date: 2026-12-05
"""
from alembic import op
import sqlalchemy as sa

revision = '0008_study_settings'
down_revision = '0007_code_info'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'study_setting',
        sa.Column('study_id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=40), nullable=False),
        sa.Column('value', sa.Text(), nullable=False),
        sa.Column('set_by', sa.String(length=200), nullable=True),
        sa.Column('set_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['study_id'], ['study.id']),
        sa.PrimaryKeyConstraint('study_id', 'name'),
    )


def downgrade() -> None:
    op.drop_table('study_setting')
