"""bounce events: one row per DSN bounce or ARF complaint acted on

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 19:39:09.213211

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "bounce_event",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "delivery_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("subscriber_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=12), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=True),
        sa.Column("diagnostic", sa.String(length=500), nullable=False),
        sa.Column("source", sa.String(length=120), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "kind IN ('hard', 'soft', 'policy', 'complaint')", name=op.f("ck_bounce_event_kind")
        ),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["delivery.id"],
            name=op.f("fk_bounce_event_delivery_id_delivery"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscriber.id"],
            name=op.f("fk_bounce_event_subscriber_id_subscriber"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bounce_event")),
        sa.UniqueConstraint("fingerprint", name=op.f("uq_bounce_event_fingerprint")),
    )
    with op.batch_alter_table("bounce_event", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_bounce_event_delivery_id"), ["delivery_id"], unique=False
        )
        batch_op.create_index(
            "ix_bounce_event_subscriber_kind_received",
            ["subscriber_id", "kind", "received_at"],
            unique=False,
        )


def downgrade():
    with op.batch_alter_table("bounce_event", schema=None) as batch_op:
        batch_op.drop_index("ix_bounce_event_subscriber_kind_received")
        batch_op.drop_index(batch_op.f("ix_bounce_event_delivery_id"))

    op.drop_table("bounce_event")
