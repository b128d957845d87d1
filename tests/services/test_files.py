"""Resource files at start never undo the API: a file creates what is new, updates what
it created while the API has left it alone, and keeps the API's version otherwise."""

from __future__ import annotations

from pathlib import Path

import yaml

from sipgrid.services.apiserver.files import apply
from sipgrid.services.apiserver.store import ResourceStore


def domain(ref: str, name: str, uri: str) -> dict[str, object]:
    return {
        "apiVersion": "v2beta1",
        "kind": "Domain",
        "ref": ref,
        "metadata": {"name": name},
        "spec": {"context": {"domainUri": uri}},
    }


def write(path: Path, *resources: dict[str, object]) -> Path:
    path.write_text(yaml.safe_dump(list(resources)))
    return path


def test_files_apply_once_and_never_undo_the_api(store: ResourceStore, tmp_path: Path) -> None:
    file = write(tmp_path / "domains.yaml", domain("d1", "First", "one.example"))
    assert apply(store, file) == [("Domain", "d1", "created")]
    assert apply(store, file) == [("Domain", "d1", "unchanged")]

    # the file changes and nobody touched d1 through the API: the file's change applies
    write(file, domain("d1", "First, renamed in the file", "one.example"))
    assert apply(store, file) == [("Domain", "d1", "updated")]
    assert store.get("Domain", "d1")["name"] == "First, renamed in the file"

    # the API changes d1: a restart keeps the API's version, changed file or not
    store.update("Domain", "d1", {"name": "Renamed through the API"})
    assert apply(store, file) == [("Domain", "d1", "kept")]
    write(file, domain("d1", "The file tries again", "one.example"))
    assert apply(store, file) == [("Domain", "d1", "kept")]
    assert store.get("Domain", "d1")["name"] == "Renamed through the API"

    # a ref the API created is the API's
    store.create("Domain", {"name": "Made by the API", "domain_uri": "two.example"}, ref="d2")
    write(file, domain("d2", "A file wants it", "two.example"))
    assert apply(store, file) == [("Domain", "d2", "kept")]
    assert store.get("Domain", "d2")["name"] == "Made by the API"

    # deleted through the API: the file makes it again
    store.delete("Domain", "d2")
    assert apply(store, file) == [("Domain", "d2", "created")]
