"""Bad input on the reader's side: always a readable 4xx page, never a 500, nothing written."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from newsletter.db.models import ConsentEvent, Subscriber
from newsletter.extensions import db
from newsletter.mail.message import OutgoingMessage
from newsletter.tokens import Purpose
from tests.conftest import (
    add_subscriber,
    db_state,
    form_fields,
    make_token,
    signed_ago,
    signup,
    with_config,
)

EMPTY = {"subscribers": [], "consent_events": 0, "wordings": 0}
MEGABYTE = "x" * 1_000_000


def _readable(response: Any) -> str:
    """The page a person gets: HTML with a heading and words, no stack trace."""
    html: str = response.get_data(as_text=True)
    assert "text/html" in response.content_type
    assert "<h1>" in html and "</html>" in html
    assert "Traceback" not in html and "Exception" not in html
    return html


def _csrf(client: FlaskClient) -> dict[str, str]:
    return form_fields(client.get("/subscribe").get_data(as_text=True))


MALFORMED = [
    "",
    "   ",
    "plainaddress",
    "@example.com",
    "reader@",
    "reader@@example.com",
    "reader@example..com",
    "read er@example.com",
    "reader@example.com\r\nBcc: victim@example.org",
    "reader@example.com\x00",
    "<script>@example.com",
    '"quoted"@example.com',
    "reader@[127.0.0.1]",
    "a" * 300 + "@example.com",
    "reader@" + "b" * 300 + ".com",
    "x" * 20_000,
]


@pytest.mark.parametrize("email", MALFORMED, ids=range(len(MALFORMED)))
def test_malformed_address_is_a_400_form_with_a_reason_and_nothing_written(
    app: Flask, client: FlaskClient, outbox: list[OutgoingMessage], email: str
) -> None:
    response = signup(client, email)

    html = _readable(response)
    assert response.status_code == 400
    assert 'role="alert"' in html
    assert db_state(app) == EMPTY and outbox == []


def test_an_address_sent_in_another_charset_is_a_400(
    app: Flask, client: FlaskClient, outbox: list[OutgoingMessage]
) -> None:
    # A Latin-1 "é" is not UTF-8: it arrives as U+FFFD, which is not what the reader typed.
    fields = {**_csrf(client), "consent": "y", "frequency": "weekly"}
    parts = [
        f'--b\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items()
    ]
    email = b'--b\r\nContent-Disposition: form-data; name="email"\r\n\r\nren\xe9@example.com\r\n'
    body = b"".join([*parts, email, b"--b--\r\n"])

    response = client.post("/subscribe", data=body, content_type="multipart/form-data; boundary=b")

    assert response.status_code == 400
    _readable(response)
    assert db_state(app) == EMPTY and outbox == []


def test_an_empty_post_is_a_400_form(app: Flask, client: FlaskClient) -> None:
    response = client.post("/subscribe")
    assert response.status_code == 400
    assert "Enter your email address" in _readable(response)
    assert db_state(app) == EMPTY


@pytest.mark.parametrize("encoding", ["urlencoded", "multipart"])
@pytest.mark.parametrize(
    "route",
    ["/subscribe", "/unsubscribe/{}", "/preferences/{}", "/confirm/{}", "/confirm/{}/resend"],
)
def test_a_megabyte_body_gets_a_413_page_and_changes_nothing(
    app: Flask, client: FlaskClient, outbox: list[OutgoingMessage], route: str, encoding: str
) -> None:
    uid = add_subscriber(app, status="pending", confirm_nonce="n1")
    purpose = {"/un": Purpose.UNSUBSCRIBE, "/pr": Purpose.PREFERENCES}.get(
        route[:3], Purpose.CONFIRM
    )
    token = make_token(app, purpose, {"s": uid, "n": "n1"})
    data = {
        **_csrf(client),
        "List-Unsubscribe": "One-Click",
        "email": "reader@example.com",
        "consent": "y",
        "name": MEGABYTE,
    }
    before = db_state(app)
    kwargs: dict[str, Any] = (
        {"content_type": "multipart/form-data"} if encoding == "multipart" else {}
    )

    response = client.post(route.format(token), data=data, **kwargs)

    assert response.status_code == 413
    assert "more than this form accepts" in _readable(response)
    assert db_state(app) == before and outbox == []


@pytest.mark.parametrize(
    ("field", "value"),
    [("name", "n" * 101), ("name", "n" * 20_000), ("website", "w" * 5_000)],
    ids=["name-101", "name-20k", "honeypot-5k"],
)
def test_overlong_fields_are_refused_and_nothing_written(
    app: Flask, client: FlaskClient, outbox: list[OutgoingMessage], field: str, value: str
) -> None:
    response = signup(client, "reader@example.com", **{field: value})
    assert response.status_code == 400
    _readable(response)
    assert db_state(app) == EMPTY and outbox == []


def test_a_name_of_exactly_100_characters_is_fine(app: Flask, client: FlaskClient) -> None:
    assert signup(client, "reader@example.com", name="é" * 100).status_code == 200
    with app.app_context():
        assert db.session.scalar(select(Subscriber.name)) == "é" * 100


@pytest.mark.parametrize(
    "name", ["Ann\r\nBcc: victim@example.org", "Ann\nSmith", "Ann\rSmith", "Ann\x00"]
)
def test_line_breaks_in_the_name_are_refused_with_a_clear_message(
    app: Flask, client: FlaskClient, outbox: list[OutgoingMessage], name: str
) -> None:
    response = signup(client, "reader@example.com", name=name)

    html = _readable(response)
    assert response.status_code == 400
    assert "single line" in html
    assert db_state(app) == EMPTY and outbox == []


def test_unknown_topics_are_ignored_at_signup(app: Flask, client: FlaskClient) -> None:
    topics = ["analytics", "sport", "../../etc/passwd", "<b>culture</b>", "x" * 500]
    response = signup(client, "reader@example.com", topics=topics)
    assert response.status_code == 200
    with app.app_context():
        assert db.session.scalars(select(Subscriber)).one().topics == ["analytics"]


def test_a_signup_without_a_frequency_gets_the_weekly_digest(
    app: Flask, client: FlaskClient, outbox: list[OutgoingMessage]
) -> None:
    # Name, topics and frequency are optional at signup; a box may ask for the address alone.
    data = {**_csrf(client), "email": "reader@example.com", "consent": "y"}
    assert client.post("/subscribe", data=data).status_code == 303
    assert len(outbox) == 1
    with app.app_context():
        assert db.session.scalar(select(Subscriber.frequency)) == "weekly"


@pytest.mark.parametrize("frequency", ["hourly", "", "weekly\r\nX: y"])
def test_an_unknown_frequency_is_refused_at_signup(
    app: Flask, client: FlaskClient, frequency: str
) -> None:
    response = signup(client, "reader@example.com", frequency=frequency)
    assert response.status_code == 400
    _readable(response)
    assert db_state(app) == EMPTY


@pytest.mark.parametrize("csrf", ["absent", "forged", "other-session"])
def test_subscribe_without_our_csrf_token_is_a_4xx_page_and_nothing_written(
    app: Flask, client: FlaskClient, outbox: list[OutgoingMessage], csrf: str
) -> None:
    fields = _csrf(client)
    if csrf == "absent":
        del fields["csrf_token"]
    elif csrf == "forged":
        fields["csrf_token"] = "IjEyMyI.forged.token"
    else:
        fields["csrf_token"] = _csrf(app.test_client())["csrf_token"]
    data = {**fields, "email": "reader@example.com", "consent": "y", "frequency": "weekly"}

    response = client.post("/subscribe", data=data)

    html = _readable(response)
    assert 400 <= response.status_code < 500
    assert "The form had expired" in html
    assert 'value="reader@example.com"' in html, "what the reader typed is kept"
    assert db_state(app) == EMPTY and outbox == []


JSON_BODIES = ['"x"', "[1, 2]", '{"email": {"a": 1}}', '{"email": 5, "consent": true}', "{bad"]


@pytest.mark.parametrize("body", JSON_BODIES)
def test_a_json_body_on_subscribe_is_a_400_not_a_500(
    app: Flask, client: FlaskClient, body: str
) -> None:
    token = _csrf(client)["csrf_token"]
    response = client.post(
        "/subscribe", data=body, content_type="application/json", headers={"X-CSRFToken": token}
    )
    assert response.status_code == 400
    _readable(response)
    assert db_state(app) == EMPTY


@pytest.mark.parametrize("body", JSON_BODIES)
def test_a_json_body_on_preferences_is_a_400_not_a_500(
    app: Flask, client: FlaskClient, body: str
) -> None:
    uid = add_subscriber(app)
    link = f"/preferences/{make_token(app, Purpose.PREFERENCES, {'s': uid})}"
    before = db_state(app)
    response = client.post(link, data=body, content_type="application/json")
    assert response.status_code == 400
    _readable(response)
    assert db_state(app) == before


def test_control_characters_in_the_user_agent_do_not_break_the_consent_log(
    app: Flask, client: FlaskClient
) -> None:
    client.environ_base["HTTP_USER_AGENT"] = "Bad\x00Agent\x07/1.0"
    assert signup(client, "reader@example.com").status_code == 200
    with app.app_context():
        assert db.session.scalar(select(ConsentEvent.user_agent)) == "BadAgent/1.0"


@with_config(PROXY_FIX_X_FOR=1)
def test_junk_in_x_forwarded_for_does_not_break_the_consent_log(
    app: Flask, client: FlaskClient
) -> None:
    client.environ_base["HTTP_X_FORWARDED_FOR"] = "not-an-ip-" + "x" * 200
    assert signup(client, "reader@example.com").status_code == 200
    with app.app_context():
        ip = db.session.scalar(select(ConsentEvent.ip))
    assert ip is not None and len(ip) <= 45


@with_config(EMBED_ORIGINS=["https://www.ledger.example"])
@pytest.mark.parametrize("referer", ["http://[oops", "::::", "https://www.ledger.example:bad/"])
def test_a_malformed_referer_is_not_a_server_error(
    app: Flask, client: FlaskClient, referer: str
) -> None:
    fields = _csrf(client)
    data = {**fields, "email": "reader@example.com", "consent": "y", "frequency": "weekly"}
    response = client.post("/subscribe", data=data, headers={"Referer": referer})
    assert response.status_code == 303


TOKEN_ROUTES = [
    ("GET", "/confirm/{}", Purpose.CONFIRM),
    ("POST", "/confirm/{}", Purpose.CONFIRM),
    ("POST", "/confirm/{}/resend", Purpose.CONFIRM),
    ("GET", "/unsubscribe/{}", Purpose.UNSUBSCRIBE),
    ("POST", "/unsubscribe/{}", Purpose.UNSUBSCRIBE),
    ("GET", "/preferences/{}", Purpose.PREFERENCES),
    ("POST", "/preferences/{}", Purpose.PREFERENCES),
]
BAD_KINDS = ["forged", "truncated", "other-purpose", "nul", "unicode", "dots", "huge"]


def _bad(app: Flask, kind: str, purpose: Purpose, uid: str) -> str:
    payload = {"s": uid, "n": "n1"}
    if kind == "forged":
        from itsdangerous import URLSafeTimedSerializer

        forger = URLSafeTimedSerializer("guessed-key", salt=f"newsletter.{purpose.value}")
        return str(forger.dumps(payload))
    if kind == "truncated":
        return make_token(app, purpose, payload)[:-4]
    if kind == "other-purpose":
        other = Purpose.UNSUBSCRIBE if purpose is not Purpose.UNSUBSCRIBE else Purpose.CONFIRM
        return make_token(app, other, payload)
    return {"nul": "%00", "unicode": "%C3%A9t%C3%A9", "dots": "..", "huge": "A" * 8000}[kind]


@pytest.mark.parametrize("kind", BAD_KINDS)
@pytest.mark.parametrize(
    ("method", "route", "purpose"), TOKEN_ROUTES, ids=[f"{m}-{r}" for m, r, _ in TOKEN_ROUTES]
)
def test_bad_tokens_on_every_token_route_get_a_readable_4xx_and_change_nothing(
    app: Flask,
    client: FlaskClient,
    outbox: list[OutgoingMessage],
    method: str,
    route: str,
    purpose: Purpose,
    kind: str,
) -> None:
    uid = add_subscriber(app, status="pending", confirm_nonce="n1")
    token = _bad(app, kind, purpose, uid)
    data = {**_csrf(client), "List-Unsubscribe": "One-Click", "frequency": "daily"}
    before = db_state(app)

    response = client.open(route.format(token), method=method, data=data)

    assert 400 <= response.status_code < 500, response.status_code
    _readable(response)
    assert db_state(app) == before and outbox == []


@pytest.mark.parametrize(
    ("method", "route"), [("GET", "/confirm/{}"), ("POST", "/confirm/{}")], ids=["GET", "POST"]
)
def test_an_expired_confirm_token_gets_a_410_page_offering_a_new_link(
    app: Flask, client: FlaskClient, method: str, route: str
) -> None:
    uid = add_subscriber(app, status="pending", confirm_nonce="n1")
    with signed_ago(days=app.config["CONFIRM_MAX_AGE_DAYS"] + 1):
        token = make_token(app, Purpose.CONFIRM, {"s": uid, "n": "n1"})
    before = db_state(app)

    response = client.open(route.format(token), method=method, data=_csrf(client))

    assert response.status_code == 410
    assert "Send me a new link" in _readable(response)
    assert db_state(app) == before


def test_a_csrf_failure_is_a_readable_4xx_and_token_routes_need_no_csrf(
    app: Flask, client: FlaskClient
) -> None:
    before = db_state(app)
    form = {"email": "reader@example.com", "consent": "y", "frequency": "weekly"}
    response = client.post("/subscribe", data=form)  # our own form's post, no CSRF token
    assert response.status_code == 400
    assert "The form had expired" in _readable(response)
    assert db_state(app) == before
    # A link's signed token is its credential: the confirm button needs no CSRF token.
    uid = add_subscriber(app, status="pending", confirm_nonce="n1")
    token = make_token(app, Purpose.CONFIRM, {"s": uid, "n": "n1"})
    assert client.post(f"/confirm/{token}").status_code == 200
    assert [reader[2] for reader in db_state(app)["subscribers"]] == ["active"]


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/nope"), ("POST", "/nope"), ("GET", "/confirm/"), ("GET", "/subscribe/x/y")],
)
def test_unknown_routes_get_a_404_page(
    app: Flask, client: FlaskClient, method: str, path: str
) -> None:
    response = client.open(path, method=method)
    assert response.status_code == 404
    assert "There is no page at this address" in _readable(response)


WRONG_METHODS = [
    ("PUT", "/subscribe"),
    ("DELETE", "/subscribe"),
    ("POST", "/subscribe/embed-token"),
    ("GET", "/confirm/t/resend"),
    ("DELETE", "/unsubscribe/t"),
    ("PATCH", "/preferences/t"),
]


@pytest.mark.parametrize(("method", "path"), WRONG_METHODS)
def test_wrong_methods_get_a_405_page_saying_what_is_allowed(
    app: Flask, client: FlaskClient, method: str, path: str
) -> None:
    response = client.open(path, method=method, data={"x": "y"})
    assert response.status_code == 405
    assert "cannot be used that way" in _readable(response)
    assert "Allow" in response.headers and method not in response.headers["Allow"]
    assert db_state(app) == EMPTY


def test_error_pages_escape_what_the_visitor_sent(app: Flask, client: FlaskClient) -> None:
    response = client.get("/<script>alert(1)</script>")
    assert response.status_code == 404
    assert "<script>alert" not in response.get_data(as_text=True)


def test_a_non_json_embed_token_request_still_gets_json(app: Flask, client: FlaskClient) -> None:
    response = client.get("/subscribe/embed-token", headers={"Accept": "text/html"})
    assert response.status_code == 200 and json.loads(response.get_data())["started"]
