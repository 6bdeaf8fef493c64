"""Migrations go back as well as forward, with digests already sent."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from flask_migrate import downgrade, upgrade
from sqlalchemy import func, inspect, select, text

from newsletter import create_app
from newsletter.clock import utcnow
from newsletter.db.models import Article, Delivery, Subscriber
from newsletter.digests import planning
from newsletter.extensions import db
from tests.conftest import base_config


def test_the_byline_and_image_columns_go_back_out_with_editions_in_the_database(
    database_url: str, tmp_path: Path
) -> None:
    from tests.conftest import _fresh_schema

    app = create_app(base_config(database_url, tmp_path))
    _fresh_schema(app)
    with app.app_context():
        db.session.add(
            Article(
                guid="urn:m:1",
                url="https://ledger.example/1",
                title="Bridge opens",
                category="Business",
                topic="business",
                author="Maria Okafor",
                published_at=utcnow() - timedelta(hours=1),
            )
        )
        reader = Subscriber(email="pat@example.org", status="active", frequency="daily")
        reader.topics = ["business"]
        db.session.add(reader)
        db.session.commit()
        assert planning.plan("daily") is not None  # an edition now points at the article
        db.session.remove()

        downgrade(revision="0006")
        columns = {c["name"] for c in inspect(db.engine).get_columns("article")}
        assert "author" not in columns and "image_url" not in columns
        assert db.session.scalar(select(func.count()).select_from(Article.__table__)) == 1
        db.session.remove()
        upgrade()
        columns = {c["name"] for c in inspect(db.engine).get_columns("article")}
        assert {"author", "image_url", "image_alt", "image_width", "image_height"} <= columns
        db.engine.dispose()


def test_the_console_tables_and_reader_columns_go_back_out_and_in_with_readers_kept(
    database_url: str, tmp_path: Path
) -> None:
    from tests.conftest import _fresh_schema

    app = create_app(base_config(database_url, tmp_path))
    _fresh_schema(app)
    with app.app_context():
        reader = Subscriber(email="pat@example.org", status="active", frequency="daily")
        reader.topics = ["business"]
        db.session.add(reader)
        db.session.commit()
        db.session.remove()

        downgrade(revision="0007")
        tables = set(inspect(db.engine).get_table_names())
        assert not {"operator", "audit_event", "api_token"} & tables
        columns = {c["name"] for c in inspect(db.engine).get_columns("subscriber")}
        assert not {"alerts", "language", "timezone"} & columns
        assert db.session.scalar(select(func.count()).select_from(Subscriber.__table__)) == 1
        db.session.remove()

        upgrade()
        assert {"operator", "audit_event", "api_token"} <= set(inspect(db.engine).get_table_names())
        # A reader who was on the list before alerts existed gets them, as new readers do.
        assert db.session.scalars(select(Subscriber.alerts)).all() == [True]
        db.engine.dispose()


def test_the_send_windows_go_back_out_and_in_with_the_ledger_kept(
    database_url: str, tmp_path: Path
) -> None:
    from tests.conftest import _fresh_schema

    app = create_app({**base_config(database_url, tmp_path), "SEND_IN_READER_TIME": True})
    _fresh_schema(app)
    with app.app_context():
        db.session.add(
            Article(
                guid="urn:m:2",
                url="https://ledger.example/2",
                title="Tram line extended",
                category="Business",
                topic="business",
                published_at=utcnow() - timedelta(hours=1),
            )
        )
        reader = Subscriber(
            email="pat@example.org", status="active", frequency="daily", timezone="Asia/Tokyo"
        )
        reader.topics = ["business"]
        db.session.add(reader)
        db.session.commit()
        assert planning.plan("daily") is not None
        db.session.remove()

        downgrade(revision="0008")
        assert "send_window" not in set(inspect(db.engine).get_table_names())
        # The waiting row keeps the moment it may go out.
        assert db.session.scalars(select(Delivery.not_before)).one() is not None
        db.session.remove()
        upgrade()
        assert "send_window" in set(inspect(db.engine).get_table_names())
        db.engine.dispose()


def test_the_console_indexes_go_back_out_and_in_again(database_url: str, tmp_path: Path) -> None:
    from tests.conftest import _fresh_schema

    app = create_app(base_config(database_url, tmp_path))
    _fresh_schema(app)
    added = {
        "ix_subscriber_name_search",
        "ix_subscriber_confirmed_at",
        "ix_subscriber_unsubscribed_at",
    }

    def indexes(table: str) -> set[str]:
        # Read from the catalogue: the inspector skips expression indexes on SQLite.
        if db.engine.dialect.name == "sqlite":
            query = "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = :t"
        else:
            query = "SELECT indexname FROM pg_indexes WHERE tablename = :t"
        with db.engine.connect() as conn:
            return set(conn.execute(text(query), {"t": table}).scalars())

    with app.app_context():
        db.session.add(Subscriber(email="pat@example.org", name="Pat", status="active"))
        db.session.commit()
        db.session.remove()
        assert added <= indexes("subscriber")
        assert "ix_bounce_event_received_at" in indexes("bounce_event")
        downgrade(revision="0009")
        assert not (added | {"ix_subscriber_email_search"}) & indexes("subscriber")
        assert "ix_bounce_event_received_at" not in indexes("bounce_event")
        assert db.session.scalar(select(func.count()).select_from(Subscriber.__table__)) == 1
        db.session.remove()
        upgrade()
        assert added <= indexes("subscriber")
        db.engine.dispose()
