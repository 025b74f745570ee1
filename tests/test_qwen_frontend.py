"""Qwen2.5-VL's front end held to transformers' own processor (5.25): the pixel budget read from a checkpoint's
processor config, the frames' pixels, the time of a frame pair, and where the chat template is read from.

transformers' Qwen video processor imports torchvision, which this environment lacks: its pure-Python pieces
(`get_video_processor_dict`, `get_processor_dict`, `VideoMetadata`, the fused normalisation constants, and the
processor class's own `__init__` and `resize` compiled from the installed source) are run here; the processor itself
is compared where torchvision imports."""
from __future__ import annotations

import ast
import importlib.util
import json
import math
import shutil
import warnings
from dataclasses import replace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers.image_processing_backends import TorchvisionBackend
from transformers.image_processing_utils import get_size_dict
from transformers.image_utils import SizeDict
from transformers.processing_utils import ProcessorMixin
from transformers.video_processing_utils import BaseVideoProcessor
from transformers.video_utils import VideoMetadata

from liteframe.errors import InputError
from liteframe.llm import VideoLLM, build_input_ids
from liteframe.llm.processor import chat_template, video_processor_config
from liteframe.llm.qwen.vision import (CLIP_MEAN, CLIP_STD, MAX_PIXELS, MIN_PIXELS, PixelBudget, QwenVLUtilsBudget,
                                       data_config, patchify)
from liteframe.testing.qwen import CHAT_TEMPLATE, PREPROCESSOR_CONFIG, save_tiny_qwen
from liteframe.testing.videos import make_video
from liteframe.video import open_video, sample_frames
from liteframe.video.scale import torchvision_bicubic
from videos import REAL_VIDEOS


class _Base:
    """What `BaseVideoProcessor` does with `size` (`_standardize_kwargs`: a `SizeDict`), keeping the other settings,
    and a `resize` that returns the size it is asked for."""

    default_to_square = True

    def __init__(self, size=None, **settings):
        self.size = SizeDict(**get_size_dict(size=size, default_to_square=self.default_to_square))
        self.settings = settings

    def resize(self, image, size, resample):
        return size.height, size.width


def processor_class():
    """transformers' `Qwen2VLVideoProcessor` reduced to how it sizes frames: its own `__init__` (the config's `size`,
    `min_pixels`/`max_pixels` replacing its keys) and `resize` (the per-frame cap and the module's `smart_resize`),
    compiled from the installed source over `_Base` (annotations dropped: they name torchvision's types)."""
    path = importlib.util.find_spec("transformers.models.qwen2_vl").submodule_search_locations[0]
    path = f"{path}/video_processing_qwen2_vl.py"
    tree = ast.parse(open(path).read())
    rule = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "smart_resize")
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Qwen2VLVideoProcessor")
    cls.body = [n for n in cls.body if (isinstance(n, ast.FunctionDef) and n.name in ("__init__", "resize"))
                or (isinstance(n, ast.Assign) and n.targets[0].id in ("size", "max_video_tokens"))]
    cls.bases, cls.keywords, cls.decorator_list = [ast.Name("_Base", ast.Load())], [], []
    for node in ast.walk(cls):
        if isinstance(node, ast.FunctionDef):
            node.returns = None
            for arg in [*node.args.args, *node.args.kwonlyargs, node.args.vararg, node.args.kwarg]:
                if arg is not None:
                    arg.annotation = None
    namespace = {"math": math, "torch": torch, "SizeDict": SizeDict, "_Base": _Base}
    exec(compile(ast.fix_missing_locations(ast.Module([rule, cls], [])), path, "exec"), namespace)
    return namespace["Qwen2VLVideoProcessor"]


def processor_frame_size(folder, frames: int, height: int, width: int) -> tuple[int, int]:
    """The size transformers' video processor resizes `frames` frames of `height x width` to, with the settings
    `AutoVideoProcessor` loads from `folder` (none: the class's defaults)."""
    try:
        config = dict(BaseVideoProcessor.get_video_processor_dict(str(folder))[0])
    except OSError:  # no processor file: AutoVideoProcessor falls back on the class, built with no settings
        config = {}
    config.pop("image_processor_type", None)  # AutoVideoProcessor takes the class from it
    processor = processor_class()(**config)
    videos = torch.empty(1, frames, 3, height, width, device="meta")
    return processor.resize(videos, processor.size, None, factor=28, temporal_factor=2,
                            cap_pixels_per_frame=bool(processor.settings.get("cap_pixels_per_frame")),
                            max_video_tokens=processor.settings.get("max_video_tokens"))


def qwen_vl_utils_size(frames: int, height: int, width: int) -> tuple[int, int]:
    """qwen-vl-utils 0.0.11's `fetch_video` budget and its `smart_resize`, kept here as data."""
    factor, min_pixels, total_pixels = 28, 128 * 28 * 28, int(128000 * 28 * 28 * 0.9)
    max_pixels = max(min(768 * 28 * 28, total_pixels / frames * 2), int(min_pixels * 1.05))
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = math.floor(height / beta / factor) * factor
        w_bar = math.floor(width / beta / factor) * factor
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


# Video processor settings as checkpoints write them: the released Qwen2.5-VL file (min/max_pixels beside `size`),
# `size` alone, `size` with a `max_pixels` that replaces its longest edge, the per-frame cap turned on, and none.
CONFIGS = {
    "released": PREPROCESSOR_CONFIG,
    "size": {"size": {"shortest_edge": 100 * 784, "longest_edge": 300 * 784}},
    "override": {"size": {"shortest_edge": 4 * 784, "longest_edge": 3000 * 784}, "max_pixels": 200 * 784},
    "cap": {"min_pixels": 64 * 784, "max_pixels": 1024 * 784, "cap_pixels_per_frame": True, "max_video_tokens": 9000},
    "none": None,
}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("configs")
    for name, config in CONFIGS.items():
        (root / name).mkdir()
        if config is not None:
            (root / name / "preprocessor_config.json").write_text(json.dumps(config))
    return root


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """The tiny checkpoint in the hub's layout: the released preprocessor_config.json, the template in
    chat_template.json only."""
    return save_tiny_qwen(tmp_path_factory.mktemp("hub") / "qwen", processor_files=True)


@pytest.fixture(scope="module")
def llm(hub):
    return VideoLLM.from_pretrained(hub, device="cpu", dtype=torch.float32)


# --- the processor's config and its pixel budget ------------------------------------------------------------------

CONTENTS = {
    "preprocessor_config.json": {"min_pixels": 1, "max_pixels": 2},
    "video_preprocessor_config.json": {"size": {"shortest_edge": 3, "longest_edge": 4}},
    "processor_config.json": {"video_processor": {"size": {"shortest_edge": 5, "longest_edge": 6}},
                              "image_processor": {"min_pixels": 7}},
}


@pytest.mark.parametrize("files, source", [
    (["preprocessor_config.json"], "preprocessor_config.json"),
    (["preprocessor_config.json", "video_preprocessor_config.json"], "video_preprocessor_config.json"),
    (["preprocessor_config.json", "video_preprocessor_config.json", "processor_config.json"], "processor_config.json"),
    (["preprocessor_config.json", "processor_config.json without video"], "preprocessor_config.json"),
])
def test_the_video_processor_config_comes_from_where_autovideoprocessor_reads_it(tmp_path, files, source):
    for name in files:
        content = CONTENTS[name] if name in CONTENTS else {"image_processor": {"min_pixels": 7}, "processor_class": "X"}
        (tmp_path / name.split(" ")[0]).write_text(json.dumps(content))
    ours, path = video_processor_config(tmp_path)
    assert ours == BaseVideoProcessor.get_video_processor_dict(str(tmp_path))[0]
    assert path == tmp_path / source and ours == CONTENTS[source].get("video_processor", CONTENTS[source])
    assert video_processor_config(tmp_path / "nothing") == ({}, None)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(sorted(CONFIGS)), st.integers(1, 1200), st.integers(20, 2000), st.integers(20, 2000))
def test_frame_size_is_the_video_processors(folders, name, frames, height, width):
    want = processor_frame_size(folders / name, frames, height, width)
    assert data_config(folders / name).frame_size(frames, (height, width)) == want


def test_visual_tokens_equal_autoprocessors_for_a_hub_folder(hub, llm, tmp_path):
    """The issue's case: 6 frames at 308x196 are 231 visual tokens for AutoProcessor on a Qwen2.5-VL folder
    (3 pairs of 14 x 22 patches, merged 2 x 2), where qwen-vl-utils' budget gives 450."""
    h, w = processor_frame_size(hub, 6, 196, 308)
    assert (h, w) == (196, 308) and 3 * (h // 28) * (w // 28) == 231
    assert VideoLLM.skeleton(hub).encoder.layout(6, (196, 308)) == (3, 231)
    assert VideoLLM.skeleton(hub, pixels="qwen-vl-utils").encoder.layout(6, (196, 308)) == (3, 450)
    video = make_video(tmp_path / "v.mp4", num_frames=12, fps=4, width=308, height=196)
    enc = llm.encode(video, 6)
    assert (enc.visual_tokens, enc.visual.grid) == (231, (3, 7, 11))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # avg pads the 7 x 11 grid's partial blocks
        assert llm.with_encoder("avg").encode(video, 8).visual.grid == (1, 4, 6)  # the folder's budget kept
    assert VideoLLM.from_pretrained(hub, pixels="qwen-vl-utils", device="cpu").encode(video, 6).visual_tokens == 450


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 3000), st.integers(20, 2200), st.integers(20, 2200))
def test_qwen_vl_utils_budget_is_its_own_rule(frames, height, width):
    assert QwenVLUtilsBudget()(frames, height, width) == qwen_vl_utils_size(frames, height, width)


def test_qwen_vl_utils_caps_the_whole_video_above_300_frames():
    budget = QwenVLUtilsBudget()
    assert budget.cap(2) == budget.cap(300) == MAX_PIXELS and budget.cap(301) < MAX_PIXELS
    assert budget.cap(600) == 602112 / 2 and budget.cap(5000) == int(MIN_PIXELS * 1.05)
    sizes = [budget(n, 720, 1280) for n in (300, 400, 600, 1200, 5000)]  # 720p: fewer pixels a frame past 300
    assert sizes == [(560, 1008), (504, 896), (392, 728), (280, 504), (224, 420)]
    data = data_config(pixels="qwen-vl-utils")
    assert (data.mean, data.std) == (CLIP_MEAN, CLIP_STD) and data.frame_size(600, (720, 1280)) == (392, 728)
    assert data.size.largest(600) == budget(600, 548, 548)


def test_bad_budgets_and_layouts_are_one_line_errors(tmp_path):
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"size": {"longest_edge": 100}}))
    with pytest.raises(InputError, match="preprocessor_config.json: the video processor's size needs"):
        data_config(tmp_path)
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({**PREPROCESSOR_CONFIG, "patch_size": 16}))
    with pytest.raises(InputError, match=r"patch, merge and temporal patch sizes \(16, 2, 2\)"):
        data_config(tmp_path)
    (tmp_path / "preprocessor_config.json").write_text("{")
    with pytest.raises(InputError, match="preprocessor_config.json: cannot read it"):
        data_config(tmp_path)
    with pytest.raises(InputError, match="pixels 'qwen': choose processor or qwen-vl-utils"):
        data_config(pixels="qwen")


# --- pixels -----------------------------------------------------------------------------------------------------

def processor_normalised(levels: torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 resized frames -> what the processor's `rescale_and_normalize` gives: transformers' own fused constants
    (mean and std over the rescale factor, in float32), then torchvision's `normalize` (subtract, then divide)."""
    fused_mean, fused_std, _ = TorchvisionBackend._fuse_mean_std_and_rescale_factor(
        None, do_normalize=True, image_mean=tuple(mean), image_std=tuple(std), do_rescale=True,
        rescale_factor=1 / 255, device=None)
    return levels.float().sub(fused_mean.view(-1, 1, 1)).div(fused_std.view(-1, 1, 1))


@pytest.mark.parametrize("name, frames", [("bbb_short.mp4", 7), ("flipping_a_pancake.mkv", 6), ("corrupted.mp4", 2)])
@pytest.mark.parametrize("pixels", ["processor", "qwen-vl-utils"])
def test_pixels_are_torchvision_bicubic_then_the_processors_normalisation(hub, name, frames, pixels):
    """Real frames (a 720p downscale among them) resized in uint8 as torchvision does on a CPU
    (`torchvision_bicubic`, tested against torchvision's algorithm in test_scale.py), then normalised as the
    processor fuses it: equal, value for value."""
    with open_video(REAL_VIDEOS / name) as reader:
        times = sample_frames(reader.info, frames, "uniform").timestamps if name != "corrupted.mp4" else [0.1, 0.2]
        decoded = reader.read(times).data
    data = data_config(hub, pixels)
    size = data.frame_size(frames, tuple(decoded.shape[-2:]))
    ours = data(decoded)
    want = processor_normalised(torchvision_bicubic(decoded, size), data.mean, data.std)
    assert ours.shape == (frames + frames % 2, 3, *size) and torch.equal(ours[:frames], want)
    assert torch.equal(ours[frames:], want[-1:].expand(frames % 2, -1, -1, -1))


def test_the_encoder_reads_the_processors_pixels_sized_for_the_whole_video(llm):
    """Through `encode`, chunk by chunk: the backbone sees the frames of the sampled times normalised as above, all
    at the size of the whole video's frame count (a budget over the video: 6 frames must not be sized as 2)."""
    budget = PixelBudget(3136, 12845056, total_pixels=6 * 28 * 28 * 50)  # 100 tokens' pixels a frame at 6 frames
    runner = VideoLLM(llm.model, llm.tokenizer, llm.with_encoder("dense").encoder, chunk_frames=2)
    runner.encoder.data = replace(runner.encoder.data, size=budget)
    seen = []
    hook = runner.encoder.backbone.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    try:
        enc = runner.encode(REAL_VIDEOS / "flipping_a_pancake.mkv", 6)
    finally:
        hook.remove()
    with open_video(REAL_VIDEOS / "flipping_a_pancake.mkv") as reader:
        decoded = reader.read(enc.timestamps).data
    size = budget(6, 240, 426)
    assert size != budget(2, 240, 426) and len(seen) == 3
    want = processor_normalised(torchvision_bicubic(decoded, size), CLIP_MEAN, CLIP_STD)
    assert torch.equal(torch.cat(seen, 1)[0], want)


def test_autoprocessor_itself_where_torchvision_imports(hub, llm, tmp_path):
    """The real processor (`AutoProcessor`, its torchvision video processor) on real frames of the hub folder:
    the same visual tokens, prompt ids and pixels (within 1 level; equal where torchvision's CPU kernel is the one
    `torchvision_bicubic` reproduces)."""
    pytest.importorskip("torchvision")
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(hub)
    with open_video(REAL_VIDEOS / "bbb_short.mp4") as reader:
        sample = llm.sample(reader.info, 6)
        decoded = reader.read(sample.timestamps).data
    metadata = VideoMetadata(total_num_frames=reader.info.num_frames, fps=reader.info.fps,
                             frames_indices=sample.indices.tolist())
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "What happens?"}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = processor(text=[text], videos=[decoded], video_metadata=[metadata], return_tensors="pt")
    enc = llm.encode(REAL_VIDEOS / "bbb_short.mp4", 6)
    ids, _ = build_input_ids(llm.tokenizer, llm.family, enc.slots, "What happens?")
    assert ids[0].tolist() == out["input_ids"][0].tolist()
    assert torch.as_tensor(out["second_per_grid_ts"]).flatten().tolist() == pytest.approx([2 / enc.fps])
    rows, grid = patchify(llm.encoder.data(decoded))
    assert list(grid) == out["video_grid_thw"][0].tolist()
    std = torch.tensor(CLIP_STD).repeat_interleave(2 * 14 * 14) * 255
    assert float(((rows - out["pixel_values_videos"]).abs() * std).max()) <= 1.0 + 1e-3


# --- time per frame pair ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("encoder, frames", [("dense", 6), ("wap", 16)])
def test_a_frame_pair_spans_two_over_the_sampled_fps(llm, encoder, frames):
    """The processor's `second_per_grid_ts = temporal_patch_size / fps`, fps its `VideoMetadata.sampled_fps` of the
    same frames (frames sampled per second of video): 2 / 0.6 s per pair for 6 frames of 10 s, also when the frames
    are clips at a higher rate inside each clip (`wap`: 16 frames as 2 clips of 8, 1.6 fps)."""
    runner = llm.with_encoder(encoder)
    with open_video(REAL_VIDEOS / "bbb_short.mp4") as reader:
        sample = runner.sample(reader.info, frames)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # wap pads partial blocks of the 6 x 11 grid
            enc = runner.encode(reader, frames)
    metadata = VideoMetadata(total_num_frames=250, fps=25.0, frames_indices=sample.indices.tolist())
    assert enc.fps == pytest.approx(metadata.sampled_fps, rel=1e-12) and metadata.sampled_fps == frames / 10
    spacing = 2 * (enc.timestamps[-1] - enc.timestamps[0]) / (frames - 1)
    assert 2 / enc.fps != pytest.approx(spacing, rel=1e-3)  # the old rule, twice the mean spacing, is not it
    ids, _ = build_input_ids(llm.tokenizer, llm.family, enc.slots, "What happens?")
    positions = runner.inputs(ids, enc).position_ids
    is_video = ids[0] == llm.model.config.video_token_id
    start = int(is_video.nonzero()[0])
    t, h, w = enc.visual.grid
    seconds = enc.visual.frames_per_step / metadata.sampled_fps  # a grid step of frames_per_step frames
    hf, _ = llm.model.model.get_rope_index(ids, is_video.int()[None] * 2, video_grid_thw=torch.tensor([[t, 2 * h,
                                                                                                        2 * w]]),
                                           second_per_grid_ts=torch.tensor([seconds]))
    end = start + int(is_video.sum())
    assert torch.equal(positions[..., :end], hf[..., :end])  # the text before and the video agree
    assert int(positions[0, 0, end - 1]) - start == math.floor((t - 1) * 2 * seconds)  # tokens_per_second 2


# --- chat template ----------------------------------------------------------------------------------------------

def _copy(hub, folder, drop=(), files=None):
    shutil.copytree(hub, folder)
    for name in drop:
        (folder / name).unlink()
    for name, content in (files or {}).items():
        (folder / name).write_text(content)
    return folder


def test_the_chat_template_is_read_as_the_processor_reads_it(hub, tmp_path, capsys):
    other = CHAT_TEMPLATE.replace("You are a helpful assistant.", "You watch videos.")
    layouts = {
        "json only": _copy(hub, tmp_path / "a"),  # the hub's: chat_template.json, nothing in the tokenizer
        "jinja": _copy(hub, tmp_path / "b", ["chat_template.json"], {"chat_template.jinja": other}),
        "processor config first": _copy(hub, tmp_path / "c", files={"processor_config.json": json.dumps(
            {"chat_template": other, "processor_class": "Qwen2_5_VLProcessor"})}),
        "json before jinja": _copy(hub, tmp_path / "d", files={"chat_template.jinja": "{{ 'unused' }}"}),
    }
    for name, folder in layouts.items():
        tokenizer = VideoLLM.skeleton(folder).tokenizer
        want = ProcessorMixin.get_processor_dict(str(folder))[0]["chat_template"]
        assert tokenizer.chat_template == chat_template(folder, tokenizer) == want, name
        assert want == (other if name in ("jinja", "processor config first") else CHAT_TEMPLATE), name

    bare = _copy(hub, tmp_path / "none", ["chat_template.json"])
    with pytest.raises(InputError, match=f"model folder {bare}: no chat template"):
        VideoLLM.skeleton(bare)
    from liteframe.cli import main

    video = str(REAL_VIDEOS / "bbb_short.mp4")
    assert main(["ask", video, "q", "--model", str(bare), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert f"model folder {bare}: no chat template" in err and len(err.splitlines()) == 1
    assert main(["ask", video, "q", "--model", str(hub), "--pixels", "budget", "--device", "cpu"]) == 2
    assert "pixels 'budget': choose processor or qwen-vl-utils" in capsys.readouterr().err


def test_eval_sizes_frames_by_pixels_and_a_rerun_with_other_pixels_is_refused(hub, tmp_path, capsys):
    """`eval --pixels qwen-vl-utils` reads frames at qwen-vl-utils' budget (lmms-eval's Qwen2.5-VL model uses it), as
    `ask` does; the sizing is part of the run's identity."""
    import evaldata
    from liteframe.cli import main
    from liteframe.eval.records import read_records

    data = evaldata.make_mlvu(tmp_path / "mlvu")
    tokens = {}
    for pixels in ("processor", "qwen-vl-utils"):
        out = tmp_path / f"{pixels}.jsonl"
        assert main(["eval", "--benchmark", "mlvu", "--data", str(data), "--model", str(hub), "--encoder", "wap",
                     "--frames", "8", "--pixels", pixels, "--out", str(out), "--device", "cpu"]) == 0
        records = read_records(out)
        assert records and all("error" not in r for r in records)
        tokens[pixels] = sorted(r["visual_tokens"] for r in records)
        skeleton = VideoLLM.skeleton(hub, "wap", pixels=pixels)
        with open_video(REAL_VIDEOS / "bbb_short.mp4") as reader:
            assert skeleton.encoder.layout(8, (reader.info.height, reader.info.width))[1] in tokens[pixels]
    assert tokens["processor"] != tokens["qwen-vl-utils"]
    capsys.readouterr()
    assert main(["eval", "--benchmark", "mlvu", "--data", str(data), "--model", str(hub), "--encoder", "wap",
                 "--frames", "8", "--out", str(tmp_path / "qwen-vl-utils.jsonl"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert "pixels 'qwen-vl-utils' there, 'processor' here" in err and len(err.splitlines()) == 1
