"""Articles pushed by the publisher's CMS, in place of (or beside) a feed.

Each article is checked and cleaned exactly as ``newsletter articles import`` does it (URL
schemes, lengths, the HTML allow-list of feeds), and a push is all or nothing.
"""

from __future__ import annotations

from flask import jsonify
from flask.typing import ResponseReturnValue

from newsletter.articles import store
from newsletter.articles.cleaning import ArticleRecord
from newsletter.articles.importing import record_from_mapping
from newsletter.db.models import Scope
from newsletter.errors import InvalidArticle
from newsletter.extensions import db
from newsletter.operators import audit
from newsletter.readers.topics import available
from newsletter.web.api import bp
from newsletter.web.api.auth import current, require
from newsletter.web.api.fields import Fields, json_body, pointer
from newsletter.web.api.problems import FieldError

# Enough for a CMS catching up after an outage; more goes in several calls.
MAX_ARTICLES = 100


@bp.post("/articles")
@require(Scope.SEND)
def push() -> ResponseReturnValue:
    """Store the articles not seen before (by guid, else URL); answer each one's id."""
    fields = Fields(json_body(), ("articles",))
    items = fields.data.get("articles")
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_ARTICLES:
        fields.fail("articles", f"must be an array of 1 to {MAX_ARTICLES} article objects")
        fields.done()
    assert isinstance(items, list)
    records: list[ArticleRecord] = []
    first_of: dict[str, int] = {}
    for index, item in enumerate(items):
        try:
            record = record_from_mapping(item)
        except InvalidArticle as exc:
            at = ("articles", index) if exc.field == "line" else ("articles", index, exc.field)
            detail = "must be an article object" if exc.field == "line" else exc.reason
            fields.errors.append(FieldError(pointer(*at), detail))
            continue
        if record.guid in first_of:
            fields.fail_item(
                "articles", index, f"repeats the guid of #/articles/{first_of[record.guid]}"
            )
            continue
        first_of[record.guid] = index
        records.append(record)
    fields.done()
    known = store.ids_by_guid(first_of)
    added, _ = store.upsert_articles(records)
    ids = {**store.ids_by_guid(guid for guid in first_of if guid not in known), **known}
    audit.record(current().actor, "articles.push", f"{len(records)} articles", added=added)
    db.session.commit()
    topics = available()
    return jsonify(
        added=added,
        known=len(records) - added,
        articles=[
            {
                "id": ids[record.guid],
                "guid": record.guid,
                "added": record.guid not in known,
                "topic": record.topic,
                # Stored all the same, as from a feed, but no reader can choose it yet.
                "topic_configured": record.topic in topics,
            }
            for record in records
        ],
    )
