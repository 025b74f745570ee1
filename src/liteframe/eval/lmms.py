"""The `liteframe` model for lmms-eval (`pip install 'liteframe[lmms]'`), registered through the `lmms_eval.models`
entry point by `MANIFEST`:

    lmms-eval --model liteframe --model_args pretrained=InternVL3-8B-hf,encoder=student:runs/student,frames=128 \
        --tasks videomme,mlvu_dev,longvideobench_val_v --batch_size 1

A chat model: each request's messages (from the task's `doc_to_messages`) give the video and the question text,
which `VideoLLM` answers with the encoder, frames, compression and adapter of `--model_args`. Consecutive requests
about the same video (Video-MME's 3 questions) reuse its encoding. Only `generate_until` is offered.

Under `accelerate launch` or torchrun the rank and world size come from `accelerate.Accelerator`, as lmms-eval's own
models take them (`models/chat/internvl_hf.py`, `models/simple/qwen2_5_vl.py`), and each process runs on its own
device; lmms-eval then gives each rank its share of the requests. The global `process_index` is the rank (those
models take `local_process_index`, the same on one machine; the global one stays right across machines).
"""
from __future__ import annotations

from accelerate import Accelerator
from lmms_eval.api.instance import Instance
from lmms_eval.api.model import lmms
from lmms_eval.models.registry_v2 import ModelManifest
from tqdm import tqdm

from liteframe.errors import InputError
from liteframe.eval.backend import load_llm

MANIFEST = ModelManifest(model_id="liteframe", chat_class_path="liteframe.eval.lmms.LiteFrame")


class LiteFrame(lmms):
    """`--model_args pretrained=DIR[,encoder=E][,frames=N][,compression=C][,adapter=A][,device=D][,pixels=P]`."""

    is_simple = False

    def __init__(self, pretrained: str, encoder: str = "dense", frames: int = 16, compression=None,
                 adapter: str | None = None, device: str | None = None, batch_size: int = 1,
                 pixels: str = "processor", **unused):
        super().__init__()
        if int(batch_size) != 1:
            raise InputError(f"batch_size {batch_size}: the liteframe model answers one request at a time")
        self.accelerator = Accelerator()
        if self.accelerator.num_processes > 1:
            self._rank, self._world_size = self.accelerator.process_index, self.accelerator.num_processes
            device = str(self.accelerator.device)
        self.frames = int(frames)
        self.llm = load_llm(pretrained, encoder, None if compression is None else str(compression), adapter, device,
                            self.frames, pixels)
        self._cached: tuple[str, object] | None = None  # (video path, its encoding)

    @property
    def device(self):
        """Where this rank's model runs (lmms-eval gathers its request counts there)."""
        return self.llm.device

    def generate_until(self, requests: list[Instance]) -> list[str]:
        """One answer per request `(context, doc_to_messages, generation_kwargs, doc_id, task, split)`."""
        answers = []
        for request in tqdm(requests, desc="liteframe", disable=self.rank != 0):
            _, doc_to_messages, gen_kwargs, doc_id, task, split = request.args
            video, text = video_and_text(doc_to_messages(self.task_dict[task][split][doc_id]))
            if self._cached is None or self._cached[0] != video:
                self._cached = (video, self.llm.encode(video, frames=self.frames, prefill=self.llm.incremental))
            reply = self.llm.answer(self._cached[1], text, max_new_tokens=int(gen_kwargs.get("max_new_tokens", 16)))
            answers.append(reply.answer)
            self.cache_hook.add_partial("generate_until", request.args, reply.answer)
        return answers

    def loglikelihood(self, requests: list[Instance]):
        raise NotImplementedError("the liteframe model only generates (multiple-choice tasks with generate_until)")

    def generate_until_multi_round(self, requests: list[Instance]):
        raise NotImplementedError("the liteframe model answers single-round requests only")


def video_and_text(messages: list[dict]) -> tuple[str, str]:
    """lmms-eval chat messages -> (the one video's path, the text parts joined by newlines)."""
    videos, texts = [], []
    for message in messages:
        for part in message["content"]:
            if part["type"] == "video":
                url = part["url"]
                videos.append(url.get("url") or url.get("path") if isinstance(url, dict) else url)
            elif part["type"] == "text":
                texts.append(part["text"])
            else:
                raise InputError(f"the liteframe model reads videos and text, not {part['type']}")
    if len(videos) != 1:
        raise InputError(f"a request with {len(videos)} videos: the liteframe model answers about exactly one")
    return str(videos[0]), "\n".join(texts)
