"""Themes found by clustering again the segments the first pass left out are marked.

Revision ID: 0004_second_pass_themes
Revises: 0003_joined_similarity
Create Date: 2026-11-27
"""
from alembic import op
import sqlalchemy as sa

revision = '0004_second_pass_themes'
down_revision = '0003_joined_similarity'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN: batch mode would copy the table, which SQLite's foreign keys refuse.
    op.add_column('theme', sa.Column('second_pass', sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('theme', schema=None) as batch_op:
        batch_op.drop_column('second_pass')
