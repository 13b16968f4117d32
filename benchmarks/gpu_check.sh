#!/usr/bin/env bash
# The GPU check (../shared/gpu/README.md): every script with --cuda --save-model, and the Atari scripts also with
# --buffer-device cuda; each must exit 0. Not yet run: no GPU was lent to the session that wrote it.
# Run on the lent GPU machine from the project root, with .whl/ carried; writes under ${OUT:-gpu_out}.
set -uo pipefail
OUT=${OUT:-gpu_out}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 || exit 1
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"; } | tee "$OUT/gpu_env.txt"
echo "script,flags,exit_code" > "$OUT/gpu_correctness.csv"
check() { local s=$1; shift; timeout 300 python3 "$s" "$@" > "$OUT/log_$(basename "$s" .py)$SUFFIX.txt" 2>&1; local rc=$?
  echo "$s,\"$*\",$rc" | tee -a "$OUT/gpu_correctness.csv"; }
SUFFIX= check dqn_cartpole.py --cuda --save-model --total-timesteps 3000 --learning-starts 500
TINY="--env-id BreakoutNoFrameskip-v4 --cuda --save-model --total-timesteps 2000 --learning-starts 500 --buffer-size 1000 --eval-episodes 1"
for s in dqn_atari.py double_dqn_atari.py dueling_dqn_atari.py per_dqn_atari.py bootstrapped_dqn_atari.py; do
  SUFFIX= check $s $TINY; SUFFIX=_bufcuda check $s $TINY --buffer-device cuda
done
