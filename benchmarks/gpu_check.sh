#!/usr/bin/env bash
# The GPU check (../shared/gpu/README.md): every script with --cuda --save-model, and the Atari scripts also with
# --buffer-device cuda, and one at --num-envs 4; each must exit 0. Then dqn_atari.py's SPS at N = 1, 4, 8, 16 with and
# without --buffer-device cuda. Not yet run: no GPU was lent to the sessions that wrote it.
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
SUFFIX=_n4 check dqn_atari.py $TINY --num-envs 4
# Speed: training-phase SPS of dqn_atari.py at N = 1, 4, 8, 16, with the replay frames in host memory and on the GPU
python3 benchmarks/atari_speed.py --device cuda --num-envs 1 4 8 16 --no-sb3 --memory-capacity 0 --learning-starts 5000 --train-steps 20000 --out "$OUT/gpu_speed.csv" 2>&1 | tee "$OUT/gpu_speed.txt"
python3 benchmarks/atari_speed.py --device cuda --num-envs 1 4 8 16 --no-sb3 --memory-capacity 0 --learning-starts 5000 --train-steps 20000 --extra "--buffer-device cuda" --out "$OUT/gpu_speed_bufcuda.csv" 2>&1 | tee "$OUT/gpu_speed_bufcuda.txt"
