"""Run every benchmark and write its figures under bench/results/."""

from __future__ import annotations

from bench import (
    alternated,
    cold,
    grpc_stream,
    instructions,
    memory,
    parser_bench,
    sip_load,
    versus,
)


def main() -> None:
    parser_bench.main()
    cold.main()  # the same work hot and after idle gaps: why a quiet server costs more
    instructions.main()  # the figure that does not swing: for comparing two versions
    grpc_stream.main()  # a message's cost on a gRPC stream between two processes, and on a plain one
    memory.main()
    sip_load.main()
    versus.main()  # sipgrid beside Kamailio, one run: the ratios are what counts
    alternated.main()  # the aims, on the median of several alternated rounds


if __name__ == "__main__":
    main()
