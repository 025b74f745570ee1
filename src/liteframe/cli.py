"""The `liteframe` command: parses arguments and calls the library. One `_add_<command>` per command."""
from __future__ import annotations

import argparse
import sys


def _add_bench_reducers(bench) -> None:
    p = bench.add_parser("reducers", help="time every reducer beside a plain copy of the same tensor")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=lambda a: _todo("bench reducers"))


def _add_bench_arch(bench) -> None:
    p = bench.add_parser("arch", help="parameters, FLOPs and latency of the teacher and every student variant")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=lambda a: _todo("bench arch"))


def _add_bench_decode(bench) -> None:
    p = bench.add_parser("decode", help="sparse frame sampling against full decoding of a long video")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=lambda a: _todo("bench decode"))


def _add_bench_e2e(bench) -> None:
    p = bench.add_parser("e2e", help="end-to-end latency breakdown: dense against WAP and the student")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=lambda a: _todo("bench e2e"))


def _add_bench_train(bench) -> None:
    p = bench.add_parser("train", help="distillation throughput with and without the target cache")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=lambda a: _todo("bench train"))


def _add_probe(sub) -> None:
    p = sub.add_parser("probe", help="what is in each video file, and how much of it decodes")
    p.add_argument("videos", nargs="+")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=lambda a: _todo("probe"))


def _add_frames(sub) -> None:
    p = sub.add_parser("frames", help="a contact sheet of the frames the model will see")
    p.add_argument("video")
    p.set_defaults(func=lambda a: _todo("frames"))


def _add_ask(sub) -> None:
    p = sub.add_parser("ask", help="answer a question about a video")
    p.add_argument("video")
    p.add_argument("question")
    p.set_defaults(func=lambda a: _todo("ask"))


def _add_distill(sub) -> None:
    p = sub.add_parser("distill", help="train a LiteFrame student by Compressed Token Distillation")
    p.set_defaults(func=lambda a: _todo("distill"))


def _add_cache_targets(sub) -> None:
    p = sub.add_parser("cache-targets", help="run the teacher once over a manifest and store WAP targets")
    p.set_defaults(func=lambda a: _todo("cache-targets"))


def _todo(name: str) -> int:
    raise NotImplementedError(name)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="liteframe", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    bench = sub.add_parser("bench", help="benchmarks").add_subparsers(dest="bench", required=True)
    for add in (_add_bench_reducers, _add_bench_arch, _add_bench_decode, _add_bench_e2e, _add_bench_train):
        add(bench)
    for add in (_add_probe, _add_frames, _add_ask, _add_distill, _add_cache_targets):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except (ValueError, OSError) as err:  # InputError and VideoDecodeError are ValueErrors
        print(f"liteframe {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
