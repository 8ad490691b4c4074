"""A member that joined its theme from the outlier queue says so in a column of its own.

Before this revision a joined member carried its own theme in ``suggested_theme_id`` (with the
similarity in ``suggested_similarity``), the fields that hold the nearest-theme hint of a segment in
the queue. The upgrade moves those values to ``joined_similarity`` and clears the hint fields, so
each column has one meaning.

Revision ID: 0003_joined_similarity
Revises: 0002_review_compare_runs
Create Date: 2026-11-27
"""
from alembic import op
import sqlalchemy as sa

revision = '0003_joined_similarity'
down_revision = '0002_review_compare_runs'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('membership', schema=None) as batch_op:
        batch_op.add_column(sa.Column('joined_similarity', sa.Float(), nullable=True))
    op.execute("UPDATE membership SET joined_similarity = suggested_similarity, suggested_theme_id = NULL, "
               "suggested_similarity = 0 WHERE theme_id IS NOT NULL AND suggested_theme_id = theme_id")


def downgrade() -> None:
    op.execute("UPDATE membership SET suggested_theme_id = theme_id, suggested_similarity = joined_similarity "
               "WHERE joined_similarity IS NOT NULL")
    with op.batch_alter_table('membership', schema=None) as batch_op:
        batch_op.drop_column('joined_similarity')
