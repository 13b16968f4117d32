#!/usr/bin/env bash
# The GPU check (../shared/gpu/README.md), sized for one call of at most 9 minutes: a lent GPU gives 15 minutes in
# all, and starting the machine takes part of that. Run it on the lent machine from the project root, with .whl/
# carried (bash ../shared/gpu/wheels.sh makes it); it writes under ${OUT:-gpu_out}. Correctness first, then speed:
#   1. the replay memory on the GPU: batches sampled from frames stored on the GPU, and from frames in pinned host
#      memory, equal the CPU's batches for the same slots, in every Atari script (the lines no CPU runs);
#   2. every script with --cuda --save-model, tiny counts, 6 at a time (16 cores); the Atari scripts also with
#      --buffer-device cuda, dqn_atari.py at --num-envs 4, and --bf16 (dqn_atari.py, rainbow; bootstrapped with
#      --buffer-device cuda); each must exit 0 with its evaluation done;
#   3. only while time is left (it stops starting new work at 450 s): training-phase SPS of dqn_atari.py at N = 1 and
#      8, with and without --buffer-device cuda, and SB3's DQN on the same settings; one round each, so these are
#      first figures, not claims (a claim needs 5 alternating rounds).
# Not yet run: no GPU has been lent to the sessions that wrote it.
set -uo pipefail
OUT=${OUT:-gpu_out}; mkdir -p "$OUT"; FAILED=
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 || exit 1
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"; } | tee "$OUT/gpu_env.txt"

# 1. The replay memory's GPU paths, against the CPU's batches for the same slots.
timeout 120 python3 - > "$OUT/gpu_buffer.txt" 2>&1 <<'PY'
import importlib, numpy as np, torch
cuda, cpu, failures = torch.device("cuda"), torch.device("cpu"), 0
for script in ["dqn_atari", "double_dqn_atari", "dueling_dqn_atari", "per_dqn_atari", "bootstrapped_dqn_atari", "rainbow_atari"]:
    module = importlib.import_module(script)
    rng = np.random.default_rng(0)
    buffers = {where: module.FrameReplayBuffer(200, (84, 84), 4, where, 3) for where in (cpu, cuda)}
    if script == "rainbow_atari":  # its n-step transitions (two gathers through the parent's get)
        buffers = {where: module.PrioritizedFrameReplayBuffer(200, (84, 84), 4, where, 3, 0.5, 1e-6, 3, 0.99) for where in (cpu, cuda)}
    obs = rng.integers(0, 256, (3, 4, 84, 84), dtype=np.uint8)
    for t in range(40):
        next_obs = rng.integers(0, 256, (3, 4, 84, 84), dtype=np.uint8)
        actions, ended = rng.integers(4, size=3), np.array([(t + k) % 7 == 6 for k in range(3)])
        for buffer in buffers.values():  # the same transitions in both
            buffer.add(obs, actions, np.ones(3, np.float32), next_obs, ended, np.zeros(3, bool))
        obs = next_obs
    i = np.flatnonzero(buffers[cpu]._is_valid(np.arange(buffers[cpu].capacity)))
    reference = buffers[cpu].get(i, cpu)
    for storage, batch in [("gpu", buffers[cuda].get(i, cuda)), ("pinned host", buffers[cpu].get(i, cuda))]:
        torch.cuda.synchronize()
        same = all(torch.equal(a.cpu(), b) for a, b in zip(batch, reference))
        on_gpu = all(x.device.type == "cuda" for x in batch)
        print(f"{script}: frames in {storage} memory, batch on the GPU: {'same as the CPU' if same else 'DIFFERENT'}")
        failures += not (same and on_gpu)
print(f"buffer check: {failures} failure(s)")
raise SystemExit(1 if failures else 0)
PY
echo "buffer check exit $?" | tee -a "$OUT/gpu_buffer.txt"
grep -q "buffer check: 0 failure" "$OUT/gpu_buffer.txt" || FAILED="buffer check"

# 2. Every script on the GPU, tiny counts, 6 at a time.
TINY="--env-id BreakoutNoFrameskip-v4 --cuda --save-model --total-timesteps 2000 --learning-starts 500 --buffer-size 1000 --eval-episodes 1"
{
  echo "dqn_cartpole.py --cuda --save-model --total-timesteps 3000 --learning-starts 500"
  for s in dqn_atari.py double_dqn_atari.py dueling_dqn_atari.py per_dqn_atari.py bootstrapped_dqn_atari.py rainbow_atari.py; do
    echo "$s $TINY"; echo "$s $TINY --buffer-device cuda"
  done
  echo "dqn_atari.py $TINY --num-envs 4"
  echo "dqn_atari.py $TINY --bf16"; echo "bootstrapped_dqn_atari.py $TINY --bf16 --buffer-device cuda"
  echo "rainbow_atari.py $TINY --bf16"
} > "$OUT/gpu_runs.txt"
echo "line,command,exit_code" > "$OUT/gpu_correctness.csv"
export OUT
# each run in a folder of its own (its runs/ and videos/ stay out of $OUT), 2 torch threads each: 6 x 2 of 16 cores
nl -ba -w1 -s' ' "$OUT/gpu_runs.txt" | tr '\n' '\0' | xargs -0 -P 6 -I{} bash -c '
  set -- {}; k=$1; shift; dir="/tmp/gpu_runs/run_$k"; log="$OUT/log_$k.txt"; mkdir -p "$dir"; root=$PWD
  (cd "$dir" && OMP_NUM_THREADS=2 timeout -k 10 200 python3 "$root/$1" "${@:2}" > "$log" 2>&1); rc=$?
  grep -q "evaluation over" "$log" || [ "$rc" != 0 ] || rc=99  # exit 0 without its evaluation: not done
  echo "$k,\"$*\",$rc" | tee -a "$OUT/gpu_correctness.csv"'
awk -F, 'NR > 1 && $NF != 0' "$OUT/gpu_correctness.csv" | grep -q . && FAILED="${FAILED:-} runs"

# 3. Speed, while time is left: one round of each, so first figures only. First dqn_atari.py against SB3's DQN at
# N = 1, then dqn_atari.py alone at N = 8, and at N = 1 and 8 with --buffer-device cuda.
speed() {
  [ "$SECONDS" -lt 450 ] || { echo "speed: out of time before $*" | tee -a "$OUT/gpu_speed.txt"; return; }
  timeout $((520 - SECONDS)) python3 benchmarks/atari_speed.py --device cuda --memory-capacity 0 --learning-starts 5000 \
    --train-steps 8000 --rounds 1 "$@" 2>&1 | tee -a "$OUT/gpu_speed.txt"
}
speed --num-envs 1 --out "$OUT/gpu_speed_n1_sb3.csv"
speed --num-envs 8 --no-sb3 --out "$OUT/gpu_speed_n8.csv"
speed --num-envs 1 8 --no-sb3 --extra "--buffer-device cuda" --out "$OUT/gpu_speed_bufcuda.csv"
echo "gpu_check done in $SECONDS s; failed: ${FAILED:-nothing}" | tee -a "$OUT/gpu_speed.txt"
[ -z "${FAILED:-}" ]
