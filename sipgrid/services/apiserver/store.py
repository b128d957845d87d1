"""The Connect resources in a SQL database: create, update, get, delete, list, find.

Plain dictionaries in and out, keyed by the protobuf field names, so the gRPC servicer
converts with json_format and nothing else. Every call is one transaction. Errors are
typed (InvalidArgument names the field) and the servicer maps them to gRPC codes.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import Engine, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from sipgrid.services.metrics import DATABASE_ERRORS

from .schema import (
    AccessControlListRow,
    AgentRow,
    AppliedFileRow,
    Base,
    CredentialsRow,
    DomainRow,
    NumberRow,
    PeerRow,
    RevisionRow,
    TrunkRow,
)

Data = dict[str, Any]

MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 100


class StoreError(Exception):
    pass


class InvalidArgument(StoreError):
    def __init__(self, field_name: str, problem: str) -> None:
        super().__init__(f"{field_name}: {problem}")
        self.field = field_name


class NotFound(StoreError):
    pass


class AlreadyExists(StoreError):
    pass


class FailedPrecondition(StoreError):
    pass


class Unavailable(StoreError):
    pass


# -- validation rules

_HOST = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9\-_]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9\-_]{0,62}))*\.?$|^\[?[0-9A-Fa-f:.]+\]?$"
)
_USER = re.compile(r"^[A-Za-z0-9\-_.!~*'()&=+$,;?/%]+$")
_TEL = re.compile(r"^(tel:)?\+?[0-9\-().]{2,31}$")
_TOKEN = re.compile(r"^[A-Za-z0-9\-.!%*_+`'~]+$")


def _name(data: Data) -> None:
    name = data.get("name", "")
    if not name or not str(name).strip():
        raise InvalidArgument("name", "is required")
    if len(name) > 255:
        raise InvalidArgument("name", "is longer than 255 characters")


def _networks(data: Data, *fields: str) -> None:
    for name in fields:
        for value in data.get(name) or []:
            try:
                ipaddress.ip_network(value, strict=False)
            except ValueError:
                raise InvalidArgument(name, f"not an IP address or CIDR block: {value!r}") from None


def _match(
    data: Data, name: str, pattern: re.Pattern[str], what: str, required: bool = False
) -> None:
    value = data.get(name) or ""
    if not value:
        if required:
            raise InvalidArgument(name, "is required")
        return
    if not pattern.match(str(value)):
        raise InvalidArgument(name, f"not a valid {what}: {value!r}")


def _non_negative(data: Data, *fields: str) -> None:
    for name in fields:
        if int(data.get(name) or 0) < 0:
            raise InvalidArgument(name, "must not be negative")


def _one_of(data: Data, name: str, allowed: tuple[str, ...]) -> None:
    value = data.get(name)
    if value not in (None, "") and value not in allowed:
        raise InvalidArgument(name, f"must be one of {', '.join(allowed)}")


def _aor(data: Data, name: str, required: bool) -> None:
    value = data.get(name) or ""
    if not value:
        if required:
            raise InvalidArgument(name, "is required")
        return
    if not (value.startswith("sip:") or value.startswith("sips:") or value.startswith("backend:")):
        raise InvalidArgument(name, f"must start with sip:, sips: or backend:, not {value!r}")


def _validate_acl(data: Data) -> None:
    _name(data)
    _networks(data, "allow", "deny")


def _validate_credentials(data: Data) -> None:
    _name(data)
    _match(data, "username", _USER, "username", required=True)


def _validate_domain(data: Data) -> None:
    _name(data)
    _match(data, "domain_uri", _HOST, "host name", required=True)
    for index, policy in enumerate(data.get("egress_policies") or []):
        try:
            re.compile(policy.get("rule") or "")
        except re.error as error:
            raise InvalidArgument(
                f"egress_policies[{index}].rule", f"not a valid regular expression: {error}"
            ) from None
        if not policy.get("number_ref"):
            raise InvalidArgument(f"egress_policies[{index}].number_ref", "is required")


def _validate_agent(data: Data) -> None:
    _name(data)
    _match(data, "username", _USER, "username", required=True)
    if not data.get("domain_ref"):
        raise InvalidArgument("domain_ref", "is required")
    _one_of(data, "privacy", ("PRIVATE", "NONE"))
    _non_negative(data, "max_contacts", "expires")


def _validate_number(data: Data) -> None:
    _name(data)
    _match(data, "tel_url", _TEL, "telephone number", required=True)
    _aor(data, "aor_link", required=True)
    iso = data.get("country_iso_code") or ""
    if iso and not re.fullmatch(r"[A-Za-z]{2}", iso):
        raise InvalidArgument("country_iso_code", f"must be two letters (ISO 3166-1), not {iso!r}")
    _match(data, "session_affinity_header", _TOKEN, "header name")
    for index, header in enumerate(data.get("extra_headers") or []):
        if not _TOKEN.match(header.get("name") or ""):
            raise InvalidArgument(f"extra_headers[{index}].name", "not a valid header name")


def _validate_peer(data: Data) -> None:
    _name(data)
    _match(data, "username", _USER, "username", required=True)
    _aor(data, "aor", required=True)
    contact = data.get("contact_addr") or ""
    if contact:
        host, _, port = contact.rpartition(":") if contact.count(":") == 1 else (contact, "", "")
        if not _HOST.match(host) or (port and not (port.isdigit() and 0 < int(port) < 65536)):
            raise InvalidArgument("contact_addr", f"must be host or host:port, not {contact!r}")
    _one_of(data, "balancing_algorithm", ("UNSPECIFIED", "ROUND_ROBIN", "LEAST_SESSIONS"))
    _non_negative(data, "max_contacts", "expires")


def _validate_trunk(data: Data) -> None:
    _name(data)
    _match(data, "inbound_uri", _HOST, "host name")
    for index, uri in enumerate(data.get("uris") or []):
        where = f"uris[{index}]"
        if not _HOST.match(uri.get("host") or ""):
            raise InvalidArgument(f"{where}.host", f"not a valid host: {uri.get('host')!r}")
        if not 0 <= int(uri.get("port") or 0) <= 65535:
            raise InvalidArgument(f"{where}.port", "must be between 1 and 65535")
        if (uri.get("transport") or "").lower() not in ("", "udp", "tcp", "tls", "ws", "wss"):
            raise InvalidArgument(f"{where}.transport", "must be udp, tcp, tls, ws or wss")
        _non_negative(uri, "weight", "priority")
    if data.get("send_register") and not data.get("outbound_credentials_ref"):
        raise InvalidArgument("outbound_credentials_ref", "is required when send_register is true")


@dataclass(frozen=True)
class Kind:
    """What the store needs to know of one resource kind."""

    name: str
    row: type[Any]
    columns: tuple[str, ...]  # writable columns besides name and extended
    refs: dict[str, str]  # column -> referenced kind
    unique: tuple[str, ...]
    findable: tuple[str, ...]
    validate: Callable[[Data], None]
    nested: dict[str, str] = field(default_factory=dict)  # ref column -> output field


KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind(
            "AccessControlList",
            AccessControlListRow,
            ("allow", "deny"),
            {},
            (),
            ("name",),
            _validate_acl,
        ),
        Kind(
            "Credentials",
            CredentialsRow,
            ("username", "password"),
            {},
            (),
            ("name", "username"),
            _validate_credentials,
        ),
        Kind(
            "Domain",
            DomainRow,
            ("domain_uri", "access_control_list_ref", "egress_policies"),
            {"access_control_list_ref": "AccessControlList"},
            ("domain_uri",),
            ("name", "domain_uri"),
            _validate_domain,
            {"access_control_list_ref": "access_control_list"},
        ),
        Kind(
            "Trunk",
            TrunkRow,
            (
                "send_register",
                "inbound_uri",
                "access_control_list_ref",
                "inbound_credentials_ref",
                "outbound_credentials_ref",
                "uris",
            ),
            {
                "access_control_list_ref": "AccessControlList",
                "inbound_credentials_ref": "Credentials",
                "outbound_credentials_ref": "Credentials",
            },
            ("inbound_uri",),
            ("name", "inbound_uri"),
            _validate_trunk,
            {
                "access_control_list_ref": "access_control_list",
                "inbound_credentials_ref": "inbound_credentials",
                "outbound_credentials_ref": "outbound_credentials",
            },
        ),
        Kind(
            "Number",
            NumberRow,
            (
                "tel_url",
                "aor_link",
                "city",
                "country",
                "country_iso_code",
                "session_affinity_header",
                "extra_headers",
                "trunk_ref",
            ),
            {"trunk_ref": "Trunk"},
            ("tel_url",),
            ("name", "tel_url", "aor_link"),
            _validate_number,
            {"trunk_ref": "trunk"},
        ),
        Kind(
            "Agent",
            AgentRow,
            (
                "username",
                "privacy",
                "enabled",
                "max_contacts",
                "expires",
                "domain_ref",
                "credentials_ref",
            ),
            {"domain_ref": "Domain", "credentials_ref": "Credentials"},
            (),
            ("name", "username", "domain_ref"),
            _validate_agent,
            {"domain_ref": "domain", "credentials_ref": "credentials"},
        ),
        Kind(
            "Peer",
            PeerRow,
            (
                "username",
                "aor",
                "contact_addr",
                "balancing_algorithm",
                "with_session_affinity",
                "enabled",
                "max_contacts",
                "expires",
                "access_control_list_ref",
                "credentials_ref",
            ),
            {"access_control_list_ref": "AccessControlList", "credentials_ref": "Credentials"},
            ("username", "aor"),
            ("name", "username", "aor"),
            _validate_peer,
            {"access_control_list_ref": "access_control_list", "credentials_ref": "credentials"},
        ),
    )
}

# Who may point at whom: (referencing kind, column) for each referenced kind.
_REFERRERS: dict[str, list[tuple[str, str]]] = {}


def column_defaults(kind: str) -> Data:
    """The defaults of one kind's writable columns, as schema.py gives them: the one set
    of defaults that every reader of resources fills in (files, the store, the API)."""
    out: Data = {}
    for column in KINDS[kind].row.__table__.columns:
        if column.name not in KINDS[kind].columns or column.default is None:
            continue
        default = column.default
        out[column.name] = default.arg(None) if default.is_callable else default.arg  # type: ignore[attr-defined]
    return out


for _kind in KINDS.values():
    for _column, _target in _kind.refs.items():
        _REFERRERS.setdefault(_target, []).append((_kind.name, _column))
_REFERRERS.setdefault("Number", []).append(("Domain", "egress_policies"))


class Cipher:
    """Encrypts stored passwords with a key from SIPGRID_SECRET_KEY, or a key file made
    at first start (mode 0600) in the data directory."""

    def __init__(
        self, key: bytes | None = None, key_file: Path | None = None, secret: str = ""
    ) -> None:
        if key is None:
            if secret:  # SIPGRID_SECRET_KEY
                key = base64.urlsafe_b64encode(
                    base64.urlsafe_b64decode(secret + "=" * (-len(secret) % 4))[:32].ljust(
                        32, b"\0"
                    )
                )
            elif key_file is not None:
                if not key_file.exists():
                    key_file.parent.mkdir(parents=True, exist_ok=True)
                    key_file.write_bytes(Fernet.generate_key())
                    key_file.chmod(0o600)
                key = key_file.read_bytes().strip()
            else:
                key = Fernet.generate_key()
        self._fernet = Fernet(key)

    def encrypt(self, password: str) -> str:
        return self._fernet.encrypt(password.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise Unavailable(
                "a stored password cannot be decrypted with this SIPGRID_SECRET_KEY"
            ) from None


def _unavailable(error: OperationalError) -> Unavailable:
    """A database that cannot be reached, counted, with the driver's first line."""
    DATABASE_ERRORS.inc()
    return Unavailable(f"the database is unavailable: {str(error.orig).splitlines()[0]}")


class ResourceStore:
    def __init__(
        self, engine: Engine, cipher: Cipher | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._cipher = cipher or Cipher()
        self._clock = clock
        self.engine = engine

    def create_tables(self) -> None:
        """For tests without migrations; the server runs Alembic."""
        Base.metadata.create_all(self.engine)

    def revision(self) -> int:
        """A number that changes with every write (0 before migrations made the table).

        Asked twice a second by every Connect, busy or idle: one SELECT on a connection,
        not an ORM session (0.23 ms of CPU against 0.34 on SQLite)."""
        try:
            with self.engine.connect() as connection:
                value = connection.execute(
                    select(RevisionRow.value).where(RevisionRow.id == 1)
                ).scalar()
        except OperationalError as error:
            raise _unavailable(error) from None
        return value if value is not None else 0

    def _bump(self, session: Session) -> None:
        row = session.get(RevisionRow, 1)
        if row is None:
            session.add(RevisionRow(id=1, value=1))
        else:
            session.execute(
                update(RevisionRow).where(RevisionRow.id == 1).values(value=RevisionRow.value + 1)
            )

    @contextmanager
    def _session(self) -> Iterator[Session]:
        try:
            with self._sessions.begin() as session:
                yield session
        except OperationalError as error:
            raise _unavailable(error) from None

    # -- what resource files applied

    def applied(self, kind: str, ref: str) -> tuple[str, str] | None:
        """(file hash, state hash after the apply) of the last file apply to a ref."""
        with self._session() as session:
            row = session.get(AppliedFileRow, (kind, ref))
            return (row.file_hash, row.state_hash) if row is not None else None

    def mark_applied(self, kind: str, ref: str, file_hash: str, state_hash: str) -> None:
        with self._session() as session:
            session.merge(
                AppliedFileRow(kind=kind, ref=ref, file_hash=file_hash, state_hash=state_hash)
            )

    def state_hash(self, kind: str, ref: str) -> str:
        """A hash of what is stored for a ref (its password too), timestamps aside."""
        data = {
            k: v for k, v in self.get(kind, ref).items() if k not in ("created_at", "updated_at")
        }
        if kind == "Credentials":
            data["password"] = self.password(ref)
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()

    # -- the operations

    def create(self, kind_name: str, data: Data, ref: str | None = None) -> Data:
        kind = KINDS[kind_name]
        data = _clean(data)
        kind.validate(data)
        if kind_name == "Credentials" and not data.get("password"):
            raise InvalidArgument("password", "is required")
        now = int(self._clock())
        with self._session() as session:
            ref = ref or str(uuid.uuid4())
            if session.get(kind.row, ref) is not None:
                raise AlreadyExists(f"ref: a {kind_name} with ref {ref!r} exists")
            self._check_refs(session, kind, data)
            self._check_unique(session, kind, data, None)
            row = kind.row(ref=ref, api_version="v2beta1", created_at=now, updated_at=now)
            self._assign(kind, row, data, creating=True)
            session.add(row)
            self._flush(session, kind)
            self._bump(session)
            return self._out(session, kind, row)

    def update(self, kind_name: str, ref: str, data: Data) -> Data:
        """Fields given (non-empty) replace the stored ones; booleans are always taken."""
        kind = KINDS[kind_name]
        data = _clean(data)
        if not ref:
            raise InvalidArgument("ref", "is required")
        with self._session() as session:
            row = self._row(session, kind, ref)
            merged = {
                **self._out(session, kind, row, nested=False),
                **{
                    k: v
                    for k, v in data.items()
                    if v not in ("", None, [], 0) or isinstance(v, bool)
                },
            }
            kind.validate(merged)
            self._check_refs(session, kind, merged)
            self._check_unique(session, kind, merged, ref)
            self._assign(kind, row, {k: merged[k] for k in data if k in merged}, creating=False)
            row.updated_at = int(self._clock())
            self._flush(session, kind)
            self._bump(session)
            return self._out(session, kind, row)

    def get(self, kind_name: str, ref: str) -> Data:
        kind = KINDS[kind_name]
        with self._session() as session:
            return self._out(session, kind, self._row(session, kind, ref))

    def delete(self, kind_name: str, ref: str) -> None:
        kind = KINDS[kind_name]
        with self._session() as session:
            row = self._row(session, kind, ref)
            for other, column in _REFERRERS.get(kind_name, []):
                other_kind = KINDS[other]
                if column == "egress_policies":
                    users = [
                        r.ref
                        for r in session.scalars(select(other_kind.row))
                        if any(p.get("number_ref") == ref for p in r.egress_policies or [])
                    ]
                else:
                    users = list(
                        session.scalars(
                            select(other_kind.row.ref)
                            .where(getattr(other_kind.row, column) == ref)
                            .limit(3)
                        )
                    )
                if users:
                    raise FailedPrecondition(
                        f"{kind_name} {ref!r} is still referenced by {other} {', '.join(repr(u) for u in users)}"
                    )
            session.delete(row)
            self._bump(session)

    def list_page(
        self, kind_name: str, page_size: int = 0, page_token: str = ""
    ) -> tuple[list[Data], str]:
        kind = KINDS[kind_name]
        if page_size < 0:
            raise InvalidArgument("page_size", "must not be negative")
        size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        with self._session() as session:
            query = select(kind.row).order_by(kind.row.ref).limit(size + 1)
            if page_token:
                query = query.where(kind.row.ref > page_token)
            rows = list(session.scalars(query))
            items = [self._out(session, kind, r) for r in rows[:size]]
            return items, (rows[size - 1].ref if len(rows) > size else "")

    def find_by(self, kind_name: str, field_name: str, value: str) -> list[Data]:
        kind = KINDS[kind_name]
        if field_name not in kind.findable:
            raise InvalidArgument(
                "field_name",
                f"{kind_name} can be found by {', '.join(kind.findable)}, not {field_name!r}",
            )
        with self._session() as session:
            rows = session.scalars(
                select(kind.row)
                .where(getattr(kind.row, field_name) == value)
                .order_by(kind.row.ref)
                .limit(MAX_PAGE_SIZE)
            )
            return [self._out(session, kind, r) for r in rows]

    def password(self, credentials_ref: str) -> str:
        """The plain password, for the services only (the API never returns it)."""
        with self._session() as session:
            row = self._row(session, KINDS["Credentials"], credentials_ref)
            return self._cipher.decrypt(row.password_encrypted)

    # -- helpers

    def _row(self, session: Session, kind: Kind, ref: str) -> Any:
        row = session.get(kind.row, ref) if ref else None
        if row is None:
            raise NotFound(f"no {kind.name} with ref {ref!r}")
        return row

    def _check_refs(self, session: Session, kind: Kind, data: Data) -> None:
        for column, target in kind.refs.items():
            ref = data.get(column)
            if ref and session.get(KINDS[target].row, ref) is None:
                raise InvalidArgument(column, f"no {target} with ref {ref!r}")
        if kind.name == "Domain":
            for index, policy in enumerate(data.get("egress_policies") or []):
                if session.get(NumberRow, policy.get("number_ref")) is None:
                    raise InvalidArgument(
                        f"egress_policies[{index}].number_ref",
                        f"no Number with ref {policy.get('number_ref')!r}",
                    )

    def _check_unique(self, session: Session, kind: Kind, data: Data, ref: str | None) -> None:
        columns = list(kind.unique)
        if kind.name == "Agent":
            taken = session.scalars(
                select(AgentRow.ref).where(
                    AgentRow.username == data.get("username"),
                    AgentRow.domain_ref == data.get("domain_ref"),
                )
            ).first()
            if taken is not None and taken != ref:
                raise AlreadyExists(
                    f"username: {data.get('username')!r} is taken in domain {data.get('domain_ref')!r} by Agent {taken!r}"
                )
        for column in columns:
            value = data.get(column)
            if not value:
                continue
            taken = session.scalars(
                select(kind.row.ref).where(getattr(kind.row, column) == value)
            ).first()
            if taken is not None and taken != ref:
                raise AlreadyExists(f"{column}: {value!r} is taken by {kind.name} {taken!r}")

    def _flush(self, session: Session, kind: Kind) -> None:
        try:
            session.flush()
        except IntegrityError as error:
            raise AlreadyExists(f"{kind.name}: {str(error.orig).splitlines()[0]}") from None

    def _assign(self, kind: Kind, row: Any, data: Data, creating: bool) -> None:
        for key in ("name", "extended", *kind.columns):
            if key not in data and not creating:
                continue
            value = data.get(key)
            if key == "password":
                if value:
                    row.password_encrypted = self._cipher.encrypt(value)
                continue
            if key.endswith("_ref") and not value:
                value = None
            if value is None and creating and key not in ("extended",) and not key.endswith("_ref"):
                continue  # the column default applies
            setattr(row, key, value)

    def _out(self, session: Session, kind: Kind, row: Any, nested: bool = True) -> Data:
        out: Data = {
            "api_version": row.api_version,
            "ref": row.ref,
            "name": row.name,
            "created_at": row.created_at,
            "updated_at": row.updated_at,
        }
        if row.extended is not None:
            out["extended"] = row.extended
        for column in kind.columns:
            if column == "password":
                continue  # never returned
            value = getattr(row, column)
            if value is not None:
                out[column] = value
            if nested and column in kind.nested and value:
                target = KINDS[kind.refs[column]]
                out[kind.nested[column]] = self._out(
                    session, target, session.get(target.row, value)
                )
        if nested and kind.name == "Domain":
            out["egress_policies"] = [
                {
                    **p,
                    "number": self._out(
                        session, KINDS["Number"], session.get(NumberRow, p["number_ref"])
                    ),
                }
                for p in row.egress_policies or []
                if session.get(NumberRow, p.get("number_ref")) is not None
            ]
        return out


def _clean(data: Data) -> Data:
    return {
        k: v for k, v in data.items() if k not in ("ref", "api_version", "created_at", "updated_at")
    }
