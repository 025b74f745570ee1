"""The lmms-eval plugin against the real lmms-eval 0.7.3: found through its entry-point registry, built from a
`--model_args` string, driven with lmms-eval's own `Instance` objects; under torchrun with two ranks, each takes its
rank from `accelerate` as lmms-eval's models do, and lmms-eval's own sharding gives every request to one rank.

lmms-eval is unpacked with no dependencies (it pins old PyAV) plus the two modules its `api` and `models` packages
import that the test environment lacks (loguru, pytz), into a cache folder; it runs in a subprocess because
importing lmms_eval silences every warning of the process."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import evaldata
from liteframe.testing import TINY_CHECKPOINTS, save_tiny_internvl

REPO = Path(__file__).parents[1]

SCRIPT = r"""
import json, sys
from lmms_eval.api.instance import Instance
from lmms_eval.models import get_model, list_available_models

models, videos = json.loads(sys.argv[1]), json.loads(sys.argv[2])
cls = get_model("liteframe")
docs = {i: {"video": v, "question": f"Question {i}?\nA. yes\nB. no\nThe best answer is:"} for i, v in enumerate(videos)}

def doc_to_messages(doc):  # the shape lmms-eval's ConfigurableMessagesTask builds: visuals, then the text
    return [{"role": "user", "content": [{"type": "video", "url": doc["video"]}, {"type": "text", "text": doc["question"]}]}]

results = []
for tiny, frames in models:
    model = cls.create_from_arg_string(f"pretrained={tiny},encoder=wap,frames={frames},device=cpu")
    model.task_dict = {"videomme": {"test": docs}}
    requests = [Instance("generate_until", ("", doc_to_messages, {"max_new_tokens": 8, "do_sample": False}, i,
                         "videomme", "test"), idx=0, metadata={"task": "videomme", "doc_id": i, "repeats": 1})
                for i in docs]
    encodes = []
    encode = model.llm.encode
    model.llm.encode = lambda video, frames, **kw: encodes.append(video) or encode(video, frames, **kw)
    answers = model.generate_until(requests)
    direct = [model.llm.answer(encode(d["video"], frames), d["question"], max_new_tokens=8).answer
              for d in docs.values()]
    try:
        model.loglikelihood(requests)
        refused = False
    except NotImplementedError:
        refused = True
    results.append({"listed": "liteframe" in list_available_models(), "class": cls.__name__, "answers": answers,
                    "direct": direct, "encodes": encodes, "refused": refused})
print(json.dumps(results))
"""


RANKS = r"""
import json, sys
import torch.distributed as dist
from lmms_eval.api.instance import Instance
from lmms_eval.models import get_model
from lmms_eval.utils import create_iterator

tiny, videos = sys.argv[1], json.loads(sys.argv[2])
model = get_model("liteframe").create_from_arg_string(f"pretrained={tiny},encoder=wap,frames=4,device=cpu")
docs = [{"video": v, "question": f"Question {i}?\nA. yes\nB. no\nThe best answer is:"} for i, v in enumerate(videos)]
model.task_dict = {"videomme": {"test": dict(enumerate(docs))}}

def doc_to_messages(doc):
    return [{"role": "user", "content": [{"type": "video", "url": doc["video"]},
                                         {"type": "text", "text": doc["question"]}]}]

# the documents of this rank, as lmms-eval's Task.doc_iterator shards them by the model's rank and world size
mine = [i for i, _ in create_iterator(enumerate(docs), rank=model.rank, world_size=model.world_size)]
requests = [Instance("generate_until", ("", doc_to_messages, {"max_new_tokens": 8}, i, "videomme", "test"), idx=0,
                     metadata={"task": "videomme", "doc_id": i, "repeats": 1}) for i in mine]
answered = dict(zip(mine, model.generate_until(requests)))
gathered = [None] * model.world_size
dist.all_gather_object(gathered, {"rank": model.rank, "world": model.world_size, "answered": answered,
                                  "device": str(model.device)})
if model.rank == 0:
    direct = [model.llm.answer(model.llm.encode(d["video"], 4), d["question"], max_new_tokens=8).answer for d in docs]
    print(json.dumps({"ranks": gathered, "direct": direct}))
# as lmms-eval's evaluator ends; a rank that leaves with its gloo group alive can abort in interpreter finalization
# (pytorch/pytorch#179291)
dist.barrier()
dist.destroy_process_group()
"""


@pytest.fixture(scope="module")
def lmms_path(tmp_path_factory):
    root = evaldata.lmms_eval_root()
    deps = root.with_name("lmms-deps")
    if not (deps / "loguru").is_dir():
        done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(deps),
                               "loguru", "pytz"], capture_output=True, text=True)
        if done.returncode:
            pytest.skip(f"cannot install loguru and pytz for lmms-eval: {done.stderr.strip()[-200:]}")
    # liteframe's entry point, as `pip install liteframe` declares it from pyproject.toml
    plugin = tmp_path_factory.mktemp("plugin") / "liteframe_plugin-0.0.dist-info"
    plugin.mkdir()
    (plugin / "METADATA").write_text("Metadata-Version: 2.1\nName: liteframe-plugin\nVersion: 0.0\n")
    points = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["entry-points"]["lmms_eval.models"]
    (plugin / "entry_points.txt").write_text("[lmms_eval.models]\n" + "".join(f"{k} = {v}\n" for k, v in points.items()))
    return [str(REPO / "src"), str(root), str(deps), str(plugin.parent)]


def test_plugin_answers_lmms_eval_instances(lmms_path, tmp_path):
    """On InternVL3 and on Qwen3.5 (a hybrid cache reused across a video's requests)."""
    models = [(str(TINY_CHECKPOINTS[family](tmp_path / family)), frames) for family, frames in (("internvl", 4),
                                                                                                  ("qwen3_5", 8))]
    videos = [str(evaldata.BBB), str(evaldata.BBB), str(evaldata.PANCAKE)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(lmms_path)}
    done = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(models), json.dumps(videos)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    for result in json.loads(done.stdout.strip().splitlines()[-1]):
        assert result["listed"] and result["class"] == "LiteFrame" and result["refused"]
        assert result["encodes"] == [videos[0], videos[2]]  # two questions on one video: encoded once
        assert result["answers"] == result["direct"] and all(isinstance(a, str) for a in result["answers"])


def test_plugin_under_two_ranks_answers_each_request_once(lmms_path, tmp_path):
    tiny = save_tiny_internvl(tmp_path / "tiny")
    videos = [str(evaldata.BBB), str(evaldata.PANCAKE), str(evaldata.BBB), str(evaldata.PANCAKE), str(evaldata.BBB)]
    script = tmp_path / "ranks.py"
    script.write_text(RANKS)
    # what `accelerate launch --cpu --num_processes 2` sets up: torchrun's variables and ACCELERATE_USE_CPU
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(lmms_path), "ACCELERATE_USE_CPU": "true",
           "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1"}  # a rank that crashes prints where
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                           str(29400 + (os.getpid() + 500) % 1000), str(script), str(tiny), json.dumps(videos)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-6000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert [(r["rank"], r["world"]) for r in result["ranks"]] == [(0, 2), (1, 2)]
    answered = [int(i) for r in result["ranks"] for i in r["answered"]]
    assert sorted(answered) == list(range(len(videos)))  # every request answered, and once
    assert all(r["answered"] for r in result["ranks"])  # by both ranks
    merged = {int(i): a for r in result["ranks"] for i, a in r["answered"].items()}
    assert [merged[i] for i in range(len(videos))] == result["direct"]  # as one process answers them


def test_the_lmms_extra_installs_what_lmms_eval_needs():
    extra = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["lmms"]
    assert "lmms-eval==0.7.3" in extra and "filelock<4" in extra and "pytablewriter" in extra
