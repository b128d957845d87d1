"""The Connect resources in SQLite and in PostgreSQL: CRUD, validation, pagination, references."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect

from sipgrid.services.apiserver.store import (
    AlreadyExists,
    Cipher,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceStore,
    Unavailable,
)


def seed(store: ResourceStore) -> dict[str, str]:
    acl = store.create(
        "AccessControlList", {"name": "Office", "allow": ["192.168.1.0/24"], "deny": ["0.0.0.0/0"]}
    )
    creds = store.create("Credentials", {"name": "Alice", "username": "1001", "password": "s3cret"})
    domain = store.create(
        "Domain",
        {"name": "Local", "domain_uri": "sip.local", "access_control_list_ref": acl["ref"]},
    )
    agent = store.create(
        "Agent",
        {
            "name": "Alice",
            "username": "1001",
            "domain_ref": domain["ref"],
            "credentials_ref": creds["ref"],
            "privacy": "NONE",
            "enabled": True,
            "max_contacts": 2,
        },
    )
    return {
        "acl": acl["ref"],
        "creds": creds["ref"],
        "domain": domain["ref"],
        "agent": agent["ref"],
    }


def test_migrations_from_empty(store: ResourceStore) -> None:
    tables = set(inspect(store.engine).get_table_names())
    assert {
        "access_control_lists",
        "credentials",
        "domains",
        "agents",
        "numbers",
        "peers",
        "trunks",
        "alembic_version",
    } <= tables


def test_create_get_update_delete_with_nested_references(store: ResourceStore) -> None:
    refs = seed(store)
    agent = store.get("Agent", refs["agent"])
    assert agent["username"] == "1001" and agent["enabled"] is True and agent["max_contacts"] == 2
    assert agent["domain"]["domain_uri"] == "sip.local"
    assert agent["domain"]["access_control_list"]["allow"] == ["192.168.1.0/24"]
    assert agent["credentials"]["username"] == "1001" and "password" not in agent["credentials"]
    assert agent["created_at"] > 0
    updated = store.update("Agent", refs["agent"], {"name": "Alice B.", "enabled": False})
    assert (
        updated["name"] == "Alice B."
        and updated["enabled"] is False
        and updated["username"] == "1001"
    )
    assert store.password(refs["creds"]) == "s3cret"
    store.update("Credentials", refs["creds"], {"password": "n3w"})
    assert store.password(refs["creds"]) == "n3w"
    store.delete("Agent", refs["agent"])
    with pytest.raises(NotFound):
        store.get("Agent", refs["agent"])


def test_passwords_are_not_stored_in_plain_text(store: ResourceStore) -> None:
    refs = seed(store)
    with store.engine.connect() as connection:
        stored = connection.exec_driver_sql(
            "SELECT password_encrypted FROM credentials"
        ).scalar_one()
    assert "s3cret" not in stored and store.password(refs["creds"]) == "s3cret"
    with pytest.raises(Unavailable, match="SIPGRID_SECRET_KEY"):
        ResourceStore(store.engine, Cipher()).password(refs["creds"])


@pytest.mark.parametrize(
    ("kind", "data", "field"),
    [
        ("AccessControlList", {"name": "x", "allow": ["10.0.0.0/33"]}, "allow"),
        ("AccessControlList", {"name": "", "allow": []}, "name"),
        ("Credentials", {"name": "x", "username": "a b", "password": "p"}, "username"),
        ("Credentials", {"name": "x", "username": "ab"}, "password"),
        ("Domain", {"name": "x", "domain_uri": "not a host"}, "domain_uri"),
        (
            "Domain",
            {"name": "x", "domain_uri": "a.b", "access_control_list_ref": "missing"},
            "access_control_list_ref",
        ),
        (
            "Domain",
            {
                "name": "x",
                "domain_uri": "a.b",
                "egress_policies": [{"rule": "(", "number_ref": "n"}],
            },
            "egress_policies[0].rule",
        ),
        ("Agent", {"name": "x", "username": "1009"}, "domain_ref"),
        ("Agent", {"name": "x", "username": "1009", "domain_ref": "nope"}, "domain_ref"),
        (
            "Agent",
            {"name": "x", "username": "1009", "domain_ref": "d", "max_contacts": -1},
            "max_contacts",
        ),
        ("Number", {"name": "x", "tel_url": "call me", "aor_link": "sip:a@b"}, "tel_url"),
        ("Number", {"name": "x", "tel_url": "+17853178070", "aor_link": "http://x"}, "aor_link"),
        (
            "Number",
            {
                "name": "x",
                "tel_url": "+17853178070",
                "aor_link": "sip:a@b",
                "country_iso_code": "USA",
            },
            "country_iso_code",
        ),
        (
            "Peer",
            {"name": "x", "username": "asterisk", "aor": "backend:conf", "contact_addr": "h:99999"},
            "contact_addr",
        ),
        (
            "Peer",
            {
                "name": "x",
                "username": "asterisk",
                "aor": "backend:conf",
                "balancing_algorithm": "RANDOM",
            },
            "balancing_algorithm",
        ),
        (
            "Trunk",
            {"name": "x", "uris": [{"host": "sip.carrier.net", "port": 70000}]},
            "uris[0].port",
        ),
        (
            "Trunk",
            {"name": "x", "uris": [{"host": "sip.carrier.net", "transport": "smtp"}]},
            "uris[0].transport",
        ),
        ("Trunk", {"name": "x", "send_register": True}, "outbound_credentials_ref"),
    ],
)
def test_invalid_arguments_name_the_field(
    store: ResourceStore, kind: str, data: dict[str, object], field: str
) -> None:
    with pytest.raises(InvalidArgument) as info:
        store.create(kind, data)
    assert info.value.field == field


def test_duplicates_are_refused(store: ResourceStore) -> None:
    refs = seed(store)
    with pytest.raises(AlreadyExists, match="domain_uri"):
        store.create("Domain", {"name": "Again", "domain_uri": "sip.local"})
    with pytest.raises(AlreadyExists, match="username"):
        store.create("Agent", {"name": "Twin", "username": "1001", "domain_ref": refs["domain"]})
    other = store.create("Domain", {"name": "Other", "domain_uri": "other.local"})
    store.create(
        "Agent", {"name": "Same name elsewhere", "username": "1001", "domain_ref": other["ref"]}
    )
    with pytest.raises(AlreadyExists, match="ref"):
        store.create("Domain", {"name": "Same ref", "domain_uri": "third.local"}, ref=other["ref"])


def test_deleting_a_referenced_resource_says_who_refers(store: ResourceStore) -> None:
    refs = seed(store)
    with pytest.raises(FailedPrecondition, match=f"Agent '{refs['agent']}'"):
        store.delete("Domain", refs["domain"])
    with pytest.raises(FailedPrecondition, match="Domain"):
        store.delete("AccessControlList", refs["acl"])
    trunk = store.create(
        "Trunk",
        {
            "name": "Carrier",
            "inbound_uri": "carrier.example.net",
            "uris": [{"host": "sip.carrier.net", "port": 5060, "transport": "udp"}],
        },
    )
    number = store.create(
        "Number",
        {
            "name": "Main line",
            "tel_url": "tel:+17853178070",
            "aor_link": "sip:1001@sip.local",
            "trunk_ref": trunk["ref"],
        },
    )
    assert store.get("Number", number["ref"])["trunk"]["uris"][0]["host"] == "sip.carrier.net"
    store.update(
        "Domain", refs["domain"], {"egress_policies": [{"rule": ".*", "number_ref": number["ref"]}]}
    )
    assert (
        store.get("Domain", refs["domain"])["egress_policies"][0]["number"]["tel_url"]
        == "tel:+17853178070"
    )
    with pytest.raises(FailedPrecondition, match="Domain"):
        store.delete("Number", number["ref"])
    with pytest.raises(FailedPrecondition, match="Number"):
        store.delete("Trunk", trunk["ref"])


def test_pagination_and_find_by(store: ResourceStore) -> None:
    for i in range(7):
        store.create(
            "AccessControlList",
            {"name": f"acl-{i}", "allow": [f"10.0.{i}.0/24"]},
            ref=f"acl-{i:02d}",
        )
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        items, token = store.list_page("AccessControlList", page_size=3, page_token=token)
        seen += [i["ref"] for i in items]
        pages += 1
        if not token:
            break
    assert seen == [f"acl-{i:02d}" for i in range(7)] and pages == 3
    assert [i["ref"] for i in store.find_by("AccessControlList", "name", "acl-4")] == ["acl-04"]
    with pytest.raises(InvalidArgument) as info:
        store.find_by("AccessControlList", "allow", "x")
    assert info.value.field == "field_name"
    with pytest.raises(InvalidArgument):
        store.list_page("AccessControlList", page_size=-1)


def test_peer_and_trunk_round_trip(store: ResourceStore) -> None:
    creds = store.create("Credentials", {"name": "Trunk", "username": "pbx-1", "password": "x"})
    trunk = store.create(
        "Trunk",
        {
            "name": "Carrier",
            "send_register": True,
            "outbound_credentials_ref": creds["ref"],
            "uris": [
                {
                    "host": "sip.carrier.net",
                    "port": 5060,
                    "transport": "udp",
                    "weight": 10,
                    "priority": 1,
                    "enabled": True,
                }
            ],
        },
    )
    assert trunk["outbound_credentials"]["username"] == "pbx-1" and trunk["send_register"] is True
    peer = store.create(
        "Peer",
        {
            "name": "Asterisk",
            "username": "asterisk",
            "aor": "backend:conference",
            "contact_addr": "192.168.1.2:6060",
            "balancing_algorithm": "LEAST_SESSIONS",
            "with_session_affinity": True,
        },
    )
    assert store.find_by("Peer", "aor", "backend:conference")[0]["ref"] == peer["ref"]
    with pytest.raises(AlreadyExists, match="aor"):
        store.create("Peer", {"name": "Again", "username": "other", "aor": "backend:conference"})
