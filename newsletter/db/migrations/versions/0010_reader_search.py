"""indexes for the console: readers by name or address, growth and churn by day, recent bounces

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 09:00:00

"""

from alembic import op

# revision identifiers, used by Alembic.
revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade():
    postgresql = op.get_bind().dialect.name == "postgresql"
    # Prefix searches are range scans in byte order: SQLite's BINARY collation, and on
    # PostgreSQL "C", whatever the database's own collation (which orders "a-b" and "ab"
    # by its own rules, so that a range over it is not a prefix).
    if postgresql:
        op.execute(
            'CREATE INDEX ix_subscriber_name_search ON subscriber (lower(name) COLLATE "C", id)'
        )
        op.execute('CREATE INDEX ix_subscriber_email_search ON subscriber (email COLLATE "C")')
    else:
        # The unique index on email is already in byte order here.
        op.execute("CREATE INDEX ix_subscriber_name_search ON subscriber (lower(name), id)")
    op.create_index("ix_subscriber_confirmed_at", "subscriber", ["confirmed_at"])
    op.create_index("ix_subscriber_unsubscribed_at", "subscriber", ["unsubscribed_at"])
    op.create_index("ix_bounce_event_received_at", "bounce_event", ["received_at"])


def downgrade():
    op.drop_index("ix_bounce_event_received_at", table_name="bounce_event")
    op.drop_index("ix_subscriber_unsubscribed_at", table_name="subscriber")
    op.drop_index("ix_subscriber_confirmed_at", table_name="subscriber")
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_subscriber_email_search", table_name="subscriber")
    op.drop_index("ix_subscriber_name_search", table_name="subscriber")
