"""The tables of the Connect resources (SQLAlchemy 2). Changes go through Alembic
migrations in migrations/versions; the server applies them at start."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class _Resource:
    ref: Mapped[str] = mapped_column(String(64), primary_key=True)
    api_version: Mapped[str] = mapped_column(String(16), default="v2beta1")
    name: Mapped[str] = mapped_column(String(255))
    extended: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[int] = mapped_column(Integer)


class AccessControlListRow(_Resource, Base):
    __tablename__ = "access_control_lists"
    allow: Mapped[list[str]] = mapped_column(JSON, default=list)
    deny: Mapped[list[str]] = mapped_column(JSON, default=list)


class CredentialsRow(_Resource, Base):
    __tablename__ = "credentials"
    username: Mapped[str] = mapped_column(String(255))
    # Fernet token of the password: never stored or returned in plain text
    password_encrypted: Mapped[str] = mapped_column(String(512))


class DomainRow(_Resource, Base):
    __tablename__ = "domains"
    domain_uri: Mapped[str] = mapped_column(String(255), unique=True)
    access_control_list_ref: Mapped[str | None] = mapped_column(
        ForeignKey("access_control_lists.ref"), nullable=True
    )
    egress_policies: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)


class TrunkRow(_Resource, Base):
    __tablename__ = "trunks"
    send_register: Mapped[bool] = mapped_column(Boolean, default=False)
    inbound_uri: Mapped[str | None] = mapped_column(String(255), unique=True, nullable=True)
    access_control_list_ref: Mapped[str | None] = mapped_column(
        ForeignKey("access_control_lists.ref"), nullable=True
    )
    inbound_credentials_ref: Mapped[str | None] = mapped_column(
        ForeignKey("credentials.ref"), nullable=True
    )
    outbound_credentials_ref: Mapped[str | None] = mapped_column(
        ForeignKey("credentials.ref"), nullable=True
    )
    uris: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)


class NumberRow(_Resource, Base):
    __tablename__ = "numbers"
    tel_url: Mapped[str] = mapped_column(String(64), unique=True)
    aor_link: Mapped[str] = mapped_column(String(255))
    city: Mapped[str] = mapped_column(String(128), default="")
    country: Mapped[str] = mapped_column(String(128), default="")
    country_iso_code: Mapped[str] = mapped_column(String(2), default="")
    session_affinity_header: Mapped[str] = mapped_column(String(128), default="")
    extra_headers: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    trunk_ref: Mapped[str | None] = mapped_column(ForeignKey("trunks.ref"), nullable=True)


class AgentRow(_Resource, Base):
    __tablename__ = "agents"
    __table_args__ = (UniqueConstraint("username", "domain_ref", name="uq_agents_username_domain"),)
    username: Mapped[str] = mapped_column(String(255))
    privacy: Mapped[str] = mapped_column(String(16), default="NONE")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    max_contacts: Mapped[int] = mapped_column(Integer, default=0)
    expires: Mapped[int] = mapped_column(Integer, default=0)
    domain_ref: Mapped[str] = mapped_column(ForeignKey("domains.ref"))
    credentials_ref: Mapped[str | None] = mapped_column(
        ForeignKey("credentials.ref"), nullable=True
    )


class PeerRow(_Resource, Base):
    __tablename__ = "peers"
    username: Mapped[str] = mapped_column(String(255), unique=True)
    aor: Mapped[str] = mapped_column(String(255), unique=True)
    contact_addr: Mapped[str] = mapped_column(String(255), default="")
    balancing_algorithm: Mapped[str] = mapped_column(String(32), default="UNSPECIFIED")
    with_session_affinity: Mapped[bool] = mapped_column(Boolean, default=False)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    max_contacts: Mapped[int] = mapped_column(Integer, default=0)
    expires: Mapped[int] = mapped_column(Integer, default=0)
    access_control_list_ref: Mapped[str | None] = mapped_column(
        ForeignKey("access_control_lists.ref"), nullable=True
    )
    credentials_ref: Mapped[str | None] = mapped_column(
        ForeignKey("credentials.ref"), nullable=True
    )


class ApiKeyRow(Base):
    """A bearer key of the external API; only its SHA-256 is kept."""

    __tablename__ = "api_keys"
    key_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[int] = mapped_column(Integer)


class ApiUserRow(Base):
    """A user of the external API (HTTP Basic, as Routr's Node SDK sends); scrypt hash only."""

    __tablename__ = "api_users"
    username: Mapped[str] = mapped_column(String(255), primary_key=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[int] = mapped_column(Integer)


class RevisionRow(Base):
    """One row counting writes: readers that cache resources reload when it moves."""

    __tablename__ = "revision"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    value: Mapped[int] = mapped_column(Integer, default=0)


class AppliedFileRow(Base):
    """What a resource file last applied to a ref: the file's version and the stored state
    just after (both hashed), so that a later start can tell an API change from a file change."""

    __tablename__ = "applied_files"
    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    ref: Mapped[str] = mapped_column(String(255), primary_key=True)
    file_hash: Mapped[str] = mapped_column(String(64))
    state_hash: Mapped[str] = mapped_column(String(64))


class BanRow(Base):
    """A source address banned for guessing passwords, until a time (epoch seconds)."""

    __tablename__ = "bans"
    host: Mapped[str] = mapped_column(String(64), primary_key=True)
    until: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[int] = mapped_column(Integer)


class BindingRow(Base):
    """A registration kept for Location across restarts (the route as Routr's protobuf)."""

    __tablename__ = "bindings"
    aor: Mapped[str] = mapped_column(String(255), primary_key=True)
    contact: Mapped[str] = mapped_column(String(512), primary_key=True)
    route: Mapped[bytes] = mapped_column(LargeBinary)
    expires_at: Mapped[float] = mapped_column(Float, index=True)
