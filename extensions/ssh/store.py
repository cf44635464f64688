"""SSH keys in gpulab's database: add, list, delete, and find the owner of a key.

A fingerprint is unique across all users (a database constraint), so one key always means
one user, even when two requests race in two processes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import DateTime, Integer, String, Text, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from gpulab.db import Base, make_session_factory
from gpulab.hub_config.services.errors import Conflict, NotFound

from .publickeys import PublicKey

MAX_KEYS_PER_USER = 50
MAX_KEY_ID = 2**31 - 1  # Integer ids: 32 bits on PostgreSQL


class SSHKeyRow(Base):
    __tablename__ = "ssh_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(255), index=True)
    fingerprint: Mapped[str] = mapped_column(String(100), unique=True)
    algorithm: Mapped[str] = mapped_column(String(64))
    public_key: Mapped[str] = mapped_column(Text)
    comment: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


@dataclass(frozen=True)
class KeyRecord:
    id: int
    username: str
    fingerprint: str
    algorithm: str
    public_key: str
    comment: str
    created_at: datetime
    last_used_at: datetime | None

    def as_json(self) -> dict:
        return {
            "id": self.id, "fingerprint": self.fingerprint, "algorithm": self.algorithm,
            "comment": self.comment, "public_key": self.public_key,
            "created_at": self.created_at.isoformat(),
            "last_used_at": self.last_used_at.isoformat() if self.last_used_at else None,
        }


def _record(row: SSHKeyRow) -> KeyRecord:
    return KeyRecord(row.id, row.username, row.fingerprint, row.algorithm, row.public_key, row.comment,
                     _aware(row.created_at), _aware(row.last_used_at) if row.last_used_at else None)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)  # SQLite drops the zone


class KeyStore:
    def __init__(self, engine: Engine, clock=lambda: datetime.now(timezone.utc)):
        self.sessions = make_session_factory(engine)
        self.clock = clock

    def add(self, username: str, key: PublicKey) -> KeyRecord:
        with self.sessions() as session:
            count = len(session.scalars(select(SSHKeyRow.id).where(SSHKeyRow.username == username)).all())
            if count >= MAX_KEYS_PER_USER:
                raise Conflict(f"you have {count} keys already; delete one first")
            row = SSHKeyRow(username=username, fingerprint=key.fingerprint, algorithm=key.algorithm,
                            public_key=key.openssh, comment=key.comment, created_at=self.clock())
            session.add(row)
            try:
                session.commit()
            except IntegrityError:
                session.rollback()
                # Do not say whose it is: that would tell anyone who owns a given public key.
                raise Conflict(f"the key {key.fingerprint} is already registered") from None
            return _record(row)

    def list(self, username: str) -> list[KeyRecord]:
        with self.sessions() as session:
            rows = session.scalars(select(SSHKeyRow).where(SSHKeyRow.username == username).order_by(SSHKeyRow.id))
            return [_record(row) for row in rows]

    def delete(self, username: str, key_id: int) -> None:
        if not 0 < key_id <= MAX_KEY_ID:  # beyond the column's range no key can exist (and the driver would fail)
            raise NotFound(f"you have no SSH key with id {key_id}")
        with self.sessions() as session:
            row = session.get(SSHKeyRow, key_id)
            if row is None or row.username != username:
                raise NotFound(f"you have no SSH key with id {key_id}")
            session.delete(row)
            session.commit()

    def owner_of(self, fingerprint: str) -> str | None:
        """The user a key belongs to; None for an unknown key."""
        with self.sessions() as session:
            return session.scalars(select(SSHKeyRow.username).where(SSHKeyRow.fingerprint == fingerprint)).first()

    def mark_used(self, fingerprint: str) -> None:
        """Record a sign-in with the key (called only once its signature was verified)."""
        with self.sessions() as session:
            row = session.scalars(select(SSHKeyRow).where(SSHKeyRow.fingerprint == fingerprint)).first()
            if row is not None:
                row.last_used_at = self.clock()
                session.commit()
