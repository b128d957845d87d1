"""`sipgrid agents|domains|peers|trunks|numbers|credentials|acls ...`, `sipgrid login`,
`sipgrid apply -f` and `sipgrid registrations list`: the Connect API from a shell.

Flags come from the protobuf request messages, so every field the API takes is a flag.
Output is a table, or JSON or YAML with -o. Errors are one line on stderr, exit code 1.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import yaml
from google.protobuf.descriptor import FieldDescriptor

from sipgrid.sdk import ConnectClient, NotFound, Resource, SdkError, as_dict

RESOURCES = {
    "agents": "Agent",
    "domains": "Domain",
    "peers": "Peer",
    "trunks": "Trunk",
    "numbers": "Number",
    "credentials": "Credentials",
    "acls": "AccessControlList",
}
COLUMNS = {
    "Agent": ["ref", "name", "username", "domain.domain_uri", "enabled"],
    "Domain": ["ref", "name", "domain_uri", "access_control_list.name"],
    "Peer": ["ref", "name", "username", "aor", "contact_addr"],
    "Trunk": ["ref", "name", "inbound_uri", "send_register"],
    "Number": ["ref", "name", "tel_url", "aor_link", "trunk.name"],
    "Credentials": ["ref", "name", "username"],
    "AccessControlList": ["ref", "name", "allow", "deny"],
}


def config_path() -> Path:
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "sipgrid" / "cli.json"


def _saved() -> dict[str, str]:
    path = config_path()
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def connection_params() -> list[click.Parameter]:
    """The options every API command takes (new objects for each command)."""
    return [
        click.Option(
            ["--endpoint"],
            envvar="SIPGRID_ENDPOINT",
            help="APIServer address host:port (default: saved by login, or localhost:51908).",
        ),
        click.Option(["--api-key"], envvar="SIPGRID_API_KEY", help="An API key (Bearer)."),
        click.Option(["--api-user"], envvar="SIPGRID_API_USER", help="An API user (HTTP Basic)."),
        click.Option(
            ["--api-password"], envvar="SIPGRID_API_PASSWORD", help="The API user's password."
        ),
        click.Option(["--tls/--no-tls"], default=None, help="Use TLS to reach the APIServer."),
        click.Option(
            ["-o", "--output"],
            type=click.Choice(["table", "json", "yaml"]),
            default="table",
            show_default=True,
        ),
    ]


def _command(
    name: str, callback: Callable[..., Any], help_text: str, params: list[click.Parameter]
) -> click.Command:
    return click.Command(
        name, callback=callback, help=help_text, params=[*params, *connection_params()]
    )


def _client(options: dict[str, Any]) -> ConnectClient:
    """Options first, then the environment (click reads it), then what login saved."""
    saved = _saved()
    user = options.get("api_user") or saved.get("api_user")
    key = options.get("api_key") or (None if options.get("api_user") else saved.get("api_key"))
    tls = options.get("tls")
    return ConnectClient(
        options.get("endpoint") or saved.get("endpoint") or "localhost:51908",
        api_key=key,
        username=user,
        password=options.get("api_password") or saved.get("api_password"),
        tls=bool(tls if tls is not None else saved.get("tls", False)),
    )


def _fail(message: str) -> None:
    click.echo(f"sipgrid: {message}", err=True)
    sys.exit(1)


def _cell(item: dict[str, Any], path: str) -> str:
    value: Any = item
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return "" if value is None else str(value)


def show(kind: str, items: list[dict[str, Any]], output: str) -> None:
    if output == "json":
        click.echo(json.dumps(items if len(items) != 1 else items[0], indent=2))
    elif output == "yaml":
        click.echo(
            yaml.safe_dump(items if len(items) != 1 else items[0], sort_keys=False), nl=False
        )
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(box=None, header_style="bold")
        for column in COLUMNS[kind]:
            table.add_column(column.upper().replace(".", " "))
        for item in items:
            table.add_row(*(_cell(item, c) for c in COLUMNS[kind]))
        Console(width=200).print(table)


def _field_options(request_cls: Any) -> list[tuple[str, click.Option]]:
    options = []
    for f in request_cls.DESCRIPTOR.fields:
        if f.name in ("ref", "api_version"):
            continue
        flag = "--" + f.name.replace("_", "-")
        repeated = f.is_repeated
        if f.type == FieldDescriptor.TYPE_MESSAGE:
            help_text = "JSON" + (" list" if repeated else " object")
            options.append((f.name, click.Option([flag], help=help_text)))
        elif repeated:
            options.append(
                (f.name, click.Option([flag], multiple=True, help="repeat for several values"))
            )
        elif f.type == FieldDescriptor.TYPE_BOOL:
            options.append(
                (f.name, click.Option([f"{flag}/--no-{f.name.replace('_', '-')}"], default=None))
            )
        elif f.type == FieldDescriptor.TYPE_ENUM:
            options.append(
                (
                    f.name,
                    click.Option(
                        [flag],
                        type=click.Choice(
                            [v.name for v in f.enum_type.values], case_sensitive=False
                        ),
                    ),
                )
            )
        elif f.type in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_INT64):
            options.append((f.name, click.Option([flag], type=int)))
        else:
            options.append((f.name, click.Option([flag])))
    return options


def _fields(request_cls: Any, values: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in request_cls.DESCRIPTOR.fields:
        value = values.get(f.name)
        if value is None or value == ():
            continue
        if f.type == FieldDescriptor.TYPE_MESSAGE:
            try:
                value = json.loads(value)
            except ValueError:
                raise click.BadParameter(
                    f"not valid JSON: {value!r}", param_hint="--" + f.name.replace("_", "-")
                ) from None
        elif isinstance(value, tuple):
            value = list(value)
        elif f.type == FieldDescriptor.TYPE_ENUM:
            value = value.upper()
        out[f.name] = value
    return out


def _resource_group(name: str, kind: str) -> click.Group:
    group = click.Group(name, help=f"Manage {kind} resources.")

    def run(
        options: dict[str, Any], action: Callable[[Resource], list[dict[str, Any]] | None]
    ) -> None:
        try:
            with _client(options) as client:
                items = action(client.resource(kind))
        except SdkError as error:
            _fail(str(error))
            return
        if items is not None:
            show(kind, items, options["output"])

    def request_class(method: str) -> Any:
        with ConnectClient("localhost:1") as client:
            return client.resource(kind)._requests[method]

    create_cls, update_cls = request_class("Create"), request_class("Update")

    def create(**options: Any) -> None:
        data = _fields(create_cls, options)
        run(options, lambda r: [as_dict(r.create_from_dict({**data, "ref": options.get("ref")}))])

    def update(ref: str, **options: Any) -> None:
        data = _fields(update_cls, options)
        run(options, lambda r: [as_dict(r.update_from_dict(ref, data))])

    def get(ref: str, **options: Any) -> None:
        run(options, lambda r: [as_dict(r.get(ref))])

    def list_(page_size: int, **options: Any) -> None:
        run(options, lambda r: [as_dict(i) for i in r.list(page_size)])

    def delete(ref: str, **options: Any) -> None:
        def act(r: Resource) -> None:
            r.delete(ref)
            click.echo(f"deleted {kind} {ref}")

        run(options, act)

    def find_by(field_name: str, value: str, **options: Any) -> None:
        run(options, lambda r: [as_dict(i) for i in r.find_by(field_name, value)])

    ref_argument: list[click.Parameter] = [click.Argument(["ref"])]
    for command in (
        _command(
            "create",
            create,
            f"Create a {kind}.",
            [
                click.Option(["--ref"], help="The ref to give it (default: a UUID)."),
                *(o for _, o in _field_options(create_cls)),
            ],
        ),
        _command(
            "update",
            update,
            f"Update a {kind}: the fields given replace the stored ones.",
            [click.Argument(["ref"]), *(o for _, o in _field_options(update_cls))],
        ),
        _command("get", get, f"Show a {kind}.", ref_argument),
        _command(
            "list",
            list_,
            f"List every {kind}.",
            [click.Option(["--page-size"], type=int, default=100, show_default=True)],
        ),
        _command("delete", delete, f"Delete a {kind}.", [click.Argument(["ref"])]),
        _command(
            "find-by",
            find_by,
            f"Find {kind} resources by a field.",
            [click.Argument(["field_name"]), click.Argument(["value"])],
        ),
    ):
        group.add_command(command)
    return group


def _login() -> click.Command:
    def login(
        endpoint: str,
        api_key: str | None,
        api_user: str | None,
        api_password: str | None,
        tls: bool,
    ) -> None:
        if not (api_key or (api_user and api_password)):
            _fail("login needs --api-key, or --api-user and --api-password")
        try:
            with ConnectClient(
                endpoint, api_key=api_key, username=api_user, password=api_password, tls=tls
            ) as client:
                next(iter(client.domains.list(page_size=1)), None)
        except SdkError as error:
            _fail(f"cannot log in to {endpoint}: {error}")
        path = config_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        saved = {
            "endpoint": endpoint,
            "api_key": api_key,
            "api_user": api_user,
            "api_password": api_password,
            "tls": tls,
        }
        path.write_text(json.dumps(saved))
        path.chmod(0o600)
        click.echo(f"logged in to {endpoint}; saved in {path}")

    return click.Command(
        "login",
        callback=login,
        help="Check and save the APIServer address and a credential for later commands.",
        params=[
            click.Option(["--endpoint"], default="localhost:51908", show_default=True),
            click.Option(["--api-key"]),
            click.Option(["--api-user"]),
            click.Option(["--api-password"]),
            click.Option(["--tls/--no-tls"], default=False),
        ],
    )


def _apply() -> click.Command:
    def apply(file: Path, **options: Any) -> None:
        from sipgrid.config import ConfigError
        from sipgrid.services.apiserver.files import ORDER, read_resources, to_store

        try:
            resources = sorted(read_resources(file), key=lambda pair: ORDER.index(pair[1]["kind"]))
        except ConfigError as error:
            _fail(str(error))
            return
        try:
            with _client(options) as client:
                for _where, resource in resources:
                    kind, ref = resource["kind"], resource["ref"]
                    data = to_store(kind, resource)
                    target = client.resource(kind)
                    try:
                        target.get(ref)
                    except NotFound:
                        target.create_from_dict({**data, "ref": ref})
                        click.echo(f"{kind} {ref} created")
                    else:
                        target.update_from_dict(ref, data)
                        click.echo(f"{kind} {ref} updated")
        except SdkError as error:
            _fail(str(error))

    return _command(
        "apply",
        apply,
        "Create or update resources from Routr-format YAML/JSON files, by ref.",
        [
            click.Option(
                ["-f", "--file"], type=click.Path(exists=True, path_type=Path), required=True
            )
        ],
    )


def _registrations() -> click.Group:
    group = click.Group("registrations", help="Current bindings of the Location service.")

    def list_(location_addr: str, output: str) -> None:
        import grpc

        from sipgrid.api.convert import route_from_pb
        from sipgrid.pb import location_pb2, location_pb2_grpc
        from sipgrid.services.grpc_options import token_metadata

        try:
            with grpc.insecure_channel(location_addr) as channel:
                reply = location_pb2_grpc.LocationStub(channel).ListRoutes(
                    location_pb2.ListRoutesRequest(), timeout=10, metadata=token_metadata()
                )  # type: ignore[no-untyped-call]
        except grpc.RpcError as error:
            _fail(f"cannot reach Location at {location_addr}: {error.code().name}")  # type: ignore[attr-defined]
            return
        rows = []
        for binding in reply.bindings:
            route = route_from_pb(binding.route)
            rows.append(
                {
                    "aor": binding.aor,
                    "contact": route.contact_uri,
                    "transport": route.transport.value,
                    "source": f"{route.host}:{route.port}",
                    "expires": route.expires,  # granted
                    "expires_in": max(0, int(route.expires_at() - time.time())),
                    "registered_on": int(route.registered_on),
                }
            )
        if output != "table":
            click.echo(
                json.dumps(rows, indent=2)
                if output == "json"
                else yaml.safe_dump(rows, sort_keys=False),
                nl=output == "json",
            )
            return
        from rich.console import Console
        from rich.table import Table

        table = Table(box=None, header_style="bold")
        for column in ("AOR", "CONTACT", "TRANSPORT", "SOURCE", "EXPIRES IN"):
            table.add_column(column)
        for row in rows:
            table.add_row(
                row["aor"],
                row["contact"],
                row["transport"],
                row["source"],
                f"{row['expires_in']} s of {row['expires']}",
            )
        Console(width=200).print(table)

    group.add_command(
        click.Command(
            "list",
            callback=list_,
            help="AOR, contact, transport, source address and the seconds left of every binding.",
            params=[
                click.Option(
                    ["--location-addr"],
                    envvar="SIPGRID_LOCATION_ADDR",
                    default="localhost:51902",
                    show_default=True,
                ),
                click.Option(
                    ["-o", "--output"],
                    type=click.Choice(["table", "json", "yaml"]),
                    default="table",
                ),
            ],
        )
    )
    return group


def _trunk_status() -> click.Command:
    def status(registry_addr: str, output: str) -> None:
        import grpc

        from sipgrid.pb import registry_pb2, registry_pb2_grpc
        from sipgrid.services.grpc_options import token_metadata

        try:
            with grpc.insecure_channel(registry_addr) as channel:
                reply = registry_pb2_grpc.RegistryStub(channel).ListTrunkStatus(
                    registry_pb2.ListTrunkStatusRequest(), timeout=10, metadata=token_metadata()
                )
        except grpc.RpcError as error:
            _fail(f"cannot reach the Registry at {registry_addr}: {error.code().name}")  # type: ignore[attr-defined]
            return
        rows = [
            {
                "ref": t.ref,
                "state": t.state,
                "registrar": t.registrar,
                "last_answer": f"{t.last_status} {t.last_reason}".strip()
                if t.last_status
                else t.last_reason,
                "expires_in": t.expires_in if t.expires_in >= 0 else None,
                "next_attempt_in": t.next_attempt_in,
                "failures": t.failures,
            }
            for t in reply.trunks
        ]
        if output == "json":
            click.echo(json.dumps(rows, indent=2))
            return
        from rich.console import Console
        from rich.table import Table

        table = Table(box=None, header_style="bold")
        for column in ("TRUNK", "STATE", "REGISTRAR", "LAST ANSWER", "EXPIRES IN", "NEXT IN"):
            table.add_column(column)
        for row in rows:
            expires = row["expires_in"]
            table.add_row(
                str(row["ref"]),
                str(row["state"]),
                str(row["registrar"]),
                str(row["last_answer"]),
                "-" if expires is None else f"{expires} s",
                f"{row['next_attempt_in']} s",
            )
        Console(width=200).print(table)

    return click.Command(
        "status",
        callback=status,
        help="Trunks registered with their providers: state, last answer, expiry, next try.",
        params=[
            click.Option(
                ["--registry-addr"],
                envvar="SIPGRID_REGISTRY_ADDR",
                default="localhost:51902",
                show_default=True,
                help="Where the Registry's status is served (the all-in-one: with Location).",
            ),
            click.Option(["-o", "--output"], type=click.Choice(["table", "json"]), default="table"),
        ],
    )


def _admin() -> list[click.Command]:
    """Keys and users of the external API, managed on the APIServer's own database
    (DATABASE_URL, or SQLite in SIPGRID_DATA_DIR): run them where the server runs."""

    def store() -> tuple[Any, Any]:
        from sipgrid.services.apiserver.api import ApiKeys, ApiUsers
        from sipgrid.services.apiserver.database import database_url, make_engine, migrate

        engine = make_engine(database_url())
        migrate(engine)
        return ApiKeys(engine), ApiUsers(engine)

    keys = click.Group(
        "apikeys", help="Create and revoke API keys (bearer tokens of the external API)."
    )

    def create_key(name: str) -> None:
        click.echo(store()[0].create(name))

    def revoke_key(key: str) -> None:
        if not store()[0].revoke(key):
            _fail("no such API key")
        click.echo("revoked")

    keys.add_command(
        click.Command(
            "create",
            callback=create_key,
            help="Make a key and print it (only its hash is kept).",
            params=[click.Option(["--name"], default="")],
        )
    )
    keys.add_command(
        click.Command(
            "revoke",
            callback=revoke_key,
            help="Revoke a key; every instance stops taking it within a second.",
            params=[click.Argument(["key"])],
        )
    )

    users = click.Group(
        "apiusers", help="API users: HTTP Basic credentials, as Routr's Node SDK sends."
    )

    def set_user(username: str, password: str) -> None:
        store()[1].set(username, password)
        click.echo(f"API user {username} set")

    def remove_user(username: str) -> None:
        if not store()[1].remove(username):
            _fail(f"no API user {username}")
        click.echo(f"API user {username} removed")

    users.add_command(
        click.Command(
            "set",
            callback=set_user,
            help="Create an API user or change its password.",
            params=[
                click.Argument(["username"]),
                click.Option(["--password"], prompt=True, hide_input=True, required=True),
            ],
        )
    )
    users.add_command(
        click.Command(
            "remove",
            callback=remove_user,
            help="Remove an API user.",
            params=[click.Argument(["username"])],
        )
    )
    bans = click.Group(
        "bans", help="Sources banned for guessing SIP passwords (BAN_FAILURES, BAN_SECONDS)."
    )

    def ban_store() -> Any:
        from sipgrid.services.apiserver.bans import DatabaseBans
        from sipgrid.services.apiserver.database import database_url, make_engine, migrate

        engine = make_engine(database_url())
        migrate(engine)
        return DatabaseBans(engine)

    def list_bans() -> None:
        found = ban_store().list()
        if not found:
            click.echo("no source is banned")
        for ban in found:
            until = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ban.until))
            click.echo(f"{ban.host}\tuntil {until}\t{ban.reason}")

    def remove_ban(host: str) -> None:
        if not ban_store().remove(host):
            _fail(f"{host} is not banned")
        click.echo(f"{host} unbanned (sipgrid lets it in again within seconds)")

    bans.add_command(click.Command("list", callback=list_bans, help="The bans in force."))
    bans.add_command(
        click.Command(
            "remove",
            callback=remove_ban,
            help="Lift the ban of a source address.",
            params=[click.Argument(["host"])],
        )
    )
    return [keys, users, bans]


def parse_duration(text: str) -> int:
    """Seconds from 90, 90s, 30m, 12h or 7d."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    value = text.strip().lower()
    scale = units.get(value[-1:], 0)
    digits = value[:-1] if scale else value
    if not digits.isdigit() or int(digits) == 0:
        raise click.BadParameter(f"{text!r} is not a duration like 3600, 30m, 1h or 7d")
    return int(digits) * (scale or 1)


def _tokens() -> click.Group:
    group = click.Group("tokens", help="X-Connect-Token JWTs for browser phones.")

    def create(
        aor: str,
        methods: str,
        ttl: str,
        domain: str,
        domain_ref: str,
        aor_link: str,
        ref: str,
        privacy: str,
        max_contacts: int,
        key: Path | None,
    ) -> None:
        from sipgrid.config import ConfigError
        from sipgrid.sdk import create_token
        from sipgrid.services.settings import Settings

        try:
            key = key or Settings.load().data_dir / "token-private.pem"
            value = create_token(
                key,
                aor=aor,
                methods=[m for m in methods.split(",") if m.strip()],
                ttl=parse_duration(ttl),
                domain=domain,
                domain_ref=domain_ref,
                aor_link=aor_link,
                ref=ref,
                privacy=privacy,
                max_contacts=max_contacts,
            )
        except (ValueError, OSError, ConfigError) as error:
            _fail(str(error))
            return
        click.echo(value)

    group.add_command(
        click.Command(
            "create",
            callback=create,
            help="Sign a token with the private key whose public key sipgrid verifies with.",
            params=[
                click.Option(["--aor"], required=True, help="The address it registers."),
                click.Option(
                    ["--methods"],
                    default="REGISTER,INVITE",
                    show_default=True,
                    help="Allowed methods, comma separated.",
                ),
                click.Option(
                    ["--ttl"], default="1h", show_default=True, help="Lifetime: 30m, 1h, 7d."
                ),
                click.Option(
                    ["--domain"], default="", help="Its domain (default: the aor's host)."
                ),
                click.Option(["--domain-ref"], default=""),
                click.Option(["--aor-link"], default="", help="Where its calls go otherwise."),
                click.Option(["--ref"], default=""),
                click.Option(["--privacy"], type=click.Choice(["NONE", "PRIVATE"]), default="NONE"),
                click.Option(["--max-contacts"], type=int, default=0),
                click.Option(
                    ["--key"],
                    type=click.Path(path_type=Path),
                    envvar="SIPGRID_TOKEN_KEY",
                    default=None,
                    help="PEM private key (RSA or EC P-256); sipgrid run makes one: "
                    "token-private.pem in the data directory (SIPGRID_DATA_DIR, else data/).",
                ),
            ],
        )
    )
    return group


def commands() -> list[click.Command]:
    groups = {name: _resource_group(name, kind) for name, kind in RESOURCES.items()}
    groups["trunks"].add_command(_trunk_status())
    return [
        *groups.values(),
        _login(),
        _apply(),
        _registrations(),
        _tokens(),
        *_admin(),
    ]
