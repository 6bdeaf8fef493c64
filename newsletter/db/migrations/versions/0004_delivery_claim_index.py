"""delivery: index (edition_id, state, id), so a batch claims its id range from the index

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 21:50:00

With (edition_id, state) alone, claiming the queued rows of one id range read every queued
row of the edition, whenever the planner's statistics lagged behind a freshly planned edition.

"""

from alembic import op

# revision identifiers, used by Alembic.
revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.create_index(
            "ix_delivery_edition_state_id", ["edition_id", "state", "id"], unique=False
        )
        batch_op.drop_index("ix_delivery_edition_state")


def downgrade():
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.create_index("ix_delivery_edition_state", ["edition_id", "state"], unique=False)
        batch_op.drop_index("ix_delivery_edition_state_id")
