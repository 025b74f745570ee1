"""The `liteframe` command: parses arguments and calls the library. One `_add_<command>` per command."""
# The parser's description is what users read in `liteframe --help`; this docstring is for developers.
from __future__ import annotations

import argparse
import sys
import warnings

from liteframe import __version__
from liteframe.errors import InputError, one_line
from liteframe.reduce import REDUCERS

DESCRIPTION = ("Long-video question answering with Video LLMs, made cheap: LiteFrame video encoders, WAP and the "
               "token reducers it is compared against, and the distillation that trains LiteFrame.")
ENCODERS = f"dense, a reducer ({', '.join(REDUCERS.names())}) or student:DIR"
COMPRESSION = "4, 16, 64 or a block t,h,w: tokens merged into one"


def _add_bench_reducers(bench) -> None:
    p = bench.add_parser("reducers", help="time every reducer beside a plain copy of the same tensor")
    p.add_argument("--frames", type=int, default=256)
    p.add_argument("--size", type=int, default=32, help="patch grid side (32 for 448 px at patch 14)")
    p.add_argument("--channels", type=int, default=1024)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], help="default: float32 on CPU, else bfloat16")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--compression", default="16", help=f"{COMPRESSION} (default 16)")
    p.add_argument("--json", action="store_true")

    def handle(a):
        from liteframe.bench.reducers import COLUMNS, run as run_bench
        from liteframe.tables import print_rows

        print_rows(run_bench(frames=a.frames, size=a.size, channels=a.channels, device=a.device, dtype=a.dtype,
                             repeats=a.repeats, warmup=a.warmup, compression=a.compression), a.json, COLUMNS)

    p.set_defaults(func=handle)


def _add_bench_arch(bench) -> None:
    p = bench.add_parser("arch", help="parameters, FLOPs and latency of the teacher and every student variant")
    p.add_argument("--frames", type=int, default=256, help="frames for the FLOP count (and GPU latency)")
    p.add_argument("--size", type=int, default=448, help="frame size in pixels for the FLOP count (and GPU latency)")
    p.add_argument("--latency-frames", type=int, help="frames for latency (default: --frames on GPU, 4 on CPU)")
    p.add_argument("--latency-size", type=int, help="pixels for latency (default: --size on GPU, 112 on CPU)")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per model (median), after one warm-up")
    p.add_argument("--threads", type=int, default=1, help="CPU threads for the timed runs (1: compute, not "
                   "thread scheduling on a shared machine)")
    p.add_argument("--no-latency", dest="latency", action="store_false", help="parameters and FLOPs only")
    p.add_argument("--archs", type=lambda t: t.split(","), help="comma-separated rows (default: all; the teacher "
                   "always comes first)")
    p.add_argument("--compile", action="store_true", help="time the models through torch.compile")
    p.add_argument("--teacher", metavar="DIR", help="a teacher folder (InternVL3, Qwen, DINOv2, CLIP, SigLIP) "
                   "instead of InternViT-300M; the variant rows are its own students by the paper's ratios")
    p.add_argument("--model-family", default="internvl", help="internvl, qwen2_5_vl, qwen3_vl or qwen3_5: without "
                   "--teacher, the full-size teacher (InternViT-300M, Qwen2.5-VL-7B's ViT and merger, Qwen3-VL-8B's "
                   "or Qwen3.5's tower and mergers) and its students")
    p.add_argument("--student", metavar="DIR", action="append", default=[], help="a student folder: one more row "
                   "(repeatable)")
    p.add_argument("--plot", metavar="PATH", help="save a bar chart PNG of FLOPs and latency")
    p.add_argument("--json", action="store_true")

    def run(a):
        from liteframe.bench import arch
        from liteframe.tables import print_rows

        rows = arch.run(frames=a.frames, size=a.size, latency_frames=a.latency_frames, latency_size=a.latency_size,
                        dtype=a.dtype, device=a.device, repeats=a.repeats, threads=a.threads, latency=a.latency,
                        archs=a.archs or arch.ARCHS, compile=a.compile, teacher=a.teacher, students=a.student,
                        model_family=a.model_family)
        if a.plot:
            arch.plot(rows, a.plot)
        if a.json:
            print_rows(rows, as_json=True)
        else:
            print(arch.markdown(rows))

    p.set_defaults(func=run)


def _add_bench_decode(bench) -> None:
    p = bench.add_parser("decode", help="sparse frame sampling against full decoding of a long video")
    p.add_argument("--json", action="store_true")
    p.add_argument("--minutes", type=float, default=10.0, help="length of the generated 720p video (cached)")
    p.add_argument("--frames", type=int, default=256, help="frames each strategy samples")
    p.add_argument("--keyframe-s", type=int, default=2, help="seconds between keyframes of the generated video")
    p.add_argument("--repeats", type=int, default=2, help="interleaved rounds; the best time of each is kept")
    p.add_argument("--cache-dir", default=None, help="where the generated video is kept (default ~/.cache)")
    p.add_argument("--content", choices=("noise", "natural"), default="noise",
                   help="generated picture: a drifting noise texture, or moving gradients and shapes with mild noise")
    p.add_argument("--frontend", action="store_true",
                   help="instead: load_video of 64 frames at 448 px from a 10 s clip against a plain decode")

    def run(a):
        from liteframe.bench.decode import run as run_bench
        from liteframe.tables import print_rows

        rows = run_bench(minutes=a.minutes, num_frames=a.frames, keyframe_s=a.keyframe_s, repeats=a.repeats,
                         cache_dir=a.cache_dir, content=a.content, frontend=a.frontend)
        print_rows(rows, a.json, list(dict.fromkeys(key for row in rows for key in row)))

    p.set_defaults(func=run)


def _add_bench_e2e(bench) -> None:
    p = bench.add_parser("e2e", help="end-to-end latency breakdown: dense against WAP and the student")
    ints = lambda text: [int(v) for v in text.split(",")]  # noqa: E731
    p.add_argument("--model", help="a checkpoint folder of a registered model family (default: a tiny random one "
                   "of --model-family, built on the fly)")
    p.add_argument("--model-family", default="internvl",
                   help="a registered family (internvl, qwen2_5_vl, qwen3_vl, qwen3_vl_moe, qwen3_5, qwen3_5_moe): "
                        "the tiny or random checkpoint to build, and the defaults below")
    p.add_argument("--random-size", choices=["8b", "7b"],
                   help="random weights in a real checkpoint's shapes, for a GPU: 8b InternVL3-8B, 7b Qwen2.5-VL-7B")
    p.add_argument("--video", help="default: a synthetic 12 s 480x270 H.264 clip")
    p.add_argument("--dense-frames", type=ints, help="comma-separated frame budgets (default: 8,16,32; the Qwen "
                   "families 16,32,64)")
    p.add_argument("--frames", type=ints, help="budgets of the other encoders (default: 8x the dense ones)")
    p.add_argument("--encoders", type=lambda t: t.split(","),
                   help="compared against dense: reducer names and/or student (default: wap,student; Qwen wap)")
    p.add_argument("--compression", default="16", help=f"{COMPRESSION} by the other encoders (default 16)")
    p.add_argument("--student", help="a LiteFrame folder (default: cropped from the checkpoint, untrained)")
    p.add_argument("--image-size", type=int, default=112, help="input size of the tiny checkpoint")
    p.add_argument("--device", default=None)
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--new-tokens", type=int, default=8, help="tokens generated per answer (exactly)")
    p.add_argument("--front-ends", type=lambda t: t.split(","), default=["new"],
                   help="comma-separated: new (resize in the decoder, decode overlapped with the ViT) and/or old "
                        "(torch resize, sequential), each setting run through each")
    p.add_argument("--prefills", type=lambda t: t.split(","), default=["incremental"],
                   help="comma-separated: incremental (the video prefilled chunk by chunk as it is encoded) and/or "
                        "whole (the prompt prefilled once the video is encoded), each setting run through each")
    p.add_argument("--plot", help="write total latency against frames to this image")
    p.add_argument("--json", action="store_true")

    def run(a) -> None:
        from liteframe.bench.e2e import COLUMNS, plot_latency, run as run_bench
        from liteframe.tables import print_rows

        rows = run_bench(model=a.model, video=a.video, dense_frames=a.dense_frames, frames=a.frames,
                         encoders=a.encoders, compression=a.compression, student=a.student, image_size=a.image_size,
                         random_size=a.random_size, device=a.device, dtype=a.dtype, repeats=a.repeats,
                         warmup=a.warmup, new_tokens=a.new_tokens, model_family=a.model_family,
                         front_ends=a.front_ends, prefills=a.prefills)
        print_rows(rows, a.json, COLUMNS)
        if not a.json:
            print("\nThe new front end decodes while the ViT runs: its stage times overlap and do not add up to the "
                  "total. An incremental prefill runs between the ViT's chunks; LLM prefill includes it. front-end "
                  "share: (total - ViT - LLM) / total.")
        if a.plot:
            plot_latency(rows, a.plot)

    p.set_defaults(func=run)


def _add_bench_stream(bench) -> None:
    p = bench.add_parser("stream", help="a live session over a generated hour: answer latency as the video grows, "
                         "beside ask")
    p.add_argument("--model-family", default="internvl", help="the tiny checkpoint's family")
    p.add_argument("--minutes", type=float, default=60, help="length of the generated source")
    p.add_argument("--marks", type=lambda t: [float(x) for x in t.split(",")], default=[1, 5, 20, 60],
                   help="comma-separated minutes of watched video at which the question is asked")
    p.add_argument("--rate", type=float, default=1.0, help="frames sampled per second of video")
    p.add_argument("--speed", type=float, default=60.0, help="the source is fed at this many times real time")
    p.add_argument("--encoder", default="wap", help="dense, a grid reducer or student:DIR")
    p.add_argument("--compression", default="16", help=COMPRESSION)
    p.add_argument("--max-tokens", type=int, default=2048, help="the session cache's budget")
    p.add_argument("--chunk-frames", type=int, default=8)
    p.add_argument("--new-tokens", type=int, default=8, help="tokens generated per answer (exactly)")
    p.add_argument("--repeats", type=int, default=3, help="answers at each mark; latency is their median")
    p.add_argument("--device", default=None)
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    p.add_argument("--no-ask", dest="ask", action="store_false", help="the session's rows only")
    p.add_argument("--json", action="store_true")

    def run(a) -> None:
        from liteframe.bench.stream import COLUMNS, run as run_bench
        from liteframe.tables import print_rows

        print_rows(run_bench(model_family=a.model_family, minutes=a.minutes, marks=a.marks, rate=a.rate,
                             speed=a.speed, encoder=a.encoder, compression=a.compression, max_tokens=a.max_tokens,
                             chunk_frames=a.chunk_frames, new_tokens=a.new_tokens, repeats=a.repeats,
                             device=a.device, dtype=a.dtype, ask=a.ask), a.json, COLUMNS)

    p.set_defaults(func=run)


def _add_bench_train(bench) -> None:
    p = bench.add_parser("train", help="distillation throughput with and without the target cache")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="cpu: the whole job with tiny models; cuda: the full-size step in bf16 with MFU")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=4, help="clips per step")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers (cpu)")
    p.add_argument("--json", action="store_true")

    def run(a) -> None:
        from liteframe.tables import print_rows
        from liteframe.bench.train import run as run_bench

        print_rows(run_bench(a.device, a.steps, a.batch_size, a.workers), a.json)

    p.set_defaults(func=run)


def _add_bench_adapt(bench) -> None:
    p = bench.add_parser("adapt", help="LMA training tokens/s and peak memory at 128, 256 and 512 frames")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="cpu: the tiny random InternVL3; cuda: InternVL3-8B shapes with random weights, bf16")
    p.add_argument("--frames", type=int, nargs="+", default=[128, 256, 512], help="frame budgets")
    p.add_argument("--steps", type=int, default=3, help="timed steps per budget (after one warm-up)")
    p.add_argument("--encoder", default="wap", help=ENCODERS)
    p.add_argument("--json", action="store_true")

    def run(a) -> None:
        from liteframe.bench.adapt import run as run_bench
        from liteframe.tables import print_rows

        print_rows(run_bench(a.device, a.frames, a.steps, a.encoder), a.json)

    p.set_defaults(func=run)


def _add_probe(sub) -> None:
    p = sub.add_parser("probe", help="what is in each video file, and how much of it decodes")
    p.add_argument("videos", nargs="+")
    p.add_argument("--json", action="store_true", help="one JSON object per file")

    def run(a):
        from liteframe.video.probe import run_probe
        return run_probe(a.videos, as_json=a.json)

    p.set_defaults(func=run)


def _add_frames(sub) -> None:
    p = sub.add_parser("frames", help="a contact sheet of the frames the model will see")
    p.add_argument("video")
    p.add_argument("--frames", type=int, default=16, help="how many frames to sample")
    p.add_argument("--sampling", default="clips", help="sampling strategy: uniform, clips or fps")
    p.add_argument("--out", default="sheet.png", help="where to write the PNG")

    def run(a):
        from liteframe.compression import DEFAULT
        from liteframe.video.contact import contact_sheet
        clips = {"clip_frames": DEFAULT.clip_frames()} if a.sampling == "clips" else {}  # the 16x student's clips
        contact_sheet(a.video, a.frames, a.sampling, a.out, **clips)
        print(a.out)

    p.set_defaults(func=run)


def _add_pixels(p) -> None:
    p.add_argument("--pixels", default="processor",
                   help="how frames are sized: processor (the checkpoint's processor config, as AutoProcessor "
                        "sizes them) or, for Qwen2.5-VL, qwen-vl-utils (its video budget)")


def _add_ask(sub) -> None:
    p = sub.add_parser("ask", help="answer a question about a video")
    p.add_argument("video")
    p.add_argument("question")
    p.add_argument("--model", required=True, help="a checkpoint folder (InternVL3 -hf or Qwen2.5-VL)")
    p.add_argument("--encoder", default="dense", help=ENCODERS)
    p.add_argument("--frames", type=int, default=16, help="frames sampled, as clips of the compression's length")
    p.add_argument("--compression", help=f"{COMPRESSION} (default: a student's own, else 16)")
    p.add_argument("--timestamps", action="store_true", help="put each slot's time in its label: Frame3 (12.4s)")
    _add_pixels(p)
    p.add_argument("--adapter", help="a LoRA adapter folder from `liteframe adapt` (OUTPUT/adapter)")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                   help="auto: bfloat16 on cuda, float32 on cpu")
    p.add_argument("--repeats", type=int, default=1, help="timed runs; latency is their median")
    p.add_argument("--warmup", type=int, default=0, help="untimed runs first")
    p.add_argument("--json", action="store_true")

    def run(a) -> None:
        from liteframe.llm import ask

        answer = ask(a.video, a.question, a.model, a.encoder, a.frames, compression=a.compression, device=a.device,
                     dtype=a.dtype, repeats=a.repeats, warmup=a.warmup, max_new_tokens=a.max_new_tokens,
                     timestamps=a.timestamps, adapter=a.adapter, pixels=a.pixels)
        print(answer.render(a.json))

    p.set_defaults(func=run)


def _add_watch(sub) -> None:
    p = sub.add_parser("watch", help="watch a live video and answer questions about what it has seen so far")
    p.add_argument("source", help="a file still being written, a pipe (- for stdin) or a URL (rtsp://, http://)")
    p.add_argument("--model", required=True, help="a checkpoint folder of any supported family")
    p.add_argument("--encoder", default="dense", help="dense, a grid reducer (wap, avg, max, subsample) or student:DIR")
    p.add_argument("--compression", help=f"{COMPRESSION} (default: a student's own, else 16)")
    p.add_argument("--rate", type=float, default=1.0, help="frames sampled per second of video")
    p.add_argument("--questions", type=argparse.FileType("r"), default=None,
                   help="a file of questions, one a line, read as they come (default: stdin; needed with SOURCE -)")
    p.add_argument("--max-tokens", type=int, help="the LLM cache's budget: the oldest frames are dropped past it "
                   "(default: the LLM's context less 512)")
    p.add_argument("--chunk-frames", type=int, default=8, help="frames encoded and prefilled at once (whole clips)")
    p.add_argument("--speed", type=float, default=1.0, help="video seconds per wall second of a replayed source")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    p.add_argument("--json", action="store_true", help="one JSON object a line per answer")

    def run(a) -> None:
        from liteframe.llm import watch

        if a.source == "-" and a.questions is None:
            raise InputError("watching stdin (-): the questions come from a file, --questions FILE")
        for answer in watch(a.source, a.model, a.questions or sys.stdin, encoder=a.encoder,
                            compression=a.compression, rate=a.rate, chunk_frames=a.chunk_frames,
                            device=a.device, dtype=a.dtype,
                            max_new_tokens=a.max_new_tokens, max_tokens=a.max_tokens, speed=a.speed):
            print(answer.render(a.json), flush=True)

    p.set_defaults(func=run)


def _add_distill(sub) -> None:
    p = sub.add_parser("distill", help="train a LiteFrame student by Compressed Token Distillation",
                       description="Train a student by CTD; resumes from the newest checkpoint in `output` (a "
                                   "folder of another run is refused). SIGTERM or Ctrl-C saves and stops. Multi-GPU: "
                                   "torchrun --nproc_per_node N -m liteframe.cli distill ...")
    p.add_argument("--config", help="YAML file of distill settings (see configs/distill_tiny.yaml)")
    _add_train_compression(p)
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="override settings, e.g. steps=100 optim.lr=1e-4 student.depth=6")

    def run(a) -> int:
        import logging
        import os

        from liteframe.tables import print_rows
        from liteframe.train.distill import DistillConfig, distill, summary_rows

        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
        result = distill(DistillConfig.load(a.config, _train_overrides(a)))
        if result.signal is not None:
            return _stopped(result)
        if os.environ.get("RANK", "0") == "0":
            print(f"step {result.step}: student saved to {result.output}")
            rows = summary_rows(result.metrics)
            if rows:
                print_rows(rows, False)
        return 0

    p.set_defaults(func=run)


def _add_cache_targets(sub) -> None:
    p = sub.add_parser("cache-targets", help="run the teacher once over a manifest and store WAP targets",
                       description="Write the target cache named by `target_cache` for the distill config.")
    p.add_argument("--config", help="YAML file of distill settings")
    _add_train_compression(p)
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="override settings, e.g. cache_views=4")

    def run(a) -> int:
        import os
        import signal

        from liteframe.train.distill import DistillConfig, cache_targets

        summary = cache_targets(DistillConfig.load(a.config, _train_overrides(a)))
        if summary["signal"] is not None:
            print(f"stopped by {signal.Signals(summary['signal']).name} before the cache was complete; run the same "
                  "command to build it")
            return 128 + summary["signal"]
        if os.environ.get("RANK", "0") == "0":
            print(f"{summary['clips']} clips cached in {summary['folder']}, {summary['failed']} failed")
        return 0

    p.set_defaults(func=run)


def _add_train_compression(p) -> None:
    p.add_argument("--compression", type=int, choices=(4, 16, 64),
                   help="tokens merged into one: the WAP target block and the student's grid (same as compression=N)")


def _stopped(result) -> int:
    """A training run stopped by a signal: it saved a checkpoint; exit as the signal would have (128 + its number)."""
    import signal

    print(f"stopped at step {result.step} by {signal.Signals(result.signal).name}; checkpoint saved; run the same "
          "command to resume")
    return 128 + result.signal


def _train_overrides(a) -> list[str]:
    """KEY=VALUE overrides, `--compression` last so that it wins."""
    return [*a.overrides, *([f"compression={a.compression}"] if a.compression else [])]


def _add_eval(sub) -> None:
    from liteframe.eval.tasks import SUBTITLES, TASKS

    p = sub.add_parser("eval", help="accuracy and latency on Video-MME, MLVU or LongVideoBench; `eval report`",
                       description="Answer every question of a benchmark into --out (JSON lines, the run's identity "
                                   "first; resumes the same run only; torchrun --nproc_per_node N -m liteframe.cli "
                                   "eval ... shards by video).")
    p.add_argument("--benchmark", choices=TASKS.names())
    p.add_argument("--data", help="the dataset folder in its published layout (or lmms-eval's)")
    p.add_argument("--model", help="a checkpoint folder (InternVL3 -hf or Qwen2.5-VL)")
    p.add_argument("--encoder", default="dense", help=ENCODERS)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--compression", help=f"{COMPRESSION} (default: a student's own, else 16)")
    p.add_argument("--adapter", help="a LoRA adapter folder for the LLM")
    _add_pixels(p)
    p.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    p.add_argument("--out", help="run file (JSON lines), appended to and resumed")
    p.add_argument("--subtitles", choices=SUBTITLES, default="liteframe",
                   help="Video-MME's subtitle lines: liteframe's (those at this run's frames, all of them) or "
                        "lmms-eval's exact text (see docs/results/eval.md)")
    p.add_argument("--keep-reasoning", action="store_true",
                   help="score the whole answer; by default <think>/<analysis> blocks are stripped first, as "
                        "lmms-eval does")
    p.add_argument("--retry-failed", action="store_true", help="ask again the questions recorded as failed")
    p.add_argument("--json", action="store_true")
    report = p.add_subparsers(dest="eval_command").add_parser(
        "report", help="runs side by side (Markdown table) and the accuracy-latency plot")
    report.add_argument("runs", nargs="+", metavar="RUN.jsonl")
    report.add_argument("--plot", metavar="PNG", help="accuracy against total latency, a Pareto frontier per encoder")
    report.add_argument("--json", action="store_true")

    def run(a) -> int:
        from liteframe.tables import print_rows

        if a.eval_command == "report":
            from liteframe.eval.report import plot, render, report_rows

            rows = report_rows(a.runs)
            print(render(rows, a.json))
            if a.plot:
                plot(rows, a.plot)
            return 0
        missing = [f"--{k}" for k in ("benchmark", "data", "model", "out") if getattr(a, k) is None]
        if missing:
            p.error(f"{', '.join(missing)} required (or `eval report RUN.jsonl...`)")
        from liteframe.eval import EvalConfig, Stopped, evaluate

        try:
            rows = evaluate(EvalConfig(a.benchmark, a.data, a.model, a.encoder, a.frames, a.out, a.compression,
                                       a.adapter, a.device, a.subtitles, a.keep_reasoning, a.retry_failed,
                                       a.pixels))
        except Stopped as stop:
            print(f"liteframe eval: {stop}", file=sys.stderr)
            return stop.exit_code
        if rows:
            print_rows(rows, a.json)
        return 0

    p.set_defaults(func=run)


def _add_adapt(sub) -> None:
    p = sub.add_parser("adapt", help="adapt the LLM to an encoder with LoRA (LMA); `adapt merge`",
                       description="`liteframe adapt --config run.yaml [key=value ...]` trains LoRA adapters on the "
                                   "LLM (resumes from the newest checkpoint in `output`; multi-GPU: torchrun "
                                   "--nproc_per_node N -m liteframe.cli adapt ...). `liteframe adapt merge --model M "
                                   "--adapter A --out DIR` writes a merged checkpoint folder.")
    p.add_argument("--config", help="YAML file of adapt settings (see configs/adapt_tiny.yaml)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="override settings, e.g. steps=100 lora.r=8")

    def run(a) -> int:
        import logging
        import os

        from liteframe.train.adapt import AdaptConfig, adapt

        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
        result = adapt(AdaptConfig.load(a.config, a.overrides))
        if result.signal is not None:
            return _stopped(result)
        if os.environ.get("RANK", "0") == "0":
            print(f"step {result.step}: adapter saved to {result.output}")
        return 0

    p.set_defaults(func=run)


def _add_adapt_merge(sub) -> None:
    # `adapt merge` has options of its own beside `adapt`'s KEY=VALUE words: argparse cannot give one command both,
    # so `main` passes `adapt merge ...` to this parser, whose name the top-level help does not list
    p = sub.add_parser("adapt-merge", prog="liteframe adapt merge",
                       description="Fold a `liteframe adapt` LoRA adapter into its base checkpoint: a folder of the "
                                   "base's family that plain transformers loads.")
    p.add_argument("--model", help="the base checkpoint folder the adapter was trained on (required)")
    p.add_argument("--adapter", help="the adapter folder, OUTPUT/adapter (required)")
    p.add_argument("--out", help="the merged checkpoint folder to write (required)")

    def run(a) -> None:
        from liteframe.llm.lora import merge

        missing = [f"--{k}" for k in ("model", "adapter", "out") if getattr(a, k) is None]
        if missing:
            raise InputError(f"adapt merge needs {', '.join(missing)}")
        print(f"merged model written to {merge(a.model, a.adapter, a.out)}")

    p.set_defaults(func=run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="liteframe", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    bench = sub.add_parser("bench", help="benchmarks").add_subparsers(dest="bench", required=True)
    for add in (_add_bench_reducers, _add_bench_arch, _add_bench_decode, _add_bench_e2e, _add_bench_stream,
                _add_bench_train, _add_bench_adapt):
        add(bench)
    for add in (_add_probe, _add_frames, _add_ask, _add_watch, _add_distill, _add_cache_targets, _add_adapt,
                _add_adapt_merge, _add_eval):
        add(sub)
    sub.metavar = "{" + ",".join(name for name in sub.choices if name != "adapt-merge") + "}"
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:2] == ["adapt", "merge"]:
        argv = ["adapt-merge", *argv[2:]]
    args = build_parser().parse_args(argv)
    command = "adapt merge" if args.command == "adapt-merge" else args.command
    # warnings as one line like the errors, not Python's two (source path and line, then the code line)
    formatwarning = warnings.formatwarning
    warnings.formatwarning = lambda message, *_, **__: f"liteframe {command}: warning: {one_line(str(message))}\n"
    try:
        return args.func(args) or 0
    except InputError as err:  # bad input (VideoDecodeError and config errors are InputErrors): one line
        print(f"liteframe {command}: error: {one_line(str(err))}", file=sys.stderr)
        return 2
    finally:
        warnings.formatwarning = formatwarning


if __name__ == "__main__":
    sys.exit(main())
