"""Run one fuzz target under atheris: python -m tests.fuzz.run TARGET [libFuzzer options].

The corpus starts from the RFC 4475 torture messages (../shared/testdata) and the
messages in tests/fuzz/seeds; a crash is written as crash-* in the working directory.
"""

from __future__ import annotations

import os
import sys

import atheris

# atheris instruments Python code: the SIP core's pure Python modules, not the compiled ones
os.environ["SIPGRID_COMPILED"] = "0"
# only our own code is instrumented: instrumenting every library imported (pydantic,
# grpc, ...) took some 20 s at each start
with atheris.instrument_imports(include=["sipgrid", "tests.fuzz"]):
    from tests.fuzz.targets import TARGETS


def main() -> None:
    name = sys.argv[1]
    target = TARGETS[name]
    atheris.Setup([sys.argv[0], *sys.argv[2:]], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
