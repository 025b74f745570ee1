"""Ask a Video LLM checkpoint about a video, with the dense ViT, a reducer, or a LiteFrame student as its eyes.

video -> sampled clips -> the visual encoder (`encode`: once per video; decoded chunks resized and normalised as
the model family's data config says, encoded chunk by chunk) -> visual tokens in the prompt's image slots -> the
family's LLM inputs -> the checkpoint's LLM (`answer`: once per question) -> answer; every stage timed. Questions
about the same encoded video reuse the LLM's cache of the prompt up to the end of the video. `encode` is the one
path from a video to visual tokens: `ask`, `liteframe eval` and LMA's training inputs all go through it.
"""
from __future__ import annotations

import copy
import json
import math
import statistics
import time
import warnings
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import torch
from transformers import AutoTokenizer, DynamicCache, LogitsProcessor, LogitsProcessorList

from liteframe.compression import Compression, get_compression
from liteframe.devices import resolve_device, resolve_dtype
from liteframe.errors import InputError, model_type, one_line
from liteframe.llm.context import VideoContext
from liteframe.llm.data import warn_padding
from liteframe.llm.encoders import EncoderSpec, VisualEncoder, VisualTokens, build_encoder, plural
from liteframe.llm.family import Family, check_tokenizer, get_family
from liteframe.llm.inputs import LLMInputs
from liteframe.llm.loading import load_weights, meta_model, quiet_transformers
from liteframe.llm.processor import chat_template
from liteframe.llm.prompt import Slot, build_input_ids, make_slots
from liteframe.reduce.base import frame_budgets
from liteframe.tables import format_table
from liteframe.timing import LATENCY_KEYS, Stopwatch, synchronize
from liteframe.video import open_video, sample_frames, stream_video
from liteframe.video.decode import VideoDecodeWarning, VideoInfo, VideoReader
from liteframe.video.sampling import FrameSample, sampled_fps
from liteframe.video.stream import Chunk, VideoStream

ENCODE_KEYS = ("decode", "preprocess", "vit")
CHUNK_FRAMES = 32  # frames per encoder call by default (rounded up to whole clips): bounds activation memory


@dataclass
class EncodedVideo:
    """A video encoded once for any number of questions: `visual` (LLM tokens `(1, N, d_llm)` in the order of
    `slots`, with each token's place in the grid), the `timestamps` (s) of the sampled frames and their rate `fps`
    (frames per second of video, `liteframe.video.sampling.sampled_fps`), and `latency_ms` of decode, preprocess
    and vit (plus `total`, the wall time of `encode`). Keeps the LLM's cache of the prompt prefix up to the end of
    the video once a question was answered (on the LLM's device: drop the object to free it)."""

    video: str
    encoder: str
    frames: int
    timestamps: list[float]
    fps: float
    slots: list[Slot]
    visual: VisualTokens
    latency_ms: dict[str, float]
    prefix: tuple[torch.Tensor, DynamicCache] | None = field(default=None, repr=False)

    @property
    def tokens(self) -> torch.Tensor:
        return self.visual.tokens

    @property
    def visual_tokens(self) -> int:
        return self.visual.tokens.shape[1]


@dataclass
class Answer:
    """One answer and what it cost; `latency_ms` is keyed by `LATENCY_KEYS` (with `repeats`, medians).
    `prefill_tokens` were run through the LLM's prefill after the video's cached prefix: fewer than
    `prompt_tokens` when a prefix was reused or prefilled while the video was encoded (`VideoLLM.incremental`)."""

    answer: str
    frames: int
    visual_tokens: int
    prompt_tokens: int
    prefill_tokens: int
    tokens: list[int]  # the generated token ids
    encoder: str
    timestamps: list[float]
    slot_tokens: list[int]
    latency_ms: dict[str, float] = field(default_factory=dict)

    def render(self, as_json: bool = False) -> str:
        """JSON, or the answer followed by one line of counts and the latency table (ms)."""
        if as_json:
            return json.dumps(asdict(self), indent=2)
        counts = (f"{plural(self.frames, 'frame')}, encoder {self.encoder}: "
                  f"{plural(self.visual_tokens, 'visual token')} in {plural(len(self.slot_tokens), 'slot')}, {plural(self.prompt_tokens, 'prompt token')}, "
                  f"{len(self.tokens)} generated")
        note = ("(ms; decode overlaps vit, and llm_prefill holds the video's prefill, run chunk by chunk between "
                "encoder steps: stages do not add up to total)")
        return "\n".join([self.answer, "", counts, format_table([self.latency_ms], LATENCY_KEYS), note])


class VideoLLM:
    """A Video LLM checkpoint whose visual tokens come from `encoder`; see `from_pretrained`. `timestamps` puts each
    slot's time in its label (`Frame3 (12.4s)`); off by default, as the checkpoint's own processor does.
    The front end, set on an instance to compare front ends (`bench e2e --front-ends`): `resize` (`RESIZERS`: "exact" in
    the decoder; "torch": whole RGB frames resized on the device) and `overlap` (decode the next chunk in the background
    while the encoder works); `incremental`: `ask` prefills each chunk's slots into the LLM's cache as the encoder gives
    them (`VideoContext`), instead of the whole video after it. The weights are frozen: LMA turns on the ones it trains.
    `folder` and `pixels`: the checkpoint's folder and the frame size budget the encoder was built with
    (`build_encoder`), which `with_encoder` keeps."""

    resize = "exact"
    overlap = True
    incremental = True

    def __init__(self, model, tokenizer, encoder: VisualEncoder, chunk_frames: int | None = None,
                 timestamps: bool = False, folder: Path | None = None, pixels: str = "processor"):
        whole = math.lcm(encoder.frame_multiple, encoder.frames_per_step)  # a chunk holds whole clips and steps
        self._chunk_request = chunk_frames  # what `with_encoder` passes on: the default is the encoder's own
        chunk_frames = chunk_frames or whole * -(-CHUNK_FRAMES // whole)
        if chunk_frames < 1 or chunk_frames % whole:
            raise InputError(f"chunk_frames {chunk_frames}: must be a positive multiple of the {encoder.name} "
                             f"encoder's {whole}-frame clips")
        self.family: Family = get_family(model.config.model_type)
        check_tokenizer(self.family, tokenizer, model)
        self.model, self.tokenizer, self.encoder, self.chunk_frames = model.eval(), tokenizer, encoder, chunk_frames
        model.requires_grad_(False)
        encoder.requires_grad_(False)
        self.timestamps, self.folder, self.pixels = timestamps, folder, pixels
        self.device, self.dtype = model.device, model.dtype

    @classmethod
    def from_pretrained(cls, directory: str | Path, encoder: str | EncoderSpec = "dense",
                        compression: Compression | int | str | None = None, device: str | torch.device | None = None,
                        dtype: torch.dtype | None = None, chunk_frames: int | None = None, timestamps: bool = False,
                        adapter: str | Path | None = None, pixels: str = "processor") -> VideoLLM:
        """Load a Video LLM folder (weights, tokenizer, chat template; any registered family: InternVL3 `-hf`,
        Qwen2.5-VL) and put `encoder` in front of its LLM: `dense`, a reducer name (`wap`, `tome`, ...) or
        `student:DIR` (InternVL3), at `compression` (4, 16, 64 or a block t,h,w; None: a student's own, else 16).
        Defaults: CUDA and bf16 when available, else CPU and float32. With a student, the checkpoint's vision tower
        is dropped before anything moves to `device`. `adapter`: a `liteframe adapt` LoRA folder, checked against
        this checkpoint before its weights load, merged into the LLM's weights. `pixels`: how frames are sized,
        `processor` (as the checkpoint's own processor config sets it, what `AutoProcessor` gives) or a budget the
        family names (Qwen2.5-VL: `qwen-vl-utils`). `chunk_frames`: frames the encoder takes at a time, whole clips
        (None: the fewest whole clips that hold `CHUNK_FRAMES`)."""
        directory = Path(directory)
        family = _family(directory)
        spec, compression = EncoderSpec.parse(encoder), _compression(compression)
        device = resolve_device(device)
        dtype = dtype or resolve_dtype("auto", device)
        if adapter:
            from liteframe.llm import lora  # peft is imported only when an adapter is asked for

            lora.check_adapter(adapter, directory)  # before the (large) weights load
        with quiet_transformers():
            model = load_weights(family.checkpoint_class, directory, dtype)
            tokenizer = _load_tokenizer(directory)
        if adapter:
            model = lora.apply_adapter(model, adapter)
        visual = build_encoder(family, model, spec, compression, directory, pixels)
        if spec.student is not None:
            family.drop_vision(model)  # the dense tower is never needed
        return cls(model.to(device), tokenizer, visual.to(device=device, dtype=dtype), chunk_frames, timestamps,
                   directory, pixels)

    @classmethod
    def skeleton(cls, directory: str | Path, encoder: str | EncoderSpec = "dense",
                 compression: Compression | int | str | None = None, timestamps: bool = False,
                 pixels: str = "processor") -> VideoLLM:
        """The VideoLLM that `from_pretrained` builds, but with the checkpoint's model made from its config.json on
        the meta device: no weights read, no memory taken. Enough for `check`, so that a frame count or a prompt the
        model cannot take is refused before a large checkpoint loads."""
        directory = Path(directory)
        family = _family(directory)
        spec, compression = EncoderSpec.parse(encoder), _compression(compression)
        with quiet_transformers():
            model = meta_model(family.checkpoint_class, directory)
            tokenizer = _load_tokenizer(directory)
        return cls(model, tokenizer, build_encoder(family, model, spec, compression, directory, pixels),
                   timestamps=timestamps, folder=directory, pixels=pixels)

    def with_encoder(self, encoder: str | EncoderSpec,
                     compression: Compression | int | str | None = None) -> VideoLLM:
        """The same LLM (shared, not copied) behind another encoder; the teacher's vision tower must still be there."""
        visual = build_encoder(self.family, self.model, EncoderSpec.parse(encoder), _compression(compression),
                               self.folder, self.pixels)
        return VideoLLM(self.model, self.tokenizer, visual.to(device=self.device, dtype=self.dtype),
                        self._chunk_request, self.timestamps, self.folder, self.pixels)

    def check(self, frames: int, question: str = "", video: VideoInfo | None = None) -> int | None:
        """Refuse, before anything is decoded, a frame count the encoder cannot take or a prompt longer than the
        LLM's context; return the prompt length (for a set reducer, whose counts per slot are known only after
        encoding, with its tokens spread evenly over the steps). `video`: what probing the video says (its size, and
        the times of the frames `sample` picks, which a family may print in the prompt); where the family's token
        count depends on the video and it is not given, only the frame count is checked (None is returned)."""
        if question is None:
            raise InputError("a question is needed (got None)")
        if video is None and not self.encoder.data.size.fixed:
            self.encoder.check_frames(frames)
            return None
        steps, visual = self.encoder.layout(frames, None if video is None else _size(video))
        context = self.family.context_length(self.model)
        if visual > context:
            raise InputError(f"{plural(frames, 'frame')} give {visual} visual tokens with the {self.encoder.name} "
                             f"encoder, more than the LLM's context of {context}: use fewer frames or a stronger "
                             "compression")
        per_step = self.encoder.frames_per_step
        times = [0.0] * frames
        if video is not None:
            with warnings.catch_warnings():  # repeated frames are announced where they are read, not here
                warnings.simplefilter("ignore", VideoDecodeWarning)
                times = self.sample(video, frames).timestamps.tolist()
        times += times[-1:] * (steps * per_step - len(times))  # the last step padded
        slots = make_slots(times, frame_budgets(steps, visual).tolist(), per_step)
        with quiet_transformers():  # the tokenizer's own warning about a long prompt would come before ours
            ids, _ = build_input_ids(self.tokenizer, self.family, slots, question, self.timestamps)
        if ids.shape[1] > context:
            raise InputError(f"the prompt has {ids.shape[1]} tokens ({visual} visual, from "
                             f"{plural(frames, 'frame')}), more than the LLM's context of {context}")
        return ids.shape[1]

    def sample(self, info: VideoInfo, frames: int, rate: float = 1.0) -> FrameSample:
        """The `frames` frames this model reads of a video: clips of the encoder's `clip_frames` spread over it
        (`sample_clips`), the same for every encoder of the checkpoint at one compression."""
        return sample_clips(info, frames, self.encoder.clip_frames, rate)

    def stream(self, source: str | Path | VideoReader, sample: FrameSample | Sequence[float]) -> VideoStream:
        """The front end every reader of frames for this model goes through: chunks of `chunk_frames` frames, resized
        and normalised by the decoder where the data config allows it (`decode_size`), else uint8 as decoded for the
        encoder's `prepare`."""
        return stream_video(source, sample, self.chunk_frames, self.encoder.data.decode_size, resize=self.resize,
                            device=self.device, dtype=self.dtype, prefetch=2 if self.overlap else 0)

    def encode(self, video: str | Path | VideoReader, frames: int | None = None, *,
               timestamps: Sequence[float] | None = None, prefill: bool = False) -> EncodedVideo:
        """Encode a video (a path, or a reader its owner keeps open) once for any number of questions: `frames`
        frames as `sample` picks them (checked first: frame count and, for the video's size, the context), or the
        frames at `timestamps` (s) as given (LMA draws its own). Decoded, prepared and encoded a chunk at a time so
        that memory holds one chunk of frames however long the video; the next chunk is decoded in the background
        while the encoder works (`overlap`), so `decode` in `latency_ms` is the decoder's own wall time, partly
        hidden behind `vit`: the stages do not add up to `total`. Gradients flow where the caller enables them and
        a weight trains (LMA's projector). `prefill`: prefill each chunk's slots into the LLM's cache as they are
        encoded (`VideoContext`, without gradients), the prefix the questions to come start from."""
        if (frames is None) == (timestamps is None):
            raise InputError("encode takes a frame count or the frames' timestamps, one of them")
        start, watch = time.perf_counter(), Stopwatch(self.device)
        with watch("decode"):
            reader = video if isinstance(video, VideoReader) else open_video(video)
        with nullcontext() if reader is video else reader:
            if timestamps is None:
                self.check(frames, video=reader.info)
                with watch("decode"):
                    timestamps = self.sample(reader.info, frames).timestamps.tolist()
            else:
                self.encoder.check_frames(len(timestamps))
            with torch.inference_mode() if prefill else nullcontext():
                return self._encode(reader, [float(t) for t in timestamps], watch, start, prefill)

    def inputs(self, ids: torch.Tensor, enc: EncodedVideo) -> LLMInputs:
        """Prompt ids `(1, L)` laid out for `enc.slots` -> the LLM's inputs (the family's `llm_inputs`)."""
        return self.family.llm_inputs(self.model, ids.to(self.device), enc.visual, enc.fps)

    @torch.inference_mode()
    def answer(self, enc: EncodedVideo, question: str, max_new_tokens: int = 64,
               slot_text: Sequence[str | None] | None = None, **generate_kwargs) -> Answer:
        """Answer `question` about an encoded video; greedy unless `generate_kwargs` say otherwise. `slot_text[i]`
        is a line put before slot i (e.g. its subtitles).

        The prompt up to the end of the video is prefilled through the language model itself (the family's inputs
        whole: embeddings, positions, DeepStack features), and stored in `enc`; `generate` then runs the rest of the
        prompt and the answer in a copy of that cache. The next question whose prompt starts with the same tokens
        reuses the stored prefix: a copy, never the stored cache itself, since a hybrid LLM's recurrent states
        (Qwen3.5's) change in place and cannot be cropped back. A prefix prefilled while the video was encoded
        (`ask` with `incremental`) ends at the last visual token. `llm_prefill` in the latency runs from the start
        to the first token's logits (prefix and question), plus the video's incremental prefill, `generation` from
        there."""
        start = time.perf_counter()
        ids, video_end = build_input_ids(self.tokenizer, self.family, enc.slots, question, self.timestamps, slot_text)
        context = self.family.context_length(self.model)
        if ids.shape[1] > context:
            raise InputError(f"the prompt has {ids.shape[1]} tokens ({enc.visual_tokens} visual), more than the "
                             f"LLM's context of {context}")
        ids = ids.to(self.device)
        inputs = self.inputs(ids, enc)
        cached = enc.prefix is not None and torch.equal(ids[0, :len(enc.prefix[0])], enc.prefix[0])
        if not cached:
            enc.prefix = None  # the old prefix's memory goes before the new one is made
            enc.prefix = (ids[0, :video_end], self._prefill(inputs.prefix(video_end)))
        new, first, end = self.generate(ids, inputs, enc.prefix[1], max_new_tokens, **generate_kwargs)
        latency = {key: enc.latency_ms[key] for key in ENCODE_KEYS}
        latency.update(llm_prefill=enc.latency_ms.get("llm_prefill", 0.0) + (first - start) * 1e3,
                       generation=(end - first) * 1e3, total=enc.latency_ms["total"] + (end - start) * 1e3)
        text = self.tokenizer.decode(new, skip_special_tokens=True).strip()
        return Answer(text, enc.frames, enc.visual_tokens, ids.shape[1], ids.shape[1] - len(enc.prefix[0]) * cached,
                      new, enc.encoder, enc.timestamps, [slot.tokens for slot in enc.slots], latency)

    def generate(self, ids: torch.Tensor, inputs: LLMInputs, cache: DynamicCache, max_new_tokens: int,
                 **generate_kwargs) -> tuple[list[int], float, float]:
        """Prompt ids `(1, L)` whose first tokens `cache` holds (left as it is: a copy runs) and their LLM inputs ->
        the new token ids, and the times (`perf_counter`) of the first token's logits and of the end; greedy unless
        `generate_kwargs` say otherwise."""
        first = _FirstLogits(self.device)
        kwargs = {"max_new_tokens": max_new_tokens, "do_sample": False, **generate_kwargs}
        kwargs["logits_processor"] = LogitsProcessorList([*kwargs.get("logits_processor", []), first])
        if inputs.position_ids is not None:
            kwargs["position_ids"] = inputs.position_ids
        out = self.model.generate(input_ids=ids, attention_mask=inputs.attention_mask, cache=copy.deepcopy(cache),
                                  pad_token_id=self.tokenizer.pad_token_id, **kwargs)
        synchronize(self.device)
        return out[0, ids.shape[1]:].tolist(), first.at, time.perf_counter()

    def _prefill(self, inputs: LLMInputs) -> DynamicCache:
        """The language model's cache after `inputs` (a prompt's video prefix)."""
        cache = DynamicCache(config=self.model.config.get_text_config(decoder=True))
        self.model.get_decoder()(**inputs.forward_kwargs(), cache=cache, use_cache=True)
        return cache

    def ask(self, video: str | Path | VideoReader, question: str, frames: int = 16, repeats: int = 1,
            warmup: int = 0, max_new_tokens: int = 64, **generate_kwargs) -> Answer:
        """`answer(encode(video, frames), question)`, checked once before any decoding, the video opened once;
        latency is the median of `repeats` runs after `warmup` runs, each decoding and encoding afresh."""
        _check_run(repeats, warmup, max_new_tokens)
        start = time.perf_counter()
        with nullcontext(video) if isinstance(video, VideoReader) else open_video(video) as reader:
            opened = time.perf_counter() - start
            self.check(frames, question, reader.info)
            return self._ask(reader, self.sample(reader.info, frames).timestamps.tolist(), question, repeats, warmup,
                             max_new_tokens, opened, **generate_kwargs)

    def _ask(self, reader: VideoReader, timestamps: list[float], question: str, repeats: int, warmup: int,
             max_new_tokens: int, opened: float, **generate_kwargs) -> Answer:
        """The runs of `ask` on an open reader, each timed as if it had opened the video itself (`opened` s)."""
        runs = []
        for _ in range(warmup + repeats):
            watch = Stopwatch(self.device)
            watch.ms["decode"] = opened * 1e3
            with torch.inference_mode():
                enc = self._encode(reader, timestamps, watch, time.perf_counter() - opened, self.incremental)
            runs.append(self.answer(enc, question, max_new_tokens, **generate_kwargs))
        answer = runs[-1]
        timed = [run.latency_ms for run in runs[warmup:]]
        answer.latency_ms = {k: statistics.median(t[k] for t in timed) for k in LATENCY_KEYS}
        return answer

    def _encode(self, reader: VideoReader, timestamps: list[float], watch: Stopwatch, start: float,
                incremental: bool = False) -> EncodedVideo:
        """The frames at `timestamps` of an open reader -> `EncodedVideo`, timed on `watch` since `start`; with
        `incremental` (and an encoder whose steps are slots: no set reducer), each chunk's slots are prefilled into
        the LLM's cache as they are encoded (`VideoContext`), which becomes the video's prefix."""
        padding = self.encoder.data.padding(len(timestamps))
        warn_padding(f"the {self.encoder.name} encoder", len(timestamps), padding, self.encoder.data.frames_per_step)
        fps = sampled_fps(reader.info, len(timestamps))
        context = VideoContext(self, fps) if incremental and self.encoder.set_stage is None else None
        stream = self.stream(reader, timestamps)
        visual = self._visual(stream, watch, timestamps, context)
        watch.ms["decode"] = watch.ms.get("decode", 0.0) + stream.decode_s * 1e3
        watch.ms["preprocess"] = watch.ms.get("preprocess", 0.0) + stream.preprocess_s * 1e3
        latency = {key: watch.ms.get(key, 0.0) for key in ENCODE_KEYS}
        latency["total"] = (time.perf_counter() - start) * 1e3
        padded = _padded(timestamps, self.encoder.frames_per_step)
        enc = EncodedVideo(reader.info.path, self.encoder.name, len(timestamps), timestamps, fps,
                           make_slots(padded, visual.counts, visual.frames_per_step), visual, latency)
        if context is not None:
            enc.prefix, latency["llm_prefill"] = (context.ids[0], context.cache), context.prefill_ms
        return enc

    def _visual(self, chunks: Iterable[Chunk], watch: Stopwatch, timestamps: Sequence[float],
                context: VideoContext | None = None) -> VisualTokens:
        """The encoding loop: decoded chunks of a video's sampled frames at `timestamps` -> the encoder's
        `prepare`, `encode_chunk`, then `finish` (per chunk into `context`, which prefills them, if given). Weights
        that do not train keep no graph."""
        parts, per = [], self.encoder.frames_per_step
        padded = _padded(list(timestamps), per)
        with torch.set_grad_enabled(torch.is_grad_enabled() and any(p.requires_grad for p in
                                                                    self.encoder.parameters())):
            for chunk in chunks:
                with watch("preprocess"):
                    pixels = self.encoder.prepare(chunk.pixels, self.device, self.dtype, len(timestamps))
                with watch("vit"):
                    parts.append(self.encoder.encode_chunk(pixels))
                    if context is not None:
                        part = self.encoder.finish(parts[-1:])
                if context is not None:
                    context.add(part, padded[chunk.start:chunk.start + len(part.counts) * per])
            if context is not None:
                return context.visual
            with watch("vit"):
                return self.encoder.finish(parts)


def _padded(timestamps: list[float], frames_per_step: int) -> list[float]:
    """Frame times with the last repeated to whole steps (the encoder pads the last step with its last frame)."""
    return timestamps + timestamps[-1:] * (-len(timestamps) % frames_per_step)


def sample_clips(info: VideoInfo, frames: int, clip_frames: int, rate: float = 1.0) -> FrameSample:
    """`frames` frames as clips of `clip_frames` frames spread over the video (SPEC 7) at no less than `rate` fps
    inside a clip, what every encoder reads; clips of one frame are uniform sampling. A count that is not whole
    clips is sampled uniformly (only encoders that take single frames accept it). The one rule: `ask`, `eval` and
    LMA's data (which draws its own `rate`) all sample through it."""
    if clip_frames == 1 or frames % clip_frames:
        return sample_frames(info, frames, "uniform")
    return sample_frames(info, frames, "clips", rate=rate, clip_frames=clip_frames)


def ask(video: str | Path, question: str, model: str | Path, encoder: str | EncoderSpec = "dense", frames: int = 16,
        compression: Compression | int | str | None = None, device: str | None = None, dtype: str = "auto",
        repeats: int = 1, warmup: int = 0, max_new_tokens: int = 64, timestamps: bool = False,
        adapter: str | Path | None = None, pixels: str = "processor", **generate_kwargs) -> Answer:
    """One question about one video with a checkpoint folder: `liteframe ask` as a function. The video is opened
    once, and a bad video, frame count or question fails before the checkpoint's weights load."""
    if question is None:
        raise InputError("a question is needed (got None)")
    _check_run(repeats, warmup, max_new_tokens)
    device = resolve_device(device)
    dtype = resolve_dtype(dtype, device)
    start = time.perf_counter()
    with open_video(video) as reader:
        opened = time.perf_counter() - start
        VideoLLM.skeleton(model, encoder, compression, timestamps, pixels).check(frames, question, reader.info)
        llm = VideoLLM.from_pretrained(model, encoder, compression, device=device, dtype=dtype,
                                       timestamps=timestamps, adapter=adapter, pixels=pixels)
        return llm._ask(reader, llm.sample(reader.info, frames).timestamps.tolist(), question, repeats, warmup,
                        max_new_tokens, opened, **generate_kwargs)


class _FirstLogits(LogitsProcessor):
    """Records when the prefill's logits reach the first sampling step."""

    def __init__(self, device: torch.device):
        self.device, self.at = device, None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.at is None:
            synchronize(self.device)
            self.at = time.perf_counter()
        return scores


def _family(directory: Path):
    """The family of a checkpoint folder, which must hold the checkpoint's tokenizer."""
    family = get_family(model_type(directory), directory)
    if not (directory / "tokenizer_config.json").is_file():
        raise InputError(f"model folder {directory}: no tokenizer_config.json (the checkpoint's tokenizer)")
    return family


def _compression(value: Compression | int | str | tuple | None) -> Compression | None:
    """A compression given at a public entry point; None: not given (a student's own, else 16x)."""
    return None if value is None else get_compression(value)


def _size(info: VideoInfo) -> tuple[int, int]:
    return info.height, info.width


def _check_run(repeats: int, warmup: int, max_new_tokens: int) -> None:
    if repeats < 1 or warmup < 0:
        raise InputError(f"repeats {repeats}, warmup {warmup}: need at least 1 repeat and no negative warm-up")
    if max_new_tokens < 1:
        raise InputError(f"max_new_tokens {max_new_tokens}: an answer needs at least 1 new token")


def _load_tokenizer(directory: Path):
    """The checkpoint's tokenizer, with the chat template its processor applies (`liteframe.llm.processor`)."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(directory)
    except Exception as err:  # noqa: BLE001  tokenizers' Rust parser raises bare Exceptions for bad files
        raise InputError(f"model folder {directory}: cannot load the tokenizer from tokenizer.json and "
                         f"tokenizer_config.json ({one_line(err)})") from None
    tokenizer.chat_template = chat_template(directory, tokenizer)
    return tokenizer

