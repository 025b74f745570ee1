"""Ask a Video LLM checkpoint about a video, with the dense ViT, a reducer, or a LiteFrame student as its eyes.

video -> sampled clips -> preprocessing -> visual encoder (`encode`: once per video) -> visual tokens in the prompt's
image slots -> the checkpoint's LLM (`answer`: once per question) -> answer; every stage timed. Questions about the
same encoded video reuse the LLM's cache of the prompt up to the end of the video.
"""
from __future__ import annotations

import json
import math
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from transformers import AutoTokenizer, DynamicCache, LogitsProcessor, LogitsProcessorList

from liteframe.compression import Compression
from liteframe.devices import resolve_device, resolve_dtype
from liteframe.errors import InputError, model_type, one_line
from liteframe.llm.encoders import VisualEncoder, VisualTokens, plural
from liteframe.llm.family import get_family
from liteframe.llm.loading import load_weights, quiet_transformers
from liteframe.llm.prompt import Slot, build_input_ids, make_slots
from liteframe.tables import format_table
from liteframe.timing import Stopwatch, synchronize
from liteframe.video import open_video, sample_frames, stream_video
from liteframe.video.decode import VideoReader
from liteframe.video.sampling import FrameSample
from liteframe.video.stream import VideoStream

LATENCY_KEYS = ("decode", "preprocess", "vit", "llm_prefill", "generation", "total")
ENCODE_KEYS = ("decode", "preprocess", "vit")


@dataclass
class EncodedVideo:
    """A video encoded once for any number of questions: `visual` (LLM tokens `(1, N, d_llm)` in the order of
    `slots`, with each token's place in the grid), the `timestamps` (s) of the sampled frames, and `latency_ms` of
    decode, preprocess and vit (plus `total`, the wall time of `encode`). Keeps the LLM's cache of the prompt prefix
    once a question was answered (on the LLM's device: drop the object to free it)."""

    video: str
    encoder: str
    frames: int
    timestamps: list[float]
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
    `prefill_tokens` were run through the LLM's prefill: fewer than `prompt_tokens` when a cached prefix was
    reused."""

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
        counts = (f"{plural(self.frames, 'frame')}, encoder {self.encoder}: {plural(self.visual_tokens, 'visual token')}"
                  f" in {plural(len(self.slot_tokens), 'slot')}, {plural(self.prompt_tokens, 'prompt token')}, "
                  f"{len(self.tokens)} generated")
        note = "(ms; decode overlaps vit: stages do not add up to total)"
        return "\n".join([self.answer, "", counts, format_table([self.latency_ms], LATENCY_KEYS), note])


class VideoLLM:
    """A Video LLM checkpoint whose visual tokens come from `encoder`; see `from_pretrained`. `timestamps` puts each
    slot's time in its label (`Frame3 (12.4s)`); off by default, as the checkpoint's own processor does.
    The front end, set on an instance to compare front ends (`bench e2e --front-ends`):
    `resize` (`RESIZERS`: "exact" in the decoder; "torch": whole RGB frames resized on the device) and `overlap`
    (decode the next chunk in the background while the encoder works)."""

    resize = "exact"
    overlap = True

    def __init__(self, model, tokenizer, encoder: VisualEncoder, chunk_frames: int = 32, timestamps: bool = False):
        whole = math.lcm(encoder.frame_multiple, encoder.step_frames)  # a chunk holds whole clips and grid steps
        if chunk_frames < 1 or chunk_frames % whole:
            raise InputError(f"chunk_frames {chunk_frames}: must be a positive multiple of the {encoder.name} "
                             f"encoder's {whole}-frame clips")
        self.family = get_family(model.config.model_type)
        self.family.check_tokenizer(tokenizer, model)
        self.model, self.tokenizer, self.encoder, self.chunk_frames = model.eval(), tokenizer, encoder, chunk_frames
        self.timestamps = timestamps
        self.device, self.dtype = model.device, model.dtype

    @classmethod
    def from_pretrained(cls, directory: str | Path, encoder: str = "dense",
                        compression: Compression | int | str | None = None, device: str | torch.device | None = None,
                        dtype: torch.dtype | None = None, chunk_frames: int = 32, timestamps: bool = False,
                        adapter: str | Path | None = None) -> VideoLLM:
        """Load a Video LLM folder (weights, tokenizer, chat template; InternVL3 `-hf` or Qwen2.5-VL) and put
        `encoder` in front of its LLM: `dense`, a reducer name (`wap`, `tome`, ...) or `student:DIR` (InternVL3),
        at `compression` (4, 16 or 64; None: a student's own, else 16). Defaults: CUDA and bf16 when available,
        else CPU and float32. With a student, the checkpoint's vision tower is dropped before anything moves to
        `device`. `adapter`: a `liteframe adapt` LoRA folder (InternVL3), merged into the LLM's weights."""
        directory = Path(directory)
        family = _family(directory)
        device = resolve_device(device)
        dtype = dtype or resolve_dtype("auto", device)
        if adapter:
            from liteframe.llm import lora  # peft is imported only when an adapter is asked for

            lora.check_adapter(adapter)  # before the (large) weights load
        with quiet_transformers():
            model = load_weights(family.checkpoint_class, directory, dtype)
            tokenizer = _load_tokenizer(directory)
        if adapter:
            model = lora.apply_adapter(model, adapter)
        visual = family.encoder(model, encoder, compression)
        if encoder.startswith("student:"):
            family.drop_vision(model)  # the dense tower is never needed
        return cls(model.to(device), tokenizer, visual.to(device=device, dtype=dtype), chunk_frames, timestamps)

    @classmethod
    def skeleton(cls, directory: str | Path, encoder: str = "dense",
                 compression: Compression | int | str | None = None, timestamps: bool = False) -> VideoLLM:
        """The VideoLLM that `from_pretrained` builds, but with the checkpoint's model made from its config.json on
        the meta device: no weights read, no memory taken. Enough for `check`, so that a frame count or a prompt the
        model cannot take is refused before a large checkpoint loads."""
        directory = Path(directory)
        family = _family(directory)
        with quiet_transformers():
            try:
                config = family.checkpoint_class.config_class.from_pretrained(directory)
            except (OSError, ValueError) as err:
                raise InputError(f"model folder {directory}: cannot read config.json ({one_line(err)})") from None
            with torch.device("meta"):
                model = family.checkpoint_class._from_config(config)
            tokenizer = _load_tokenizer(directory)
        return cls(model, tokenizer, family.encoder(model, encoder, compression), timestamps=timestamps)

    def with_encoder(self, encoder: str, compression: Compression | int | str | None = None) -> VideoLLM:
        """The same LLM (shared, not copied) behind another encoder; the teacher's vision tower must still be there."""
        visual = self.family.encoder(self.model, encoder, compression)
        return VideoLLM(self.model, self.tokenizer, visual.to(device=self.device, dtype=self.dtype),
                        self.chunk_frames, self.timestamps)

    def check(self, frames: int, question: str = "", size: tuple[int, int] | None = None) -> int:
        """Refuse, before anything is decoded, a frame count the encoder cannot take or a prompt longer than the
        LLM's context; return the prompt length (for a set reducer, whose counts per slot are known only after
        encoding, with its tokens spread evenly over the frames). `size`: the video's `(H, W)`, for families whose
        token count depends on it (None: the encoder's largest)."""
        if question is None:
            raise InputError("a question is needed (got None)")
        steps, visual = self.encoder.layout(frames, size)
        context = self.family.context_length(self.model)
        if visual > context:
            raise InputError(f"{plural(frames, 'frame')} give {visual} visual tokens with the {self.encoder.name} "
                             f"encoder, more than the LLM's context of {context}: use fewer frames or a stronger "
                             "compression")
        step = self.encoder.step_frames
        counts = [visual // steps + (i < visual % steps) for i in range(steps)]
        slots = make_slots([0.0] * steps * step, counts, step)
        with quiet_transformers():  # the tokenizer's own warning about a long prompt would come before ours
            ids, _ = build_input_ids(self.tokenizer, self.family, slots, question, self.timestamps)
        if ids.shape[1] > context:
            raise InputError(f"the prompt has {ids.shape[1]} tokens ({visual} visual, from "
                             f"{plural(frames, 'frame')}), more than the LLM's context of {context}")
        return ids.shape[1]

    def stream(self, source: str | Path | VideoReader, sample: FrameSample | Sequence[float]) -> VideoStream:
        """The front end every reader of frames for this model goes through (`encode`, `liteframe adapt`), so
        training and inference see the same pixels: chunks of `chunk_frames` (n, 3, S, S) frames resized by
        `resize` (S: the encoder's image size; None: uint8 (n, 3, H, W) for the family to resize)."""
        return stream_video(source, sample, self.chunk_frames, self.encoder.image_size, resize=self.resize,
                            device=self.device, dtype=self.dtype, prefetch=2 if self.overlap else 0)

    @torch.inference_mode()
    def encode(self, video: str | Path, frames: int = 16) -> EncodedVideo:
        """Sample `frames` frames (clips of the compression's length), decode, preprocess and encode them, a chunk at
        a time so that memory holds one chunk of frames however long the video. The next chunk is decoded in the
        background while the encoder works (`overlap`), so `decode` in `latency_ms` is the decoder's own wall time,
        partly hidden behind `vit`: the stages do not add up to `total`."""
        watch = Stopwatch(self.device)
        start = time.perf_counter()
        with watch("decode"):
            reader = open_video(video)
        with reader:
            self.check(frames, size=(reader.info.height, reader.info.width))
            with watch("decode"):
                sample = sample_clips(reader.info, frames, self.encoder.compression, self.family.frames_per_step)
            size = self.encoder.image_size  # square frames resized as they are decoded; None: full frames
            stream = self.stream(reader, sample)
            parts = []
            for chunk in stream:
                if size is None:  # the family resizes decoded frames itself (Qwen's smart_resize)
                    with watch("preprocess"):
                        pixels = self.encoder.preprocess(chunk.pixels, self.device).to(self.dtype)
                else:
                    pixels = chunk.pixels[None]
                with watch("vit"):
                    parts.append(self.encoder.encode_chunk(pixels))
        with watch("vit"):
            visual = self.encoder.finish(parts)
        watch.ms["decode"] += stream.decode_s * 1e3
        watch.ms["preprocess"] = watch.ms.get("preprocess", 0.0) + stream.preprocess_s * 1e3
        timestamps = sample.timestamps.tolist()
        latency = {key: watch.ms.get(key, 0.0) for key in ENCODE_KEYS}
        latency["total"] = (time.perf_counter() - start) * 1e3
        padded = timestamps + timestamps[-1:] * (len(visual.counts) * visual.step_frames - frames)  # Qwen's pairs
        return EncodedVideo(str(video), self.encoder.name, frames, timestamps,
                            make_slots(padded, visual.counts, visual.step_frames), visual, latency)

    @torch.inference_mode()
    def answer(self, enc: EncodedVideo, question: str, max_new_tokens: int = 64,
               slot_text: Sequence[str | None] | None = None, **generate_kwargs) -> Answer:
        """Answer `question` about an encoded video; greedy unless `generate_kwargs` say otherwise. `slot_text[i]`
        is a line put before slot i (e.g. its subtitles). The prompt's prefix up to the end of the video is cached
        in `enc` and reused by the next question whose prompt starts with the same tokens."""
        start = time.perf_counter()
        ids, video_end = build_input_ids(self.tokenizer, self.family, enc.slots, question, self.timestamps, slot_text)
        context = self.family.context_length(self.model)
        if ids.shape[1] > context:
            raise InputError(f"the prompt has {ids.shape[1]} tokens ({enc.visual_tokens} visual), more than the "
                             f"LLM's context of {context}")
        ids = ids.to(self.device)
        prefix = ids[0, :video_end]
        if enc.prefix is not None and torch.equal(enc.prefix[0], prefix):
            cache = enc.prefix[1]
        else:
            cache = DynamicCache(config=self.model.config.get_text_config(decoder=True))
        cached = cache.get_seq_length()
        inputs = self.family.llm_inputs(self.model, ids, enc.visual, enc.timestamps)
        first = _FirstLogits(self.device)
        kwargs = {"max_new_tokens": max_new_tokens, "do_sample": False, **generate_kwargs}
        kwargs["logits_processor"] = LogitsProcessorList([*kwargs.get("logits_processor", []), first])
        try:
            out = self.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), cache=cache,
                                      pad_token_id=self.tokenizer.pad_token_id, **inputs, **kwargs)
        finally:
            if cache.get_seq_length() > video_end:
                cache.crop(video_end - cache.get_seq_length())  # back to the video prefix
            enc.prefix = (prefix, cache) if cache.get_seq_length() == video_end else None
        synchronize(self.device)
        end = time.perf_counter()
        new = out[0, ids.shape[1]:].tolist()
        latency = {key: enc.latency_ms[key] for key in ENCODE_KEYS}
        latency.update(llm_prefill=(first.at - start) * 1e3, generation=(end - first.at) * 1e3,
                       total=enc.latency_ms["total"] + (end - start) * 1e3)
        text = self.tokenizer.decode(new, skip_special_tokens=True).strip()
        return Answer(text, enc.frames, enc.visual_tokens, ids.shape[1], ids.shape[1] - cached, new, enc.encoder,
                      enc.timestamps, [slot.tokens for slot in enc.slots], latency)

    def ask(self, video: str | Path, question: str, frames: int = 16, repeats: int = 1, warmup: int = 0,
            max_new_tokens: int = 64, **generate_kwargs) -> Answer:
        """`answer(encode(video, frames), question)`, checked before any decoding; latency is the median of
        `repeats` runs after `warmup` runs, each decoding and encoding afresh."""
        if repeats < 1 or warmup < 0:
            raise InputError(f"repeats {repeats}, warmup {warmup}: need at least 1 repeat and no negative warm-up")
        with open_video(video) as reader:  # the frame size sets Qwen's token count
            size = reader.info.height, reader.info.width
        self.check(frames, question, size)
        runs = [self.answer(self.encode(video, frames), question, max_new_tokens, **generate_kwargs)
                for _ in range(warmup + repeats)]
        answer = runs[-1]
        timed = [run.latency_ms for run in runs[warmup:]]
        answer.latency_ms = {k: statistics.median(t[k] for t in timed) for k in LATENCY_KEYS}
        return answer


def sample_clips(info, frames: int, compression: Compression, frames_per_step: int = 1):
    """`frames` frames as clips of the compression's clip (`clip_frames(frames_per_step)` frames) spread over the
    video (SPEC 7), the same for every encoder; clips of one frame are uniform sampling. A count that is not whole
    clips is sampled uniformly (only encoders that take single frames accept it)."""
    clip = compression.clip_frames(frames_per_step)
    if clip == 1 or frames % clip:
        return sample_frames(info, frames, "uniform")
    return sample_frames(info, frames, "clips", clip_frames=clip)


def ask(video: str | Path, question: str, model: str | Path, encoder: str = "dense", frames: int = 16,
        compression: Compression | int | str | None = None, device: str | None = None, dtype: str = "auto",
        repeats: int = 1, warmup: int = 0, max_new_tokens: int = 64, timestamps: bool = False,
        adapter: str | Path | None = None, **generate_kwargs) -> Answer:
    """One question about one video with a checkpoint folder: `liteframe ask` as a function."""
    if question is None:
        raise InputError("a question is needed (got None)")
    device = resolve_device(device)
    dtype = resolve_dtype(dtype, device)
    with open_video(video) as reader:  # a bad video, frame count or question fails before a large checkpoint loads
        size = (reader.info.height, reader.info.width)
    VideoLLM.skeleton(model, encoder, compression, timestamps).check(frames, question, size)
    llm = VideoLLM.from_pretrained(model, encoder, compression, device=device, dtype=dtype, timestamps=timestamps,
                                   adapter=adapter)
    return llm.ask(video, question, frames, repeats=repeats, warmup=warmup, max_new_tokens=max_new_tokens,
                   **generate_kwargs)


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


def _load_tokenizer(directory: Path):
    try:
        return AutoTokenizer.from_pretrained(directory)
    except Exception as err:  # noqa: BLE001  tokenizers' Rust parser raises bare Exceptions for bad files
        raise InputError(f"model folder {directory}: cannot load the tokenizer from tokenizer.json and "
                         f"tokenizer_config.json ({one_line(err)})") from None

