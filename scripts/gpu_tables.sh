#!/usr/bin/env bash
# Every GPU table of docs/results/gpu/ in one run of at most 8 minutes on one H100/H200 (issue 13).
#
#   scripts/gpu_tables.sh [--dry-run] [OUT_DIR]      (default OUT_DIR: docs/results/gpu)
#
# Each table is written to OUT_DIR/<name>.md with the device, driver, torch version and date above it, as soon as it
# is measured; a step that fails or runs past its time limit is recorded as such and the next one runs.
# --dry-run runs the same steps on the CPU at tiny shapes (the tests run it), so the script is known to work before
# scarce GPU time is spent on it. PYTHON picks the interpreter (default: python).
set -uo pipefail
dry=0
if [ "${1:-}" = "--dry-run" ]; then dry=1; shift; fi
out=${1:-docs/results/gpu}
py=${PYTHON:-python}
mkdir -p "$out"

if ((dry)); then
  device=(--device cpu)
  # two archs, not nine, and untimed: building full-size models is most of a dry run's time (tests/test_arch.py
  # times tiny stand-ins through the same code, torch.compile included)
  arch=(bench arch --archs teacher,dwconv --frames 8 --size 56 --no-latency)
  arch_compile=("${arch[@]}" --compile)
  arch_qwen=(bench arch --model-family qwen2_5_vl --archs teacher,dwconv --frames 8 --size 112 --no-latency)
  reducers=(bench reducers --frames 8 --size 8 --channels 32 --repeats 1 --warmup 0 --dtype float32)
  e2e=(bench e2e --dense-frames 4 --frames 8 --encoders wap,student --repeats 1 --warmup 0 --new-tokens 2)
  e2e_qwen=(bench e2e --model-family qwen2_5_vl --dense-frames 4 --frames 8 --encoders wap,student --repeats 1
            --warmup 0 --new-tokens 2)
  e2e_prefill=(bench e2e --dense-frames 4 --frames 8 --encoders wap --prefills incremental,whole --repeats 1
               --warmup 0 --new-tokens 2)
  train=(bench train --steps 2 --batch-size 2 --workers 0)
  adapt=(bench adapt --frames 8 16 --steps 1)
  limit=300
else
  device=(--device cuda)
  arch=(bench arch --frames 256 --size 448 --dtype bfloat16 --repeats 20)
  arch_compile=(bench arch --archs teacher,dwconv --frames 256 --size 448 --dtype bfloat16 --repeats 20 --compile)
  # Qwen's ViT runs a Python loop over its attention windows: few repeats
  arch_qwen=(bench arch --model-family qwen2_5_vl --archs teacher,none,dwconv,dwconv-4x,dwconv-64x --frames 256
             --size 448 --dtype bfloat16 --repeats 3)
  reducers=(bench reducers --dtype bfloat16 --repeats 20 --warmup 5)
  e2e=(bench e2e --random-size 8b --dtype bfloat16 --dense-frames 8,16,32 --frames 64,128,256 --encoders wap,student
       --repeats 5 --warmup 2)
  e2e_qwen=(bench e2e --model-family qwen2_5_vl --random-size 7b --dtype bfloat16 --dense-frames 16,32,64
            --frames 128,256,512 --encoders wap,student --repeats 3 --warmup 1)
  # ask with the video prefilled chunk by chunk as it is encoded, against the prompt prefilled after it (issue 24)
  e2e_prefill=(bench e2e --random-size 8b --dtype bfloat16 --dense-frames 32 --frames 256,512 --encoders wap
               --prefills incremental,whole --repeats 5 --warmup 2)
  train=(bench train --steps 8 --batch-size 4)
  adapt=(bench adapt --frames 128 256 512 --steps 3)
  limit=150
fi

header() {
  "$py" - "$1" <<'PY'
import datetime, subprocess, sys
import torch
if torch.cuda.is_available():
    device = torch.cuda.get_device_name()
    driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                            capture_output=True, text=True).stdout.strip() or "unknown"
else:
    device, driver = "CPU (dry run: tiny shapes, the numbers mean nothing)", "none"
print(f"# {sys.argv[1]}\n\nDevice: {device}; driver {driver}; torch {torch.__version__}; "
      f"date {datetime.date.today().isoformat()}.\n")
PY
}

step() {  # step NAME ARGS...: one table, written even when the command fails
  local name=$1 file="$out/$1.md" start status
  shift
  start=$SECONDS
  {
    header "$name"
    echo "\`liteframe $*\`"
    echo
  } >"$file"
  timeout "$limit" "$py" -m liteframe.cli "$@" >>"$file" 2>"$out/.$name.err"
  status=$?
  if ((status)); then
    printf '\nFAILED (exit %s%s):\n\n```\n%s\n```\n' "$status" "$( ((status == 124)) && echo ", past ${limit}s")" \
      "$(tail -n 20 "$out/.$name.err")" >>"$file"
  fi
  rm -f "$out/.$name.err"
  echo "$name: exit $status in $((SECONDS - start)) s -> $file"
}

step arch "${arch[@]}" "${device[@]}"
step reducers "${reducers[@]}" "${device[@]}"
step e2e "${e2e[@]}" "${device[@]}"
step e2e-qwen "${e2e_qwen[@]}" "${device[@]}"
step arch-qwen "${arch_qwen[@]}" "${device[@]}"
step e2e-prefill "${e2e_prefill[@]}" "${device[@]}"
step train "${train[@]}" "${device[@]}"
step adapt "${adapt[@]}" "${device[@]}"
step arch-compile "${arch_compile[@]}" "${device[@]}"  # last: compiling may take long
