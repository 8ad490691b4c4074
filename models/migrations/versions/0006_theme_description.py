"""Each theme keeps its one-line description (a central clause of a member, with its participant).

The theme's name stays in ``label``; runs stored before this revision have no description (NULL).

Revision ID: 0006_theme_description
Revises: 0005_coding_links
Create Date: 2026-12-04
"""
from alembic import op
import sqlalchemy as sa

revision = '0006_theme_description'
down_revision = '0005_coding_links'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN (nullable): older runs stay readable, without a description.
    op.add_column('theme', sa.Column('description', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('theme', schema=None) as batch_op:
        batch_op.drop_column('description')
