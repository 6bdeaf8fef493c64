"""Editions through the API: preview, send once (a repeat resumes), follow, page, alert."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from newsletter import jobs
from newsletter.clock import utcnow
from newsletter.db.models import AuditEvent, Edition
from newsletter.digests import planning
from newsletter.extensions import db
from newsletter.mail.message import OutgoingMessage
from tests.conftest import with_config
from tests.support.api import assert_problem, bad_fields, call
from tests.support.digest_helpers import add_article, add_reader, parse, text_part


def _editions(app: Flask) -> int:
    with app.app_context():
        return int(db.session.scalar(select(func.count()).select_from(Edition)) or 0)


def _copies(outbox: list[OutgoingMessage]) -> Counter[str]:
    return Counter(message.recipient for message in outbox)


# --- preview --------------------------------------------------------------------------------


def test_preview_renders_the_next_edition_and_records_nothing(
    app: Flask, client: FlaskClient, tokens: dict[str, str], outbox: list[OutgoingMessage]
) -> None:
    add_article(app, "Parliament votes", "Politics")
    add_article(app, "Markets rally", "Business")
    add_reader(app, "reader@example.com", ("politics",))

    response = call(
        client,
        "GET",
        "/api/v1/editions/preview",
        tokens["read"],
        query_string={"frequency": "daily"},
    )
    assert response.status_code == 200, response.get_json()
    preview = response.get_json()
    assert (preview["frequency"], preview["articles"], preview["readers"]) == ("daily", 2, 1)
    assert preview["topics"] == ["politics", "business"]
    assert "Parliament votes" in preview["text"] and "Markets rally" in preview["html"]
    assert preview["subject"]

    one_topic = call(
        client,
        "GET",
        "/api/v1/editions/preview",
        tokens["send"],
        query_string={"topics": ["business"]},
    ).get_json()
    assert (one_topic["articles"], one_topic["topics"]) == (1, ["business"])
    assert "Markets rally" in one_topic["text"] and "Parliament votes" not in one_topic["text"]
    assert _editions(app) == 0 and outbox == []


def test_preview_says_when_there_is_nothing_new_and_names_a_bad_parameter(
    app: Flask, client: FlaskClient, tokens: dict[str, str]
) -> None:
    path = "/api/v1/editions/preview"
    problem = assert_problem(call(client, "GET", path, tokens["read"]), 409)
    assert problem["type"].endswith("/api/v1/problems/nothing-new")
    add_article(app, "Parliament votes", "Politics")
    assert_problem(
        call(client, "GET", path, tokens["read"], query_string={"topics": "culture"}), 409
    )
    assert "topics" in bad_fields(
        call(client, "GET", path, tokens["read"], query_string={"topics": "astrology"})
    )
    assert "frequency" in bad_fields(
        call(client, "GET", path, tokens["read"], query_string={"frequency": "hourly"})
    )


# --- send -----------------------------------------------------------------------------------


def test_send_queues_the_next_edition_and_answers_its_id_and_readers(
    app: Flask, client: FlaskClient, tokens: dict[str, str], outbox: list[OutgoingMessage]
) -> None:
    add_article(app, "Parliament votes", "Politics")
    for number in range(3):
        add_reader(app, f"reader{number}@example.com", ("politics",))
    add_reader(app, "weekly@example.com", ("politics",), frequency="weekly")

    response = call(client, "POST", "/api/v1/editions", tokens["send"], json={"frequency": "daily"})
    assert response.status_code == 202
    started = response.get_json()
    assert (started["kind"], started["readers"], started["resumed"]) == ("digest", 3, False)
    assert (
        response.headers["Location"]
        == started["url"]
        == f"/api/v1/editions/{started['edition_id']}"
    )

    assert _copies(outbox) == {f"reader{n}@example.com": 1 for n in range(3)}
    status = call(client, "GET", started["url"], tokens["read"]).get_json()
    assert status["deliveries"]["sent"] == status["readers"] == 3
    assert (status["remaining"], status["articles"], status["state"]) == (0, 1, "done")
    assert status["bounces"] == {"hard": 0, "soft": 0, "policy": 0, "complaint": 0}
    with app.app_context():
        event = db.session.scalars(select(AuditEvent)).one()
        assert (event.action, event.target) == ("edition.send", f"edition:{started['edition_id']}")

    # Nothing new since: nothing planned, nobody mailed again.
    again = call(client, "POST", "/api/v1/editions", tokens["send"], json={"frequency": "daily"})
    assert assert_problem(again, 409)["type"].endswith("/nothing-new")
    assert _editions(app) == 1 and len(outbox) == 3


def test_a_second_send_resumes_the_unfinished_edition_rather_than_plan_another(
    app: Flask, client: FlaskClient, tokens: dict[str, str], outbox: list[OutgoingMessage]
) -> None:
    add_article(app, "Parliament votes", "Politics")
    add_reader(app, "reader@example.com", ("politics",))
    with app.app_context():
        edition = planning.plan("daily")  # planned, then its sender went away
        assert edition is not None
        edition_id = edition.id
    add_article(app, "A later story", "Politics")

    response = call(client, "POST", "/api/v1/editions", tokens["send"], json={"frequency": "daily"})
    assert response.status_code == 202
    assert response.get_json() | {"url": ""} == {
        "edition_id": edition_id,
        "kind": "digest",
        "readers": 1,
        "resumed": True,
        "url": "",
    }
    assert _editions(app) == 1
    assert _copies(outbox) == {"reader@example.com": 1}
    assert "A later story" not in text_part(parse(outbox[0].data))


def _waiting_tasks(app: Flask) -> int:
    with app.app_context():
        return jobs.waiting() or 0


@with_config(BROKER_URL="memory://", BATCH_SIZE=2)
def test_repeated_sends_while_an_edition_is_being_sent_queue_no_second_set_of_tasks(
    app: Flask, client: FlaskClient, tokens: dict[str, str]
) -> None:
    # A broker no worker reads (in this process's memory): what is queued can be counted.
    with app.app_context(), app.extensions["celery"].connection_for_write() as connection:
        connection.default_channel.queue_purge(jobs.QUEUE)
    add_article(app, "Parliament votes", "Politics")
    for number in range(5):
        add_reader(app, f"reader{number}@example.com", ("politics",))
    first = call(client, "POST", "/api/v1/editions", tokens["send"], json={"frequency": "daily"})
    assert first.status_code == 202 and first.get_json()["resumed"] is False
    assert _waiting_tasks(app) == 3  # five readers, two a batch
    # A CMS retrying on a timeout: each repeat resumes the edition, and queues nothing more
    # while its tasks wait for a worker.
    for _ in range(10):
        again = call(
            client, "POST", "/api/v1/editions", tokens["send"], json={"frequency": "daily"}
        )
        assert again.status_code == 202 and again.get_json()["resumed"] is True
    assert _waiting_tasks(app) == 3
    assert _editions(app) == 1


@pytest.mark.parametrize(
    ("body", "pointer"),
    [
        ({}, "#/frequency"),
        ({"frequency": "hourly"}, "#/frequency"),
        ({"frequency": None}, "#/frequency"),
        ({"frequency": "daily", "dry_run": True}, "#/dry_run"),
    ],
)
def test_send_names_a_bad_field(
    app: Flask, client: FlaskClient, tokens: dict[str, str], body: dict[str, Any], pointer: str
) -> None:
    add_article(app, "Parliament votes", "Politics")
    assert pointer in bad_fields(
        call(client, "POST", "/api/v1/editions", tokens["send"], json=body)
    )
    assert _editions(app) == 0


def test_status_of_an_unknown_edition_is_404(client: FlaskClient, tokens: dict[str, str]) -> None:
    assert_problem(call(client, "GET", "/api/v1/editions/99", tokens["read"]), 404)
    assert_problem(
        call(client, "GET", "/api/v1/editions/99999999999999999999", tokens["read"]), 404
    )
    assert_problem(call(client, "GET", "/api/v1/editions/0", tokens["read"]), 404)


# --- the list -------------------------------------------------------------------------------


def _many_editions(app: Flask, number: int) -> list[int]:
    now = utcnow()
    with app.app_context():
        rows = [
            Edition(
                frequency="daily",
                subject=f"Edition {n}",
                covers_until=now - timedelta(days=n),
                state="done",
            )
            for n in range(number)
        ]
        db.session.add_all(rows)
        db.session.commit()
        return sorted((row.id for row in rows), reverse=True)


def test_the_list_walks_every_edition_once_newest_first(
    app: Flask, client: FlaskClient, tokens: dict[str, str]
) -> None:
    expected = _many_editions(app, 23)
    seen: list[int] = []
    url: str | None = "/api/v1/editions?limit=5"
    pages = 0
    while url:
        page = call(client, "GET", url, tokens["read"]).get_json()
        seen += [item["id"] for item in page["items"]]
        assert len(page["items"]) <= 5
        url = page["next"]
        pages += 1
        if url:
            assert page["next_cursor"] in url
        # An edition created meanwhile shows on the first page, never in the middle.
        if pages == 2:
            _many_editions(app, 1)
    assert seen == expected
    assert pages == 5


def test_a_full_last_page_has_no_next(
    app: Flask, client: FlaskClient, tokens: dict[str, str]
) -> None:
    _many_editions(app, 4)
    first = call(
        client, "GET", "/api/v1/editions", tokens["send"], query_string={"limit": 2}
    ).get_json()
    second = call(client, "GET", first["next"], tokens["send"]).get_json()
    assert len(second["items"]) == 2
    assert second["next"] is None and second["next_cursor"] is None


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"limit": "9" * 30}, "limit"),
        ({"cursor": "bm90IG91cnM"}, "cursor"),
        ({"cursor": "%%%"}, "cursor"),
        ({"cursor": "x" * 100}, "cursor"),
    ],
)
def test_a_bad_limit_or_cursor_is_named(
    client: FlaskClient, tokens: dict[str, str], query: dict[str, Any], parameter: str
) -> None:
    errors = bad_fields(call(client, "GET", "/api/v1/editions", tokens["read"], query_string=query))
    assert list(errors) == [parameter]


# --- alerts ---------------------------------------------------------------------------------


def _push(client: FlaskClient, secret: str, category: str = "Breaking News") -> int:
    article = {"url": "https://ledger.example/now", "title": "It happened", "category": category}
    answer = call(
        client, "POST", "/api/v1/articles", secret, json={"articles": [article]}
    ).get_json()
    return int(answer["articles"][0]["id"])


def test_an_alert_goes_once_to_the_readers_of_its_topic(
    app: Flask, client: FlaskClient, tokens: dict[str, str], outbox: list[OutgoingMessage]
) -> None:
    add_reader(app, "news@example.com", ("breaking-news",))
    add_reader(app, "other@example.com", ("culture",))
    article_id = _push(client, tokens["send"])

    response = call(
        client, "POST", "/api/v1/alerts", tokens["send"], json={"article_id": article_id}
    )
    assert response.status_code == 202
    started = response.get_json()
    assert (started["kind"], started["readers"]) == ("alert", 1)
    assert _copies(outbox) == {"news@example.com": 1}
    status = call(client, "GET", started["url"], tokens["read"]).get_json()
    assert (status["kind"], status["topic"], status["frequency"]) == (
        "alert",
        "breaking-news",
        None,
    )

    again = call(
        client,
        "POST",
        "/api/v1/alerts",
        tokens["send"],
        json={"article_id": article_id, "topic": None},
    )
    problem = assert_problem(again, 409)
    assert problem["edition_id"] == started["edition_id"]
    assert problem["type"].endswith("/api/v1/problems/already-sent")
    assert len(outbox) == 1

    # To another topic it may go, once.
    culture = call(
        client,
        "POST",
        "/api/v1/alerts",
        tokens["send"],
        json={"article_id": article_id, "topic": "culture"},
    )
    assert culture.status_code == 202
    assert _copies(outbox) == {"news@example.com": 1, "other@example.com": 1}


def test_an_alert_names_what_is_wrong(
    app: Flask, client: FlaskClient, tokens: dict[str, str]
) -> None:
    stray = _push(client, tokens["send"], category="Horoscopes")
    path = "/api/v1/alerts"
    assert "#/article_id" in bad_fields(
        call(client, "POST", path, tokens["send"], json={"article_id": 999})
    )
    assert "#/topic" in bad_fields(
        call(client, "POST", path, tokens["send"], json={"article_id": stray})
    )
    assert "#/topic" in bad_fields(
        call(client, "POST", path, tokens["send"], json={"article_id": stray, "topic": "astrology"})
    )
    for wrong in ("1", 1.5, True, 0, 2**40, None):
        assert "#/article_id" in bad_fields(
            call(client, "POST", path, tokens["send"], json={"article_id": wrong})
        )
    assert _editions(app) == 0
