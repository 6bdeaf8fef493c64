"""Past digests as web pages: the "read it in your browser" link of every mail."""

from __future__ import annotations

from flask import Blueprint, abort, render_template
from sqlalchemy import select

from newsletter.db.models import Edition
from newsletter.digests.content import load_content
from newsletter.extensions import db

bp = Blueprint("archive", __name__)


@bp.get("/archive")
def index() -> str:
    editions = db.session.scalars(select(Edition).order_by(Edition.id.desc()).limit(100)).all()
    return render_template("archive.html", editions=editions)


@bp.get("/archive/<int:edition_id>")
def edition(edition_id: int) -> str:
    found = db.session.get(Edition, edition_id)
    if found is None:
        abort(404)
    content = load_content(edition_id)
    return render_template("edition.html", edition=found, sections=content.sections())
