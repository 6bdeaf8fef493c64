"""The audit log: every act of an operator, an API token or the CLI, append-only.

The one writer of ``audit_event``. An act is recorded in the transaction that makes it, so
the log holds what happened and nothing that was rolled back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select

from newsletter.clock import utcnow
from newsletter.db.models import AuditEvent
from newsletter.extensions import db
from newsletter.readers import roster


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts: ``operator:EMAIL``, ``api:NAME#ID`` or ``cli:LOGIN``, and from where."""

    name: str
    ip: str | None = None

    @classmethod
    def cli(cls) -> Actor:
        return cls(f"cli:{roster.operator()}")


_APPEND = insert(AuditEvent.__table__)


def record(actor: Actor, action: str, target: str = "", **detail: Any) -> None:
    db.session.execute(
        _APPEND,
        {
            "occurred_at": utcnow(),
            "actor": actor.name[:400],
            "action": action[:64],
            "target": target[:400],
            "ip": actor.ip[:45] if actor.ip else None,
            "detail": detail,
        },
    )


def recent(limit: int = 50, before_id: int | None = None) -> list[AuditEvent]:
    """The newest events first, ``limit`` at a time, older than ``before_id`` when given."""
    query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
    if before_id is not None:
        query = query.where(AuditEvent.id < before_id)
    return list(db.session.scalars(query))
