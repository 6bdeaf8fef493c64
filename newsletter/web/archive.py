"""Past digests as web pages: the "read it in your browser" link of every mail."""

from __future__ import annotations

from flask import Blueprint, abort, render_template

from newsletter.digests import planning
from newsletter.digests.content import load_content

bp = Blueprint("archive", __name__)


@bp.get("/archive")
def index() -> str:
    return render_template("archive.html", editions=planning.recent())


# Ids past the column's range are no edition (and must not reach the database as one).
@bp.get("/archive/<int(max=2147483647):edition_id>")
def edition(edition_id: int) -> str:
    found = planning.edition(edition_id)
    if found is None:
        abort(404)
    content = load_content(edition_id)
    return render_template("edition.html", edition=found, sections=content.sections())
