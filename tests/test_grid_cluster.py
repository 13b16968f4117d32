"""benchmarks/grid.py on two Ray nodes (Ray's own test cluster, `ray.cluster_utils.Cluster`, both on this machine): a
run pinned to the second node by a custom resource works in --node-dir there and its results land in --out; a run
stopped on the second node keeps its checkpoint there, out of --out, and resumes there on the next invocation. Also: a run that
ends otherwise than 143 after the stop signal has failed."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import ROOT, TINY_ATARI

ray_cluster_utils = pytest.importorskip("ray.cluster_utils")

SECOND = {"second_node": 1}
ATARI = [*TINY_ATARI, *"--eval-episodes 0 --checkpoint-frequency 500".split()]  # checkpoints: an Atari script's


@pytest.fixture(scope="module")
def cluster():
    cluster = ray_cluster_utils.Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    second = cluster.add_node(num_cpus=1, num_gpus=1, resources=SECOND)  # a GPU as Ray counts it: none is used
    cluster.wait_for_nodes()
    yield cluster, second.node_id
    cluster.shutdown()


def grid(cluster, out, node_dir, seed, *flags, wait=True):
    command = [sys.executable, os.path.join(ROOT, "benchmarks", "grid.py"), "--scripts", "dqn_atari.py"]
    command += ["--env-ids", "BreakoutNoFrameskip-v4", "--seeds", str(seed), "--out", str(out)]
    command += ["--address", cluster.address, "--resources", json.dumps(SECOND), "--node-dir", str(node_dir)]
    command += ["--", *ATARI, *flags]
    if not wait:
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def checkpoints(folder):
    return sorted(folder.rglob("checkpoint.pt"))


def test_a_run_on_the_second_node_keeps_its_checkpoint_there_and_sends_its_results(cluster, tmp_path):
    cluster, second_node = cluster
    out, node_dir = tmp_path / "out", tmp_path / "second_node_disk"
    result = grid(cluster, out, node_dir, 1, "--total-timesteps", "600", "--save-model")
    assert result.returncode == 0, result.stdout + result.stderr
    run = out / "BreakoutNoFrameskip-v4__dqn_atari__1"
    record = json.loads((run / "run.json").read_text())
    assert record["returncode"] == 0 and not record["resumed"]
    assert (run / "curve.csv").is_file() and list(run.glob("runs/*/events.out.tfevents.*"))
    assert list(run.glob("runs/*/dqn_atari.pt"))  # the model travels, and so does the finished run's checkpoint,
    [checkpoint] = checkpoints(out)  # which leaves the replay memory out
    assert "replay" not in torch.load(checkpoint, weights_only=True)["loop"]
    node = json.loads((run / "node.json").read_text())
    assert node["node_id"] == second_node and node["checkpoint"]
    assert [path.parent.parent.parent for path in checkpoints(node_dir)] == [Path(node["folder"])]


def test_a_run_stopped_on_the_second_node_resumes_there(cluster, tmp_path):
    cluster, second_node = cluster
    out, node_dir = tmp_path / "out", tmp_path / "second_node_disk"
    long_run = grid(cluster, out, node_dir, 2, "--total-timesteps", "1000000", wait=False)
    deadline = time.time() + 120
    while not checkpoints(node_dir) and time.time() < deadline:  # its first checkpoint, on the second node
        time.sleep(0.5)
    assert checkpoints(node_dir), "no checkpoint on the second node"
    long_run.send_signal(signal.SIGTERM)
    stdout, stderr = long_run.communicate(timeout=120)
    assert long_run.returncode == 143, stdout + stderr
    run = out / "BreakoutNoFrameskip-v4__dqn_atari__2"
    assert not (run / "run.json").exists() and checkpoints(out) == []
    [checkpoint] = checkpoints(node_dir)
    stopped_at = torch.load(checkpoint, weights_only=True, map_location="cpu")["loop"]["step"]

    again = grid(cluster, out, node_dir, 2, "--total-timesteps", str(stopped_at + 100))
    assert again.returncode == 0, again.stdout + again.stderr
    record = json.loads((run / "run.json").read_text())
    assert record["resumed"] and record["command"][1] == "--resume"
    assert f"from step {stopped_at:,}" in (run / "stdout.log").read_text()
    assert json.loads((run / "node.json").read_text())["node_id"] == second_node


def test_a_cluster_with_gpus_needs_gpus_per_run_or_no_cuda(cluster, tmp_path):
    cluster, _ = cluster
    command = [sys.executable, os.path.join(ROOT, "benchmarks", "grid.py"), "--scripts", "dqn_cartpole.py"]
    command += ["--env-ids", "CartPole-v1", "--seeds", "1", "--out", str(tmp_path), "--address", cluster.address]
    result = subprocess.run([*command, "--", "--total-timesteps", "500"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "error: Ray counts GPUs here, and dqn_cartpole.py take one by default" in result.stderr
    assert not list(tmp_path.glob("*/run.json"))


def test_a_run_that_ends_otherwise_than_143_after_the_stop_signal_has_failed():
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    import grid as grid_py  # benchmarks/grid.py

    assert grid_py.outcome({"returncode": 143, "stopped": True}) == "stopped"  # saved a checkpoint and stopped
    assert grid_py.outcome({"returncode": None, "stopped": True}) == "stopped"  # queued: never started
    assert grid_py.outcome({"returncode": -15, "stopped": True}) == "stopped"  # the SIGTERM came during its start-up
    assert grid_py.outcome({"returncode": 1, "stopped": True}) == "failed"  # crashed while stopping
    assert grid_py.outcome({"returncode": -9, "stopped": True}) == "failed"  # killed
    assert grid_py.outcome({"returncode": 143, "stopped": False}) == "failed"  # a SIGTERM that was not the grid's
    assert grid_py.outcome({"returncode": 0, "stopped": True}) == "finished"  # it ended as the signal came


def test_a_restarted_node_is_found_again_at_its_address():
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    import grid as grid_py  # benchmarks/grid.py

    held = {"node_id": "old", "ip": "10.0.0.2", "host": "b", "folder": "/x", "checkpoint": True}
    a, b = {"NodeID": "a", "NodeManagerAddress": "10.0.0.1"}, {"NodeID": "new", "NodeManagerAddress": "10.0.0.2"}
    assert grid_py.find_node(held, [a, b]) is b  # a new id at the same address: the same machine, its disk
    assert grid_py.find_node({**held, "node_id": "a"}, [a, b]) is a
    assert grid_py.find_node(held, [a]) is None  # gone
    assert grid_py.find_node(held, [a, b, {**b, "NodeID": "other"}]) is None  # two at that address: which is it?
