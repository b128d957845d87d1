"""What `sipgrid serve` reads from the environment."""

from __future__ import annotations

import pytest

from services.serve import drain_seconds, with_routr_names
from sipgrid.config import ConfigError


def test_routrs_names_are_accepted() -> None:
    assert with_routr_names({"API_ADDR": "api:51907"})["APISERVER_ADDR"] == "api:51907"
    both = {"API_ADDR": "routr:1", "APISERVER_ADDR": "sipgrid:2"}
    assert with_routr_names(both)["APISERVER_ADDR"] == "sipgrid:2"  # ours wins when both


def test_the_drain_time_is_checked() -> None:
    assert drain_seconds({}) == 10.0 and drain_seconds({"SIPGRID_DRAIN_SECONDS": "0"}) == 0.0
    for bad in ("-1", "soon", "7200"):
        with pytest.raises(ConfigError, match="SIPGRID_DRAIN_SECONDS"):
            drain_seconds({"SIPGRID_DRAIN_SECONDS": bad})
