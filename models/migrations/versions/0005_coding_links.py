"""A coding link says where it came from and, for the learner's, how sure it was.

Revision ID: 0005_coding_links
Revises: 0004_second_pass_themes
Create Date: 2026-12-04
"""
from alembic import op
import sqlalchemy as sa

revision = '0005_coding_links'
down_revision = '0004_second_pass_themes'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMNs, nullable: codings stored before keep their rows and read as "imported".
    op.add_column('coding', sa.Column('via', sa.String(length=20), nullable=True))
    op.add_column('coding', sa.Column('probability', sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('coding', schema=None) as batch_op:
        batch_op.drop_column('probability')
        batch_op.drop_column('via')
