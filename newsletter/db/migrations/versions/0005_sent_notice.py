"""sent_notice: the keys of reader mails already handed over, so a redelivered task sends none

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 11:00:00

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "sent_notice",
        sa.Column("key", sa.String(length=32), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscriber.id"],
            name=op.f("fk_sent_notice_subscriber_id_subscriber"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_sent_notice")),
    )
    with op.batch_alter_table("sent_notice", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_sent_notice_subscriber_id"), ["subscriber_id"], unique=False
        )


def downgrade():
    with op.batch_alter_table("sent_notice", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sent_notice_subscriber_id"))
    op.drop_table("sent_notice")
