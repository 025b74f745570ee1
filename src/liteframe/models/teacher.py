"""The teacher: a frozen Hugging Face ViT (InternViT of InternVL3, Qwen2.5-VL's ViT and merger, DINOv2 with or
without registers, CLIP or SigLIP vision; `towers.py`) giving token grids, and the InternVL projector that maps
(pixel-shuffled) grids to LLM embeddings."""
from __future__ import annotations

import json
import math
import os
import warnings
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from torch import nn
from transformers import (AutoModel, InternVLConfig, Qwen2_5_VLConfig, Qwen3_5Config, Qwen3_5MoeConfig, Qwen3VLConfig,
                          Qwen3VLMoeConfig)
from transformers.models.internvl.modeling_internvl import InternVLMultiModalProjector

from ..errors import InputError, model_type as read_model_type, one_line
from ..grid import TokenGrid, pixel_shuffle
from .qwen import through_mergers
from .towers import FOLDER_TYPES, TOWERS, registers, tower
# Video LLM checkpoints a teacher is read from: the config class, and where its `save_pretrained` puts the parts we
# load (transformers 5 writes the first; checkpoints saved from the inner `model` carry the `model.` prefix; the
# hub's Qwen2.5-VL folders have `visual.`). Qwen's merger is part of its vision model.
_CHECKPOINTS = {
    "internvl": (InternVLConfig, {"vision": ("vision_tower.", "model.vision_tower."),
                                  "projector": ("multi_modal_projector.", "model.multi_modal_projector.")}),
    "qwen2_5_vl": (Qwen2_5_VLConfig, {"vision": ("visual.", "model.visual.")}),
    **{model_type: (config, {"vision": ("model.visual.", "visual.")}) for model_type, config in (
        ("qwen3_vl", Qwen3VLConfig), ("qwen3_vl_moe", Qwen3VLMoeConfig), ("qwen3_5", Qwen3_5Config),
        ("qwen3_5_moe", Qwen3_5MoeConfig))},
}
_QWEN_CONFIGS = tuple(config for model_type, (config, _) in _CHECKPOINTS.items() if model_type != "internvl")


class Teacher(nn.Module):
    """Frozen ViT: `(B, T, 3, S, S) -> TokenGrid (B, T, S/p, S/p, C)`, with CLS where the model has one (DINOv2's
    registers are dropped: they are neither patches nor a query). Qwen's give their merged grid, `(B, T/2, S/m, S/m,
    D)` in the LLM's width (m = 28 for Qwen2.5-VL, 32 for Qwen3-VL and Qwen3.5; Qwen3-VL's DeepStack features as
    its levels): their ViTs read frame pairs, and their output is their merger's."""

    def __init__(self, vision: nn.Module, projector: nn.Module | None = None):
        super().__init__()
        self.vision = vision
        self.projector = projector
        self.tower = tower(vision)
        self.has_cls = self.tower.has_cls
        self.registers = registers(vision)
        self.eval().requires_grad_(False)

    @classmethod
    def from_config(cls, config) -> Teacher:
        """Random weights: an `InternVLConfig` gives the vision tower and projector, a Qwen2.5-VL, Qwen3-VL or Qwen3.5
        config (dense or MoE) its vision model (ViT and mergers); a vision config (InternVL, Qwen's, DINOv2, CLIP or
        SigLIP vision) gives the tower alone."""
        if isinstance(config, InternVLConfig):
            return cls(_vision_model(config.vision_config), InternVLMultiModalProjector(config))
        if isinstance(config, _QWEN_CONFIGS):
            return cls(_vision_model(config.vision_config))
        return cls(_vision_model(config))

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, dtype: torch.dtype | None = None,
                        device: torch.device | str | None = None) -> Teacher:
        """A local InternVL3 `-hf` folder (vision tower and projector only, never the LLM), a Qwen2.5-VL, Qwen3-VL or
        Qwen3.5 folder, dense or MoE (its vision model, ViT and mergers, never the LLM), or a folder of a DINOv2 (with
        or without registers), CLIP or SigLIP (vision) model. `dtype` None keeps the checkpoint's."""
        folder = Path(path)
        model_type = _supported(folder)
        if model_type in _CHECKPOINTS:
            teacher = cls._from_checkpoint(folder, model_type)
        else:
            teacher = cls._from_vision_folder(folder, FOLDER_TYPES[model_type], dtype)
        return teacher.to(device=device, dtype=dtype)

    @staticmethod
    def config_of(path: str | os.PathLike):
        """The vision tower's config of a teacher folder (what `from_pretrained` would build), reading no weights."""
        folder = Path(path)
        model_type = _supported(folder)
        if model_type in _CHECKPOINTS:
            return _CHECKPOINTS[model_type][0].from_pretrained(folder).vision_config
        return TOWERS[FOLDER_TYPES[model_type]].model.config_class.from_pretrained(folder)

    @classmethod
    def _from_vision_folder(cls, folder: Path, model_type: str, dtype: torch.dtype | None) -> Teacher:
        try:
            vision, info = TOWERS[model_type].model.from_pretrained(
                folder, attn_implementation="sdpa", output_loading_info=True, **({"dtype": dtype} if dtype else {}))
        except RuntimeError as err:  # transformers refuses tensors whose shapes differ from config.json
            raise InputError(f"{folder}: tensor shapes do not match config.json ({one_line(err)})") from None
        except (OSError, SafetensorError) as err:
            raise InputError(f"{folder}: cannot read the weights ({one_line(err)})") from None
        missing = sorted(info["missing_keys"])
        if missing:
            raise InputError(f"{folder}: checkpoint lacks {len(missing)} vision tensors, e.g. {missing[0]}")
        return cls(vision)

    @classmethod
    def _from_checkpoint(cls, folder: Path, model_type: str) -> Teacher:
        """The vision parts of a Video LLM checkpoint (`_CHECKPOINTS`), reading only their tensors."""
        config_class, where = _CHECKPOINTS[model_type]
        with torch.device("meta"):
            teacher = cls.from_config(config_class.from_pretrained(folder))
        parts = {name: getattr(teacher, name) for name in where}
        wanted = {name: set(part.state_dict()) for name, part in parts.items()}
        found: dict[str, dict[str, torch.Tensor]] = {name: {} for name in parts}
        for file, keys in _safetensors_keys(folder).items():
            with _open_safetensors(file) as f:
                for key in keys:
                    for name, prefixes in where.items():
                        local = next((key[len(p):] for p in prefixes if key.startswith(p)), None)
                        if local in wanted[name]:
                            found[name][local] = f.get_tensor(key)
        for name, part in parts.items():
            missing = sorted(wanted[name] - set(found[name]))
            if missing:
                raise InputError(f"{folder}: checkpoint lacks {len(missing)} {name} tensors, e.g. {missing[0]}")
            expected = part.state_dict()
            for key, tensor in found[name].items():
                if tensor.shape != expected[key].shape:
                    raise InputError(f"{folder}: {name} tensor {key} has shape {tuple(tensor.shape)}, "
                                     f"config.json implies {tuple(expected[key].shape)}")
            part.load_state_dict(found[name], assign=True)
            # non-persistent buffers (Qwen's rotary frequencies) are in no checkpoint: their module is built again
            # off the meta device (transformers' rotary embeddings take their config)
            for path, module in list(part.named_modules()):
                if any(b.is_meta for b in module.buffers(recurse=False)):
                    part.set_submodule(path, type(module)(module.config))
        return teacher

    @property
    def image_size(self) -> int:
        """The side frames are read at: the checkpoint's own, or for a tower without one (Qwen's) the square
        liteframe feeds it."""
        return self.tower.square or _first(self.vision.config.image_size)

    @property
    def patch_size(self) -> int:
        return _first(self.vision.config.patch_size)

    @property
    def hidden_size(self) -> int:
        """The ViT's width: a student's output width (Qwen's merger takes the ViT's)."""
        return self.vision.config.hidden_size

    @property
    def out_dim(self) -> int:
        """The width of the grid `forward` gives (after Qwen's merger: the LLM's)."""
        return self.vision.config.out_hidden_size if self.tower.merger else self.hidden_size

    @property
    def frames_per_step(self) -> int:
        """Frames behind one step of the grid (2: Qwen's frame pairs)."""
        return getattr(self.vision.config, "temporal_patch_size", 1)

    def grid_shape(self, frames: int, size: int) -> tuple[int, int, int]:
        """`(T, H, W)` of the grid `forward` gives for `frames` frames of `size` px square."""
        side = size // self.patch_size // (self.vision.config.spatial_merge_size if self.tower.merger else 1)
        return frames // self.frames_per_step, side, side

    def student_head(self):
        """What a student's grid goes through to reach the space of this teacher's grid, frozen: Qwen's mergers
        (`models.qwen.through_mergers` with the tower's own: `TokenGrid -> TokenGrid`), or None where the student's
        grid is in it already. A function, not a module: whoever trains the student owns none of its weights."""
        return partial(through_mergers, self.vision) if self.tower.merger else None

    def forward(self, pixels: torch.Tensor, attention: bool = False) -> TokenGrid:
        """`(B, T, 3, S, S) -> TokenGrid (B, T, S/p, S/p, C)`: all frames in one batch of B*T images. `attention`:
        the grid also carries the last layer's CLS attention row `scores` and keys (`last_layer_attention`).
        Qwen's: the merged grid (`Tower.encode`, `models.qwen`; no attention row: the pipeline scores its tokens)."""
        if self.tower.merger:
            if attention:
                raise ValueError("a Qwen teacher has no CLS attention row; score its merged tokens instead")
            return self.tower.encode(self.vision, pixels)
        b, t, _, height, width = pixels.shape
        if min(height, width) < self.image_size:
            warn_resized_positions(self.image_size, self.patch_size, height, width)
        frames = pixels.flatten(0, 1).to(next(self.vision.parameters()).dtype)
        kwargs = {}
        if not self.tower.resizes_itself:
            kwargs["interpolate_pos_encoding"] = (height, width) != (self.image_size, self.image_size)
        if not attention:
            hidden = self._without_registers(self.vision(pixel_values=frames, **kwargs))
            return TokenGrid.from_hf(hidden, t, self.has_cls)
        with last_layer_attention(self.vision, self.has_cls, self.registers) as found:
            hidden = self._without_registers(self.vision(pixel_values=frames, **kwargs))
        grid = TokenGrid.from_hf(hidden, t, has_cls=self.has_cls)
        h, w = grid.shape[2:4]
        return TokenGrid(grid.patches, grid.cls, found["scores"].view(b, t, h, w), found["keys"].view(b, t, h, w, -1))

    def _without_registers(self, output) -> torch.Tensor:
        """`(N, [1 +] [R +] P, C) -> (N, [1 +] P, C)`: the last hidden state without register tokens."""
        hidden = output.last_hidden_state
        return torch.cat([hidden[:, :1], hidden[:, 1 + self.registers:]], 1) if self.registers else hidden


@contextmanager
def last_layer_attention(vision: nn.Module, has_cls: bool, registers: int = 0):
    """While active, the ViT's forward fills the yielded dict with `scores (B*T, H*W)`, the attention row of its
    last layer's CLS query over all tokens (softmax over CLS and patches, kept at the patches), and `keys
    (B*T, H*W, Ck)`, that layer's keys at the patches. The row is one query against the keys the layer computes
    anyway, so it works with fused attention kernels that never materialise the attention matrix.

    As LLaVA-PruMerge's reference computes it: one "head" over the full width, scale `Ck^-1/2`, from the keys and
    queries the attention uses (after InternViT's q/k norms). A ViT without CLS (SigLIP) uses the mean of its
    patch queries as the query (ours). `registers`: tokens between the CLS and the patches (DINOv2), kept out of
    the query, the row and the keys."""
    attn = [m for m in vision.modules() if hasattr(m, "q_proj") and hasattr(m, "k_proj")][-1]
    found: dict[str, torch.Tensor] = {}

    def keep(name):
        def hook(module, args, out):
            found[name] = out
        return hook

    # InternViT normalises q and k after the projections (Identity when off): the attention sees their outputs.
    hooks = [getattr(attn, f"{x}_norm", getattr(attn, f"{x}_proj")).register_forward_hook(keep(x)) for x in "qk"]
    try:
        yield found
    finally:
        for hook in hooks:
            hook.remove()
    q, k = found.pop("q"), found.pop("k")
    if registers:
        q, k = (torch.cat([x[:, :1], x[:, 1 + registers:]], 1) for x in (q, k))
    query = q[:, 0] if has_cls else q.mean(1)
    dtype = torch.promote_types(k.dtype, torch.float32)
    with torch.autocast(k.device.type, enabled=False):
        logits = torch.einsum("nkc,nc->nk", k.to(dtype), query.to(dtype)) / math.sqrt(k.shape[-1])
    found["scores"] = logits.softmax(-1)[:, int(has_cls):]
    found["keys"] = k[:, int(has_cls):]


def warn_resized_positions(native: int, patch: int, height: int, width: int) -> None:
    """Frames below the checkpoint's own size make the ViT resize its position embeddings, once more if the
    checkpoint's were already resized from another size: its features drift from the checkpoint's (a converted
    DINOv2-S at half size: cosine 0.97), and so do targets distilled from them."""
    side = native // patch
    warnings.warn(f"teacher: {height}x{width} px frames are below the checkpoint's own {native} px, so its "
                  f"{side}x{side} position embeddings are resized to {height // patch}x{width // patch}, which "
                  f"changes its features; use frames of {native} px to keep them", stacklevel=3)


def to_llm_tokens(grid: TokenGrid, projector: nn.Module) -> torch.Tensor:
    """`TokenGrid (B, T, H, W, C) -> (B, T*H/2*W/2, d_llm)`: pixel shuffle (InternVL order), then the projector.
    16 tokens per input frame for the student at 448 px, 256 per frame for the dense teacher."""
    x = pixel_shuffle(grid.patches)
    x = x.reshape(x.shape[0], -1, x.shape[-1])
    return projector(x.to(next(projector.parameters()).dtype))


def _vision_model(config) -> nn.Module:
    if config.model_type in TOWERS:  # Qwen's vision model has no AutoModel entry
        return TOWERS[config.model_type].model._from_config(config, attn_implementation="sdpa")
    return AutoModel.from_config(config, attn_implementation="sdpa")


def _supported(folder: Path) -> str:
    """The folder's model_type, or one line naming it and the supported teachers."""
    model_type = read_model_type(folder, "teacher")
    if model_type not in _CHECKPOINTS and model_type not in FOLDER_TYPES:
        raise InputError(f"{folder}: model_type {model_type!r} is not a supported teacher "
                         f"({', '.join([*_CHECKPOINTS, *FOLDER_TYPES])})")
    return model_type


def _first(size) -> int:
    return size[0] if isinstance(size, (list, tuple)) else size


def _safetensors_keys(folder: Path) -> dict[Path, list[str]]:
    """The checkpoint's safetensors files and the tensor names each holds (single file or sharded index)."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        files: dict[Path, list[str]] = {}
        for key, name in json.loads(index.read_text())["weight_map"].items():
            files.setdefault(folder / name, []).append(key)
        return files
    single = folder / "model.safetensors"
    if not single.is_file():
        raise InputError(f"{folder}: no model.safetensors or model.safetensors.index.json")
    with _open_safetensors(single) as f:
        return {single: list(f.keys())}


def _open_safetensors(file: Path):
    """`safe_open`, with a missing, truncated or corrupt file as one line naming it."""
    try:
        return safe_open(str(file), "pt")
    except (OSError, SafetensorError) as err:
        raise InputError(f"{file}: not a readable safetensors file ({one_line(err)})") from None

