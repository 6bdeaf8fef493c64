"""The reader's path end to end through the Flask test client."""

from __future__ import annotations

from flask.testing import FlaskClient
from sqlalchemy import select

from newsletter.db.models import ConsentEvent, Subscriber
from newsletter.extensions import db
from newsletter.mail.message import OutgoingMessage
from tests.conftest import form_fields, link_from, signup


def test_signup_confirm_unsubscribe(
    app, client: FlaskClient, outbox: list[OutgoingMessage]
) -> None:
    response = signup(client, "Reader@Example.com", name="Ann")
    assert response.status_code == 200
    assert "Check your inbox" in response.get_data(as_text=True)
    assert len(outbox) == 1 and outbox[0].recipient == "reader@example.com"

    confirm_url = link_from(outbox[0], "/confirm/")
    path = confirm_url.removeprefix("https://news.example.test")
    page = client.get(path)
    assert page.status_code == 200 and "Confirm" in page.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(Subscriber.status)) == "pending"

    done = client.post(path, data=form_fields(page.get_data(as_text=True)))
    assert done.status_code == 200, done.get_data(as_text=True)
    with app.app_context():
        subscriber = db.session.scalars(select(Subscriber)).one()
        assert subscriber.status == "active"
        assert [
            e.action for e in db.session.scalars(select(ConsentEvent).order_by(ConsentEvent.id))
        ] == [
            "signup",
            "confirm",
        ]
