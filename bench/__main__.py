"""Run every benchmark and write its figures under bench/results/."""

from __future__ import annotations

from bench import parser_bench, sip_load


def main() -> None:
    parser_bench.main()
    sip_load.main()


if __name__ == "__main__":
    main()
