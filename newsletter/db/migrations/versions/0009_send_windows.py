"""send_window: an edition's ledger rows that wait for their readers' hour, as id ranges

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 10:00:00

With SEND_IN_READER_TIME, planning gives the rows of each moment (DIGEST_HOUR in their
readers' zones) one id range and records it here; beat queues a window's batches when its
moment comes, reading this small table rather than the ledger.

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "send_window",
        sa.Column("edition_id", sa.Integer(), nullable=False),
        sa.Column("opens_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("first_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("last_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("readers", sa.Integer(), nullable=False),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["edition_id"],
            ["edition.id"],
            name=op.f("fk_send_window_edition_id_edition"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("edition_id", "opens_at", name=op.f("pk_send_window")),
    )
    op.create_index(
        "ix_send_window_released_at_opens_at",
        "send_window",
        ["released_at", "opens_at"],
        unique=False,
    )


def downgrade():
    op.drop_index("ix_send_window_released_at_opens_at", table_name="send_window")
    op.drop_table("send_window")
