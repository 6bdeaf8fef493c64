"""article: the byline and lead image a feed may give, shown in the digest when present

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 12:00:00

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("article", schema=None) as batch_op:
        batch_op.add_column(sa.Column("author", sa.String(length=300), nullable=True))
        batch_op.add_column(sa.Column("image_url", sa.String(length=2000), nullable=True))
        batch_op.add_column(sa.Column("image_alt", sa.String(length=300), nullable=True))
        batch_op.add_column(sa.Column("image_width", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("image_height", sa.Integer(), nullable=True))


def downgrade():
    # ALTER TABLE ... DROP COLUMN, not a rebuild: SQLite (3.35 and later) rebuilding the
    # table would drop it under edition_article's foreign key.
    with op.batch_alter_table("article", schema=None, recreate="never") as batch_op:
        batch_op.drop_column("image_height")
        batch_op.drop_column("image_width")
        batch_op.drop_column("image_alt")
        batch_op.drop_column("image_url")
        batch_op.drop_column("author")
