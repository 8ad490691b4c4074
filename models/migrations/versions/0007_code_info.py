"""Imported codes keep where they sit in their tool's codebook, their colour and their description.

A new table ``code_info`` (one row per study and code name); codings stored before have none and export
as before (top-level codes, Themesift's colours).

Revision ID: 0007_code_info
Revises: 0006_theme_description
Create Date: 2026-12-05
"""
from alembic import op
import sqlalchemy as sa

revision = '0007_code_info'
down_revision = '0006_theme_description'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('code_info',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('study_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=300), nullable=False),
    sa.Column('parent', sa.String(length=300), nullable=True),
    sa.Column('color', sa.String(length=7), nullable=True),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('codable', sa.Boolean(), nullable=False),
    sa.Column('origin', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['study_id'], ['study.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('study_id', 'name')
    )
    with op.batch_alter_table('code_info', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_code_info_study_id'), ['study_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('code_info', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_code_info_study_id'))
    op.drop_table('code_info')
