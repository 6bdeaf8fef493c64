"""Past digests as web pages: the "read it in your browser" link of every mail."""

from __future__ import annotations

from flask import Blueprint, abort, render_template

from newsletter.digests import planning
from newsletter.digests.content import load_content

bp = Blueprint("archive", __name__)


@bp.get("/archive")
def index() -> str:
    return render_template("archive.html", editions=planning.recent())


@bp.get("/archive/<int:edition_id>")
def edition(edition_id: int) -> str:
    found = planning.edition(edition_id)
    if found is None:
        abort(404)
    content = load_content(edition_id)
    return render_template("edition.html", edition=found, sections=content.sections())
