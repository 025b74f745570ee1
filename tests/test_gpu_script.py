"""`scripts/gpu_tables.sh --dry-run`: the GPU script's every step on the CPU at tiny shapes, so that scarce GPU time
is never spent finding out that a step's command line is wrong. Each table file must carry the header (device,
driver, torch version, date) and a table, never a FAILED note."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).parents[1]
STEPS = ["arch", "reducers", "e2e", "e2e-qwen", "arch-qwen", "e2e-prefill", "train", "adapt", "arch-compile"]


def test_dry_run_writes_every_table_with_its_header(tmp_path):
    out = tmp_path / "gpu"
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_tables.sh"), "--dry-run", str(out)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert [line.split(":")[0] for line in done.stdout.splitlines()] == STEPS
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{s}.md" for s in STEPS)  # no stray error files
    for step in STEPS:
        text = (out / f"{step}.md").read_text()
        assert text.startswith(f"# {step}\n\nDevice: CPU (dry run")
        assert re.search(rf"driver none; torch {re.escape(torch.__version__)}; date \d{{4}}-\d\d-\d\d\.", text)
        assert "`liteframe bench " in text
        assert re.search(r"^\|.*\|\n\|[-:| ]+\|\n\|", text, re.M), f"{step}: no table:\n{text}"
        assert "FAILED" not in text, text
