"""Ask an InternVL3 checkpoint about a video, with the dense ViT, a reducer, or a LiteFrame student as its eyes.

video -> sampled frames -> preprocessing -> visual encoder (ViT [+ reducer] + pixel shuffle + projector)
-> visual tokens scattered into the prompt's image slots -> the checkpoint's LLM -> answer; every stage timed.
"""
from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from transformers import AutoTokenizer, InternVLForConditionalGeneration, LogitsProcessor, LogitsProcessorList
from transformers.utils import logging as hf_logging

from liteframe.tables import format_table
from liteframe.timing import Stopwatch, synchronize
from liteframe.devices import resolve_device, resolve_dtype
from liteframe.errors import InputError
from liteframe.llm.encoders import VisualEncoder, build_encoder
from liteframe.llm.prompt import build_input_ids, slot_labels
from liteframe.models import Teacher
from liteframe.video import open_video, preprocess, sample_frames

LATENCY_KEYS = ("decode", "preprocess", "vit", "llm_prefill", "generation", "total")


@dataclass
class Answer:
    """One answer and what it cost; `latency_ms` holds the medians over the timed runs, keyed by `LATENCY_KEYS`."""

    answer: str
    frames: int
    visual_tokens: int
    prompt_tokens: int
    tokens: list[int]  # the generated token ids
    encoder: str
    timestamps: list[float]
    latency_ms: dict[str, float] = field(default_factory=dict)

    def render(self, as_json: bool = False) -> str:
        """JSON, or the answer followed by one line of counts and the latency table (ms)."""
        if as_json:
            return json.dumps(asdict(self), indent=2)
        counts = (f"{self.frames} frames, encoder {self.encoder}: {self.visual_tokens} visual tokens, "
                  f"{self.prompt_tokens} prompt tokens, {len(self.tokens)} generated")
        return "\n".join([self.answer, "", counts, format_table([self.latency_ms], LATENCY_KEYS)])


class VideoLLM:
    """An InternVL3 `-hf` model whose visual tokens come from `encoder`; see `from_pretrained`."""

    def __init__(self, model: InternVLForConditionalGeneration, tokenizer, encoder: VisualEncoder,
                 chunk_frames: int = 32):
        if chunk_frames < 1:
            raise InputError(f"chunk_frames {chunk_frames}: must be positive")
        self.model, self.tokenizer, self.encoder, self.chunk_frames = model.eval(), tokenizer, encoder, chunk_frames
        self.device, self.dtype = model.device, model.dtype
        context_id = tokenizer.convert_tokens_to_ids(getattr(tokenizer, "context_image_token", None) or "")
        if context_id != model.config.image_token_id:
            raise InputError(
                f"tokenizer's image-context token id {context_id} is not the model's image_token_id "
                f"{model.config.image_token_id}: tokenizer and weights come from different checkpoints"
            )

    @classmethod
    def from_pretrained(cls, directory: str | Path, encoder: str = "dense", device: str | torch.device | None = None,
                        dtype: torch.dtype | None = None, chunk_frames: int = 32) -> VideoLLM:
        """Load an InternVL3 `-hf` folder (weights, tokenizer, chat template) and put `encoder` in front of its LLM:
        `dense`, a reducer name (`wap`, `tome`, ...) or `student:DIR`. Defaults: CUDA and bf16 when available,
        else CPU and float32. With a student, the checkpoint's vision tower is dropped before anything moves to
        `device`."""
        directory = Path(directory)
        _check_checkpoint(directory)
        device = resolve_device(device)
        dtype = dtype or resolve_dtype("auto", device)
        model = _load_weights(directory, dtype)
        tokenizer = _load_tokenizer(directory)
        visual = build_encoder(encoder, Teacher(model.model.vision_tower, model.model.multi_modal_projector))
        if not isinstance(visual.backbone, Teacher):  # a student: the dense tower is never needed
            model.model.vision_tower = None
        return cls(model.to(device), tokenizer, visual.to(device=device, dtype=dtype), chunk_frames)

    def with_encoder(self, encoder: str) -> VideoLLM:
        """The same LLM (shared, not copied) behind another encoder; the teacher's vision tower must still be there."""
        inner = self.model.model
        if inner.vision_tower is None:
            raise InputError("this VideoLLM dropped its vision tower for a student: load it again with from_pretrained")
        visual = build_encoder(encoder, Teacher(inner.vision_tower, inner.multi_modal_projector))
        return VideoLLM(self.model, self.tokenizer, visual.to(device=self.device, dtype=self.dtype), self.chunk_frames)

    @torch.inference_mode()
    def ask(self, video: str | Path, question: str, frames: int = 16, repeats: int = 1, warmup: int = 0,
            **generate_kwargs) -> Answer:
        """Answer `question` about `video` from `frames` sampled frames; greedy unless `generate_kwargs` say
        otherwise. Latency is the median of `repeats` runs after `warmup` runs."""
        if repeats < 1 or warmup < 0:
            raise InputError(f"repeats {repeats}, warmup {warmup}: need at least 1 repeat and no negative warm-up")
        self.encoder.check_frames(frames)
        if self.chunk_frames % self.encoder.frame_multiple:
            raise InputError(f"chunk_frames {self.chunk_frames} is not a multiple of the encoder's "
                             f"{self.encoder.frame_multiple}-frame clips")
        runs = [self._run(video, question, frames, generate_kwargs) for _ in range(warmup + repeats)]
        answer = runs[-1]
        timed = [run.latency_ms for run in runs[warmup:]]
        answer.latency_ms = {k: statistics.median(t[k] for t in timed) for k in LATENCY_KEYS}
        return answer

    def _run(self, video, question: str, frames: int, generate_kwargs: dict) -> Answer:
        watch = Stopwatch(self.device)
        start = time.perf_counter()
        with watch("decode"):
            reader = open_video(video)
        with reader:
            with watch("decode"):
                strategy = "clips" if self.encoder.frame_multiple > 1 else "uniform"  # whole clips for clip encoders
                sample = sample_frames(reader.info, frames, strategy=strategy)
            visual = self._encode(reader, sample.timestamps, watch)
        labels = slot_labels(sample.timestamps.tolist(), self.encoder.frames_per_slot(frames))
        ids, new_ids, prefill_ms, generation_ms = self._generate(visual, labels, question, generate_kwargs)
        latency = dict(watch.ms, llm_prefill=prefill_ms, generation=generation_ms)
        latency["total"] = (time.perf_counter() - start) * 1e3
        text = self.tokenizer.decode(new_ids, skip_special_tokens=True)
        return Answer(text.strip(), frames, visual.shape[1], ids.shape[1], new_ids, self.encoder.name,
                      sample.timestamps.tolist(), latency)

    def _encode(self, reader, timestamps, watch: Stopwatch) -> torch.Tensor:
        """Frames at `timestamps` -> visual tokens `(1, N, d_llm)`: decoded, preprocessed and encoded a chunk at a
        time, so memory holds one chunk of frames however long the video."""
        parts = []
        for start in range(0, len(timestamps), self.chunk_frames):
            with watch("decode"):
                raw = reader.read(timestamps[start:start + self.chunk_frames]).data
            with watch("preprocess"):
                pixels = preprocess(raw, self.encoder.image_size, device=self.device).to(self.dtype)[None]
            with watch("vit"):
                parts.append(self.encoder.encode_chunk(pixels))
        with watch("vit"):
            return self.encoder.finish(parts)

    def _generate(self, visual: torch.Tensor, labels: list[str], question: str, generate_kwargs: dict):
        """Prompt + visual tokens -> (prompt ids, new token ids, prefill ms, generation ms). Prefill ends when the
        first token's logits exist (a logits processor marks it), so it is counted once."""
        synchronize(self.device)
        start = time.perf_counter()
        if visual.shape[1] % len(labels):
            raise ValueError(f"{visual.shape[1]} visual tokens do not split evenly into {len(labels)} image slots")
        ids = build_input_ids(self.tokenizer, labels, visual.shape[1] // len(labels), question).to(self.device)
        context = self.model.config.text_config.max_position_embeddings
        if ids.shape[1] > context:
            raise InputError(f"{ids.shape[1]} prompt tokens ({visual.shape[1]} visual) exceed the LLM's context of "
                             f"{context}: use fewer frames or a compressing encoder")
        embeds = self.model.get_input_embeddings()(ids)
        is_image = (ids == self.model.config.image_token_id)[..., None]
        embeds = embeds.masked_scatter(is_image, visual.to(embeds.dtype))
        first = _FirstLogits(self.device)
        kwargs = {"max_new_tokens": 64, "do_sample": False, **generate_kwargs}
        kwargs["logits_processor"] = LogitsProcessorList([*kwargs.get("logits_processor", []), first])
        out = self.model.generate(input_ids=ids, inputs_embeds=embeds, attention_mask=torch.ones_like(ids),
                                  pad_token_id=self.tokenizer.pad_token_id, **kwargs)
        synchronize(self.device)
        end = time.perf_counter()
        return ids, out[0, ids.shape[1]:].tolist(), (first.at - start) * 1e3, (end - first.at) * 1e3


def ask(video: str | Path, question: str, model: str | Path, encoder: str = "dense", frames: int = 16,
        device: str | None = None, dtype: str = "auto", repeats: int = 1, warmup: int = 0,
        max_new_tokens: int = 64, **generate_kwargs) -> Answer:
    """One question about one video with a checkpoint folder: `liteframe ask` as a function."""
    device = resolve_device(device)
    dtype = resolve_dtype(dtype, device)
    open_video(video).close()  # a bad video fails before a large checkpoint loads
    hf_logging.disable_progress_bar()  # a command's stderr is for errors
    llm = VideoLLM.from_pretrained(model, encoder, device=device, dtype=dtype)
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


def _load_weights(directory: Path, dtype: torch.dtype) -> InternVLForConditionalGeneration:
    """The checkpoint's model, or one line naming the folder and what is wrong: an unreadable (e.g. truncated)
    safetensors file, tensors whose shapes disagree with config.json, or missing tensors."""
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # transformers would print a many-line load report; the error below is one line
    try:
        model, info = InternVLForConditionalGeneration.from_pretrained(
            directory, dtype=dtype, output_loading_info=True, ignore_mismatched_sizes=True)
    except (OSError, RuntimeError, ValueError, SafetensorError) as err:
        raise InputError(f"model folder {directory}: cannot load the weights ({_one_line(err)})") from None
    finally:
        hf_logging.set_verbosity(verbosity)
    if info["mismatched_keys"]:
        key, found, wanted = sorted(info["mismatched_keys"])[0]
        raise InputError(f"model folder {directory}: cannot load the weights ({len(info['mismatched_keys'])} tensors "
                         f"disagree with config.json, e.g. {key} has shape {tuple(found)}, config.json implies "
                         f"{tuple(wanted)})")
    if info["missing_keys"]:
        missing = sorted(info["missing_keys"])
        raise InputError(f"model folder {directory}: cannot load the weights (the checkpoint lacks {len(missing)} "
                         f"tensors, e.g. {missing[0]})")
    return model.eval()


def _load_tokenizer(directory: Path):
    try:
        return AutoTokenizer.from_pretrained(directory)
    except Exception as err:  # noqa: BLE001  tokenizers' Rust parser raises bare Exceptions for bad files
        raise InputError(f"model folder {directory}: cannot load the tokenizer from tokenizer.json and "
                         f"tokenizer_config.json ({_one_line(err)})") from None


def _one_line(err: Exception) -> str:
    return f"{type(err).__name__}: {' '.join(str(err).split())}"


def _check_checkpoint(directory: Path) -> None:
    config = directory / "config.json"
    if not config.is_file():
        raise InputError(f"model folder {directory}: no config.json (expected an InternVL3 -hf checkpoint)")
    try:
        model_type = json.loads(config.read_text()).get("model_type")
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"model folder {directory}: config.json is not valid JSON ({err})") from None
    if model_type != "internvl":
        raise InputError(
            f"model folder {directory}: model_type {model_type!r} is not 'internvl' (an InternVL3 -hf checkpoint; "
            "the original trust_remote_code format is not supported)"
        )
    if not (directory / "tokenizer_config.json").is_file():
        raise InputError(f"model folder {directory}: no tokenizer_config.json (the checkpoint's tokenizer)")
