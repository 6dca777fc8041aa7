"""Every shipped cluster file, validated offline, and a broken copy of each rejected.

- Slurm (cluster/slurm/*.sbatch): bash -n, shellcheck where installed, the #SBATCH
  directives against sbatch's options and value types, and each script run for real as a
  one- or two-node allocation stand-in: srun, scontrol, hostname, ray, python3 and
  hpcbench are shims on PATH that log their arguments and exit with a chosen status.
- Ray cluster launcher (cluster/aws.yaml, gcp.yaml): Ray's own prepare_config +
  validate_config, plus hpcbench's checks of what Ray leaves open (node_config keys).
- Kubernetes (cluster/kubernetes/): RayJob and RayCluster against KubeRay's vendored CRD
  schemas in strict mode (as kubeconform -strict), the PersistentVolumeClaim against a
  small structural schema.
- cluster/Dockerfile and cluster/README.md: what the other files rely on them for.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml

from tests.conftest import REPO

CLUSTER = REPO / "cluster"
SLURM = CLUSTER / "slurm"
SCRIPTS = sorted(SLURM.glob("*.sbatch"))
RAY_CONFIGS = [CLUSTER / "aws.yaml", CLUSTER / "gcp.yaml"]
KUBE = CLUSTER / "kubernetes"
CRD_SCHEMAS = {
    "RayJob": KUBE / "schemas" / "rayjob.v1.json",
    "RayCluster": KUBE / "schemas" / "raycluster.v1.json",
}
MANIFESTS = {"RayJob": KUBE / "rayjob.yaml", "RayCluster": KUBE / "raycluster.yaml"}
PVC = KUBE / "pvc.yaml"
DOCKERFILE = CLUSTER / "Dockerfile"
# The two images cluster/Dockerfile's build lines make; every config pulls one of them.
CPU_IMAGE = "registry.example.com/hpcbench:cpu"
GPU_IMAGE = "registry.example.com/hpcbench:cu128"
ROOT_MOUNT = "/mnt/hpcbench"

Mutation = Callable[[Any], None]


def _set(path: str, value: Any) -> Mutation:
    """A mutation that sets the key at a dotted path (list indices as numbers)."""

    def mutate(doc: Any) -> None:
        *parents, last = path.split(".")
        node = doc
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        node[last] = value

    return mutate


def _delete(path: str) -> Mutation:
    def mutate(doc: Any) -> None:
        *parents, last = path.split(".")
        node = doc
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        del node[last]

    return mutate


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# --------------------------------------------------------------------------- Slurm

# sbatch's long options (Slurm 24.x `sbatch --help`/man page); a directive outside this
# set is a typo that sbatch would reject at submission.
SBATCH_OPTIONS = _words(
    """account acctg-freq array batch bb bbf begin chdir cluster-constraint clusters
    comment constraint container contiguous core-spec cores-per-socket cpu-freq
    cpus-per-gpu cpus-per-task deadline delay-boot dependency distribution error exclude
    exclusive export export-file extra extra-node-info get-user-env gid gpu-bind gpu-freq
    gpus gpus-per-node gpus-per-socket gpus-per-task gres gres-flags hint hold ignore-pbs
    input job-name kill-on-invalid-dep licenses mail-type mail-user mcs-label mem
    mem-bind mem-per-cpu mem-per-gpu mincpus network nice no-kill no-requeue nodefile
    nodelist nodes ntasks ntasks-per-core ntasks-per-gpu ntasks-per-node
    ntasks-per-socket open-mode output overcommit oversubscribe parsable partition power
    prefer priority profile propagate qos quiet reboot requeue reservation
    signal sockets-per-node spread-job switches test-only thread-spec threads-per-core
    time time-min tmp tres-per-task uid use-min-nodes verbose wait wait-all-nodes wckey
    wrap"""
)
_INT = re.compile(r"\d+")
_SBATCH_VALUES = {
    "nodes": re.compile(r"\d+(-\d+)?"),
    "ntasks-per-node": _INT,
    "cpus-per-task": _INT,
    "gpus-per-node": re.compile(r"([A-Za-z0-9_]+:)?\d+"),
    "mem": re.compile(r"\d+[KMGT]?"),
    "mem-per-cpu": re.compile(r"\d+[KMGT]?"),
    "time": re.compile(r"(\d+-)?\d+(:\d{2}){0,2}"),
}
_REQUIRED_DIRECTIVES = {"job-name", "nodes", "ntasks-per-node", "cpus-per-task", "mem", "time"}
_SHARED_BLOCK = re.compile(
    r"^# ---- Ray on the allocation.*?^# ---- end of the shared block ----$", re.M | re.S
)


def sbatch_directives(text: str) -> list[tuple[str, str | None]]:
    """The #SBATCH directives of a script header, as (option, value or None)."""
    found = []
    for line in text.splitlines():
        if line.startswith("#SBATCH"):
            match = re.fullmatch(r"#SBATCH\s+--([a-z-]+)(?:=(\S+))?\s*(#.*)?", line)
            found.append((match[1], match[2]) if match else (line, None))
    return found


def slurm_script_errors(path: Path) -> list[str]:
    """What is wrong with a Slurm script: bash syntax, unknown or ill-typed directives."""
    errors = []
    bash = shutil.which("bash")
    assert bash is not None
    syntax = subprocess.run([bash, "-n", str(path)], capture_output=True, text=True)
    if syntax.returncode:
        errors.append(f"bash -n: {syntax.stderr.strip()}")
    directives = sbatch_directives(path.read_text())
    for option, value in directives:
        if option not in SBATCH_OPTIONS:
            errors.append(f"unknown #SBATCH option {option!r}")
        elif option in _SBATCH_VALUES and not (value and _SBATCH_VALUES[option].fullmatch(value)):
            errors.append(f"#SBATCH --{option}: bad value {value!r}")
    missing = _REQUIRED_DIRECTIVES - {option for option, _ in directives}
    errors += [f"no #SBATCH --{option}" for option in sorted(missing)]
    return errors


def test_there_is_a_slurm_script_per_command() -> None:
    assert {p.stem for p in SCRIPTS} == {"generate", "train", "run"}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_slurm_script_parses_and_its_directives_are_sbatch_options(script: Path) -> None:
    assert slurm_script_errors(script) == []
    directives = dict(sbatch_directives(script.read_text()))
    assert directives["ntasks-per-node"] == "1"  # one Ray node per Slurm node
    # GPUs where the script trains on them (hpcbench run has no --gpus-per-trial).
    assert ("gpus-per-node" in directives) == (script.stem == "train")
    # Shared nodes are the default; --exclusive is the user's choice on the sbatch line.
    assert "exclusive" not in directives


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_slurm_script_passes_shellcheck(script: Path) -> None:
    result = subprocess.run(
        ["shellcheck", "--shell=bash", str(script)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("#SBATCH --cpus-per-task=16", "#SBATCH --cpus-per-tasks=16", "unknown #SBATCH"),
        ("#SBATCH --cpus-per-task=16", "#SBATCH --cpus-per-task=sixteen", "bad value"),
        ("#SBATCH --time=", "#SBATCH --time=4h", "bad value"),
        ("#SBATCH --mem=", "#SBATCH --memory=", "unknown #SBATCH"),
        ("trap stop_ray EXIT", "trap stop_ray EXIT (", "bash -n"),
    ],
    ids=["unknown-option", "wrong-type", "bad-time", "misspelt-mem", "syntax"],
)
def test_a_broken_slurm_script_is_rejected(
    tmp_path: Path, old: str, new: str, expected: str
) -> None:
    for script in SCRIPTS:
        text = script.read_text()
        assert old in text
        broken = tmp_path / script.name
        broken.write_text(text.replace(old, new, 1))
        assert any(expected in error for error in slurm_script_errors(broken)), script.name


def test_slurm_scripts_share_one_ray_block_and_never_ray_stop() -> None:
    blocks = set()
    for script in SCRIPTS:
        text = script.read_text()
        block = _SHARED_BLOCK.search(text)
        assert block is not None, script.name
        blocks.add(block[0])
        # No `set -e`: every failure must still reach the EXIT trap that stops Ray.
        assert re.search(r"^set -uo pipefail$", text, re.M)
        assert not re.search(r"^\s*set -[a-z]*e", text, re.M)
        # Validation comes before any node starts Ray. (The earlier literal check for
        # `hpcbench generate "$study" --address` is gone: the study's options now follow
        # it as "$@"; the tests below run the scripts and check the real arguments.)
        assert text.index("hpcbench validate") < text.index("ray start --head")
        # Never a blanket `ray stop` (it kills every Ray of the user on the node, other
        # jobs' included: seen here), nor `ray symmetric-run` (refuses a node where any
        # user's Ray runs, exits 0 when the head's `ray start` fails, and ray-stops).
        assert not re.search(r"^\s*(ray stop|.*ray symmetric-run)", text, re.M)
        assert "RAY_AUTH_MODE=token" in text
    assert len(blocks) == 1, "the shared Ray block differs between the scripts"


# Each shim logs its name and arguments, tab-separated, one line a call, in one write
# (shims run concurrently: separate writes of one line could interleave).
SHIM_LOGGER = (
    r"""line=${0##*/}; for arg in "$@"; do line+=$'\t'$arg; done"""
    "\n"
    r"""printf '%s\n' "$line" >>"$SHIM_LOG" """
)
SHIMS = {
    # srun runs its command here, as the one node of a stand-in allocation.
    "srun": 'while [[ $# -gt 0 && $1 == -* ]]; do shift; done\nexec "$@"',
    "scontrol": '[[ "$1 $2" == "show hostnames" ]] && tr , "\\n" <<<"$3"',
    "hostname": '[[ ${1:-} == --ip-address ]] && echo "${SHIM_IP:-10.0.0.1}" || echo node1',
    # `ray start --block` blocks until SIGTERM and logs that it was stopped; the head fails
    # at once with SHIM_HEAD_FAILS; `ray health-check` answers with SHIM_HEALTH.
    "ray": """case $1 in
health-check) exit "${SHIM_HEALTH:-0}" ;;
start)
    role=worker
    for arg in "$@"; do
        [[ $arg == --head ]] && role=head
        [[ $arg == --temp-dir=* ]] && mkdir -p "${arg#--temp-dir=}"
    done
    [[ $role == head && -n ${SHIM_HEAD_FAILS:-} ]] && exit 1
    trap 'printf "ray-stopped\\t%s\\n" "$role" >>"$SHIM_LOG"; exit 0' TERM
    printf "ray-blocking\\t%s\\n" "$role" >>"$SHIM_LOG"
    while :; do sleep 0.05; done ;;
esac""",
    # The wait for the nodes ($2 of them): returns once every `ray start` shim is up (as
    # the real one returns once every node has registered), with SHIM_JOIN as its status.
    "python3": """cat >/dev/null
for _ in {1..100}; do
    (($(grep -c ^ray-blocking "$SHIM_LOG") >= $2)) && break
    sleep 0.05
done
[[ ${SHIM_JOIN:-0} == 0 ]] || echo "only 1 of $2 nodes joined" >&2
exit "${SHIM_JOIN:-0}\"""",
    # hpcbench SUBCOMMAND exits with $SHIM_EXIT_SUBCOMMAND (default 0).
    "hpcbench": 'status=SHIM_EXIT_$1\nexit "${!status:-0}"',
}
HEAD = "10.0.0.1:12000"  # SHIM_IP and the port block of job 4242: 10000 + 4242 % 20 * 1000


@dataclass
class SlurmRun:
    status: int
    stdout: str
    stderr: str
    log: list[list[str]]
    ray_tmp: Path
    leftover: bool  # processes of the run still alive after the script ended

    def calls(self, name: str) -> list[list[str]]:
        return [entry[1:] for entry in self.log if entry[0] == name]

    def index(self, *prefix: str) -> int:
        return next(i for i, entry in enumerate(self.log) if entry[: len(prefix)] == list(prefix))


def _kill_group(pgid: int) -> bool:
    """Kill what is left of a process group; whether anything was."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def slurm(tmp_path: Path) -> Callable[..., SlurmRun]:
    """Run a cluster/slurm script in a stand-in allocation (node1, node2 by default)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in SHIMS.items():
        shim = bin_dir / name
        shim.write_text(f"#!/usr/bin/env bash\n{SHIM_LOGGER}\n{body}\n")
        shim.chmod(0o755)
    log = tmp_path / "shims.log"

    def run(script: str, *args: str, **env: str) -> SlurmRun:
        log.write_text("")
        base = {
            "PATH": f"{bin_dir}:/usr/bin:/bin",
            "HOME": str(tmp_path),
            "LANG": "C.UTF-8",
            "SHIM_LOG": str(log),
            "SLURM_JOB_ID": "4242",
            "SLURM_JOB_NODELIST": "node1,node2",
            "SLURM_NNODES": "2",
            "SLURM_CPUS_PER_TASK": "4",
            "SLURM_GPUS_ON_NODE": "1",
            "SLURM_MEM_PER_NODE": "1000",
            "SLURMD_NODENAME": "node1",
            "HPCBENCH_RAY_TMPDIR": str(tmp_path),
            "HPCBENCH_RAY_WAIT": "5",
        }
        # Its own process group, and files rather than pipes: a script that leaves a
        # `ray start` shim running returns at once, and the leftovers are counted and killed.
        out, err = tmp_path / "stdout", tmp_path / "stderr"
        with out.open("w") as stdout, err.open("w") as stderr:
            process = subprocess.Popen(
                ["bash", str(SLURM / script), *args],
                env=base | env,
                stdout=stdout,
                stderr=stderr,
                cwd=tmp_path,
                start_new_session=True,
            )
            try:
                status = process.wait(timeout=30)
            finally:
                leftover = _kill_group(process.pid)
        assert not leftover, f"{script} left processes running: {err.read_text()}"
        entries = [line.split("\t") for line in log.read_text().splitlines()]
        return SlurmRun(
            status,
            out.read_text(),
            err.read_text(),
            entries,
            tmp_path / "hpcbench-ray-4242",
            leftover,
        )

    return run


RAY_OPTIONS = [
    "--num-cpus=4",
    "--num-gpus=1",
    "--disable-usage-stats",
    "--dashboard-port=12001",
    "--node-manager-port=12002",
    "--object-manager-port=12003",
    "--dashboard-agent-listen-port=12004",
    "--dashboard-agent-grpc-port=12005",
    "--metrics-export-port=12006",
    "--runtime-env-agent-port=12007",
    "--min-worker-port=12100",
    "--max-worker-port=12999",
    f"--object-store-memory={1000 * 1024 * 1024 * 3 // 10}",  # 30 % of --mem=1000M
]


def test_run_sbatch_starts_ray_on_every_node_runs_the_study_and_stops_ray(
    slurm: Callable[..., SlurmRun],
) -> None:
    run = slurm("run.sbatch", "studies/quickstart.yaml", "--root", "/shared/runs")
    assert run.status == 0, run.stderr
    assert run.log[0] == ["hpcbench", "validate", "studies/quickstart.yaml"]
    assert run.calls("scontrol") == [["show", "hostnames", "node1,node2"]]
    (head,) = [c for c in run.calls("srun") if "--head" in c]
    (workers,) = [c for c in run.calls("srun") if "--exclude=node1" in c]
    assert head[:4] == ["--nodes=1", "--ntasks=1", "--nodelist=node1", "--cpus-per-task=4"]
    assert workers[:5] == [
        "--nodes=1",
        "--ntasks=1",
        "--ntasks-per-node=1",
        "--exclude=node1",
        "--cpus-per-task=4",
    ]
    starts = [c for c in run.calls("ray") if c[0] == "start"]
    (head_start,) = [c for c in starts if "--head" in c]
    (worker_start,) = [c for c in starts if "--head" not in c]
    assert head_start[:4] == ["start", "--head", "--node-ip-address=10.0.0.1", "--port=12000"]
    assert worker_start[:2] == ["start", f"--address={HEAD}"]
    for start in (head_start, worker_start):
        assert set(RAY_OPTIONS) <= set(start)
        assert f"--temp-dir={run.ray_tmp}" in start
        assert start[-1] == "--block"
    assert ["health-check", f"--address={HEAD}"] in run.calls("ray")
    assert run.calls("python3") == [["-", "2", "5"]]  # wait for 2 nodes, 5 s at most
    assert run.calls("hpcbench")[-1] == [
        "run",
        "studies/quickstart.yaml",
        "--root",
        "/shared/runs",
        "--address",
        HEAD,
    ]
    # Ray is stopped on both nodes after the study, by ending its own steps only.
    ran = run.index("hpcbench", "run")
    assert run.index("ray-stopped", "head") > ran
    assert run.index("ray-stopped", "worker") > ran
    assert ["stop"] not in [call[:1] for call in run.calls("ray")]
    assert "hpcbench: Ray stopped" in run.stdout
    assert not run.ray_tmp.exists()  # removed after a success


def test_a_failing_generate_still_stops_ray_and_fails_the_job(
    slurm: Callable[..., SlurmRun],
) -> None:
    run = slurm("generate.sbatch", "studies/quickstart.yaml", SHIM_EXIT_generate="3")
    assert run.status == 3
    generated = run.index("hpcbench", "generate")
    assert run.log[generated][2:] == ["studies/quickstart.yaml", "--address", HEAD]
    assert run.index("ray-stopped", "head") > generated
    assert run.index("ray-stopped", "worker") > generated
    assert run.ray_tmp.is_dir()  # kept after a failure: the head's Ray logs


def test_train_sbatch_gives_generate_the_root_and_smoke_and_train_everything(
    slurm: Callable[..., SlurmRun],
) -> None:
    options = ["--root", "/shared/runs", "--gpus-per-trial", "1", "--smoke"]
    run = slurm("train.sbatch", "s.yaml", *options)
    assert run.status == 0, run.stderr
    assert run.calls("hpcbench") == [
        ["validate", "s.yaml"],
        ["generate", "s.yaml", "--root", "/shared/runs", "--smoke", "--quiet", "--address", HEAD],
        ["train", "s.yaml", *options, "--address", HEAD],
    ]
    assert run.index("ray-stopped", "head") > run.index("hpcbench", "train")


def test_train_sbatch_does_not_train_after_a_failed_generate(
    slurm: Callable[..., SlurmRun],
) -> None:
    run = slurm("train.sbatch", "s.yaml", "--root=/r", SHIM_EXIT_generate="2")
    assert run.status == 2
    assert [c[:2] for c in run.calls("hpcbench")] == [
        ["validate", "s.yaml"],
        ["generate", "s.yaml"],
    ]
    assert "--root=/r" in run.calls("hpcbench")[1]
    assert run.index("ray-stopped", "worker") > run.index("hpcbench", "generate")


def test_an_invalid_study_fails_before_ray_starts(slurm: Callable[..., SlurmRun]) -> None:
    run = slurm("run.sbatch", "bad.yaml", SHIM_EXIT_validate="1")
    assert run.status == 1
    assert run.log == [["hpcbench", "validate", "bad.yaml"]]


def test_a_head_that_does_not_start_fails_the_job(slurm: Callable[..., SlurmRun]) -> None:
    run = slurm("run.sbatch", "s.yaml", SHIM_HEAD_FAILS="1", SHIM_HEALTH="1")
    assert run.status == 1
    assert "the Ray head did not start" in run.stderr
    assert len(run.calls("srun")) == 1  # no workers, no study
    assert [c[0] for c in run.calls("hpcbench")] == ["validate"]


def test_nodes_that_do_not_join_fail_the_job_and_ray_is_stopped(
    slurm: Callable[..., SlurmRun],
) -> None:
    run = slurm("run.sbatch", "s.yaml", SHIM_JOIN="1")
    assert run.status == 1
    assert "only 1 of 2 nodes joined" in run.stderr
    assert [c[0] for c in run.calls("hpcbench")] == ["validate"]
    assert {e[1] for e in run.log if e[0] == "ray-stopped"} == {"head", "worker"}


def test_a_loopback_head_address_is_refused_on_several_nodes_only(
    slurm: Callable[..., SlurmRun],
) -> None:
    refused = slurm("run.sbatch", "s.yaml", SHIM_IP="127.0.1.1")
    assert refused.status == 1
    assert "loopback address" in refused.stderr
    assert refused.calls("srun") == []
    # One node, its count and name read from the node list (scontrol) this time.
    single = slurm(
        "run.sbatch",
        "s.yaml",
        SHIM_IP="127.0.1.1",
        SLURM_JOB_NODELIST="node7",
        SLURM_NNODES="",
        SLURMD_NODENAME="",
    )
    assert single.status == 0, single.stderr
    assert single.calls("scontrol") == [["show", "hostnames", "node7"]]
    (head,) = single.calls("srun")  # the head only
    assert "--nodelist=node7" in head
    assert single.calls("python3") == [["-", "1", "5"]]
    assert single.calls("hpcbench")[-1][-1] == "127.0.1.1:12000"


# ------------------------------------------------------------ Ray cluster launcher

# EC2 RunInstances and GCE instances.insert fields (boto3 / compute v1 reference). Ray's
# schema leaves node_config open, so a misspelt key would only fail inside `ray up`.
_EC2_KEYS = _words("""AdditionalInfo BlockDeviceMappings CapacityReservationSpecification
ClientToken CpuOptions CreditSpecification DisableApiStop DisableApiTermination
EbsOptimized EnablePrimaryIpv6 EnclaveOptions HibernationOptions IamInstanceProfile ImageId
InstanceInitiatedShutdownBehavior InstanceMarketOptions InstanceType Ipv6AddressCount
Ipv6Addresses KernelId KeyName LaunchTemplate LicenseSpecifications MaintenanceOptions
MetadataOptions Monitoring NetworkInterfaces NetworkPerformanceOptions Placement
PrivateDnsNameOptions PrivateIpAddress RamdiskId SecurityGroupIds SecurityGroups SubnetId
SubnetIds TagSpecifications UserData""")
_GCE_KEYS = _words("""advancedMachineFeatures canIpForward confidentialInstanceConfig description
disks displayDevice guestAccelerators hostname keyRevocationActionType labels machineType
metadata minCpuPlatform networkInterfaces networkPerformanceConfig params
reservationAffinity resourcePolicies scheduling serviceAccounts shieldedInstanceConfig
tags""")
_GCE_SCHEDULING = _words("""automaticRestart availabilityDomain hostErrorTimeoutSeconds
instanceTerminationAction localSsdRecoveryTimeout maxRunDuration minNodeCpus
nodeAffinities onHostMaintenance onInstanceStopAction preemptible provisioningModel
terminationTime""")
NODE_CONFIG_SCHEMAS: dict[str, dict[str, Any]] = {
    "aws": {
        "type": "object",
        "required": ["InstanceType"],
        "additionalProperties": False,
        "properties": {key: {} for key in _EC2_KEYS}
        | {
            "InstanceType": {"type": "string"},
            "InstanceMarketOptions": {
                "type": "object",
                "additionalProperties": False,
                "properties": {"MarketType": {"enum": ["spot", "capacity-block"]}},
            },
            "BlockDeviceMappings": {"type": "array", "items": {"type": "object"}},
        },
    },
    "gcp": {
        "type": "object",
        "required": ["machineType", "disks"],
        "additionalProperties": False,
        "properties": {key: {} for key in _GCE_KEYS}
        | {
            "machineType": {"type": "string"},
            "disks": {"type": "array", "items": {"type": "object"}, "minItems": 1},
            "scheduling": {  # an object in the API (Ray's own defaults.yaml has a list)
                "type": "object",
                "additionalProperties": False,
                "properties": {key: {} for key in _GCE_SCHEDULING}
                | {"provisioningModel": {"enum": ["STANDARD", "SPOT"]}},
            },
            "guestAccelerators": {"type": "array", "items": {"type": "object"}},
        },
    },
}


def ray_config_errors(raw: dict[str, Any]) -> None:
    """Raise if Ray's launcher or hpcbench's checks reject a cluster config."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(copy.deepcopy(raw)))
    provider = raw["provider"]["type"]
    types = raw["available_node_types"]
    for name, node_type in types.items():
        jsonschema.validate(node_type["node_config"], NODE_CONFIG_SCHEMAS[provider])
        fits = node_type.get("min_workers", 0) <= node_type.get("max_workers", 0)
        if name != raw["head_node_type"] and not fits:
            raise ValueError(f"{name}: min_workers > max_workers")


def _worker_images(raw: dict[str, Any]) -> dict[str, str]:
    default = raw["docker"].get("worker_image", raw["docker"]["image"])
    return {
        name: node_type.get("docker", {}).get("worker_image", default)
        for name, node_type in raw["available_node_types"].items()
        if name != raw["head_node_type"]
    }


@pytest.mark.parametrize("path", RAY_CONFIGS, ids=lambda p: p.name)
def test_ray_cluster_config_is_valid(path: Path) -> None:
    raw = yaml.safe_load(path.read_text())
    ray_config_errors(raw)
    # `ray up` merges a config over the provider's defaults.yaml key by key: each command
    # list must be written out, or Ray's defaults (a nightly wheel) would run.
    for key in (
        "setup_commands",
        "head_setup_commands",
        "worker_setup_commands",
        "head_start_ray_commands",
        "worker_start_ray_commands",
        "initialization_commands",
        "file_mounts",
    ):
        assert key in raw, key
    types = raw["available_node_types"]
    workers = {n: t for n, t in types.items() if n != raw["head_node_type"]}
    gpu = {n for n, t in workers.items() if t["resources"].get("GPU", 0) >= 1}
    assert gpu and set(workers) - gpu  # CPU and GPU worker types
    for node_type in workers.values():  # spot where the provider offers it
        config = node_type["node_config"]
        if raw["provider"]["type"] == "aws":
            assert config["InstanceMarketOptions"]["MarketType"] == "spot"
        else:
            assert config["scheduling"]["provisioningModel"] == "SPOT"
    images = _worker_images(raw)
    assert raw["docker"]["image"] == CPU_IMAGE
    assert {images[n] for n in gpu} == {GPU_IMAGE}
    assert {images[n] for n in set(workers) - gpu} == {CPU_IMAGE}
    # torch first, then hpcbench from the mounted checkout.
    setup = raw["setup_commands"]
    torch_at = next(i for i, c in enumerate(setup) if "pip install torch==" in c)
    project_at = next(i for i, c in enumerate(setup) if "pip install -e ~/hpcbench" in c)
    assert torch_at < project_at
    assert f"torch=={dockerfile_args()['TORCH_VERSION']}" in setup[torch_at]
    # The mounts exist in the checkout and carry what `pip install -e` needs.
    mounts = raw["file_mounts"]
    for local in mounts.values():
        if not local.startswith("~"):
            assert (REPO / local).exists(), local
    assert {"~/hpcbench/hpcbench", "~/hpcbench/pyproject.toml"} <= set(mounts)
    assert mounts["~/.ray/auth_token"] == "~/.ray/auth_token"
    # The shared root: mounted on the VM, handed to the container.
    options = " ".join(raw["docker"]["run_options"])
    assert f"--volume {ROOT_MOUNT}:{ROOT_MOUNT}" in options
    assert f"HPCBENCH_ROOT={ROOT_MOUNT}/runs" in options
    assert any(ROOT_MOUNT in c for c in raw["initialization_commands"])


RAY_CONFIG_MUTATIONS: dict[str, tuple[Mutation, type[Exception]]] = {
    "unknown-top-level-key": (_set("max_worker", 3), jsonschema.ValidationError),
    "unknown-node-type-key": (
        _set("available_node_types.cpu.min_worker", 1),
        jsonschema.ValidationError,
    ),
    "unknown-docker-key": (_set("docker.imag", CPU_IMAGE), jsonschema.ValidationError),
    "resource-as-string": (
        _set("available_node_types.cpu.resources.CPU", "32"),
        jsonschema.ValidationError,
    ),
    "max-workers-as-string": (_set("max_workers", "ten"), jsonschema.ValidationError),
    "head-type-missing": (_set("head_node_type", "head-node"), ValueError),
    # Beyond Ray's schema: a node_config typo and the GCE scheduling shape.
    "node-config-typo": (
        _set("available_node_types.gpu.node_config.machineTyp", "x"),
        jsonschema.ValidationError,
    ),
    "min-over-max-workers": (_set("available_node_types.gpu.min_workers", 5), ValueError),
}


@pytest.mark.parametrize("path", RAY_CONFIGS, ids=lambda p: p.name)
@pytest.mark.parametrize("mutation", sorted(RAY_CONFIG_MUTATIONS))
def test_a_broken_ray_cluster_config_is_rejected(path: Path, mutation: str) -> None:
    raw = yaml.safe_load(path.read_text())
    mutate, error = RAY_CONFIG_MUTATIONS[mutation]
    mutate(raw)
    with pytest.raises(error):
        ray_config_errors(raw)


@pytest.mark.parametrize("path", RAY_CONFIGS, ids=lambda p: p.name)
def test_a_ray_cluster_config_with_a_mistyped_spot_setting_is_rejected(path: Path) -> None:
    raw = yaml.safe_load(path.read_text())
    config = raw["available_node_types"]["cpu"]["node_config"]
    if raw["provider"]["type"] == "aws":
        config["InstanceMarketOptions"] = {"MarketType": "Spot"}
    else:
        config["scheduling"] = [{"preemptible": True}]  # the list form of Ray's defaults
    with pytest.raises(jsonschema.ValidationError):
        ray_config_errors(raw)


# ------------------------------------------------------------------- Kubernetes


def strict(schema: Any) -> Any:
    """kubeconform -strict: close every object schema that lists properties.

    ``additionalProperties: false`` is added where a schema has ``properties`` and says
    nothing about ``additionalProperties``; objects marked
    ``x-kubernetes-preserve-unknown-fields`` stay open, as the API server keeps them.
    """
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    closed = {key: strict(value) for key, value in schema.items()}
    if (
        "properties" in closed
        and "additionalProperties" not in closed
        and not closed.get("x-kubernetes-preserve-unknown-fields")
    ):
        closed["additionalProperties"] = False
    return closed


def crd_validator(kind: str, *, strict_mode: bool = True) -> Any:
    schema = json.loads(CRD_SCHEMAS[kind].read_text())
    return jsonschema.Draft4Validator(strict(schema) if strict_mode else schema)


def manifest_errors(doc: Any, *, strict_mode: bool = True) -> list[str]:
    """Schema errors of a KubeRay manifest (RayJob or RayCluster) or the PVC."""
    validator = (
        crd_validator(doc["kind"], strict_mode=strict_mode)
        if doc.get("kind") in CRD_SCHEMAS
        else jsonschema.Draft4Validator(PVC_SCHEMA)
    )
    return [
        f"{'.'.join(map(str, error.absolute_path))}: {error.message}"
        for error in validator.iter_errors(doc)
    ]


def test_strict_closes_objects_but_keeps_preserve_unknown_fields_open() -> None:
    schema = strict(
        {
            "type": "object",
            "properties": {
                "closed": {"type": "object", "properties": {"a": {"type": "integer"}}},
                "open": {
                    "type": "object",
                    "x-kubernetes-preserve-unknown-fields": True,
                    "properties": {"a": {"type": "integer"}},
                },
                "map": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        }
    )
    validator = jsonschema.Draft4Validator(schema)
    assert validator.is_valid({"open": {"a": 1, "anything": [1]}, "map": {"k": "v"}})
    assert not validator.is_valid({"closed": {"a": 1, "b": 2}})
    assert not validator.is_valid({"extra": 1})
    assert not validator.is_valid({"map": {"k": 1}})  # an existing rule is kept


def test_vendored_crd_schemas_are_the_v1_openapi_schemas() -> None:
    for kind, path in CRD_SCHEMAS.items():
        schema = json.loads(path.read_text())
        assert schema["type"] == "object"
        assert {"apiVersion", "kind", "metadata", "spec", "status"} <= set(schema["properties"])
        assert "\n" not in path.read_text().rstrip("\n")  # compact
        assert kind == "RayJob" or "workerGroupSpecs" in schema["properties"]["spec"]["properties"]
    readme = (KUBE / "schemas" / "README.md").read_text()
    assert "github.com/ray-project/kuberay" in readme
    assert re.search(r"\b[0-9a-f]{40}\b", readme)  # the source commit
    assert "ray-operator/config/crd/bases/ray.io_rayjobs.yaml" in readme


def _pod_specs(doc: Any) -> list[Any]:
    spec = doc["spec"]["rayClusterSpec"] if doc["kind"] == "RayJob" else doc["spec"]
    groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
    return [group["template"]["spec"] for group in groups]


@pytest.mark.parametrize("kind", sorted(MANIFESTS))
def test_kuberay_manifest_is_valid_in_strict_mode(kind: str) -> None:
    doc = yaml.safe_load(MANIFESTS[kind].read_text())
    assert doc["apiVersion"] == "ray.io/v1"
    assert doc["kind"] == kind
    assert manifest_errors(doc) == []
    # KubeRay's own checks (ray-operator/controllers/ray/utils/validation.go).
    name = doc["metadata"]["name"]
    assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name)
    assert len(name) <= (47 if kind == "RayJob" else 53)
    cluster = doc["spec"]["rayClusterSpec"] if kind == "RayJob" else doc["spec"]
    assert cluster["rayVersion"] == dockerfile_args()["RAY_VERSION"]
    assert cluster["authOptions"] == {"mode": "token"}  # needs Ray >= 2.52
    for group in cluster["workerGroupSpecs"]:
        assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
    # Every Pod mounts the one ReadWriteMany root, and the root is under it.
    claim = yaml.safe_load(PVC.read_text())["metadata"]["name"]
    for pod in _pod_specs(doc):
        (volume,) = [v for v in pod["volumes"] if "persistentVolumeClaim" in v]
        assert volume["persistentVolumeClaim"]["claimName"] == claim
        (container,) = pod["containers"]
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        assert mounts[volume["name"]] == ROOT_MOUNT
        env = {e["name"]: e["value"] for e in container["env"]}
        assert env["HPCBENCH_ROOT"].startswith(ROOT_MOUNT + "/")
        gpus = container["resources"]["limits"].get("nvidia.com/gpu")
        assert container["image"] == (GPU_IMAGE if gpus else CPU_IMAGE)


def test_the_rayjob_runs_the_study_with_absolute_paths_on_the_volume() -> None:
    doc = yaml.safe_load(MANIFESTS["RayJob"].read_text())
    words = doc["spec"]["entrypoint"].split()
    assert words[:2] == ["hpcbench", "run"]
    study = Path(words[2])
    assert study.is_absolute()
    # The image has the studies at /home/ray/hpcbench/studies (cluster/Dockerfile WORKDIR).
    assert study.relative_to("/home/ray/hpcbench").as_posix() == "studies/quickstart.yaml"
    assert (REPO / "studies" / study.name).is_file()
    options = dict(zip(words[3::2], words[4::2], strict=True))
    assert set(options) == {"--root", "--out"}
    for value in options.values():
        assert value.startswith(ROOT_MOUNT + "/")  # a job's working dir is a temp copy
    assert doc["spec"]["shutdownAfterJobFinishes"] is True


def test_the_raycluster_autoscales_cpu_and_gpu_workers() -> None:
    doc = yaml.safe_load(MANIFESTS["RayCluster"].read_text())
    assert doc["spec"]["enableInTreeAutoscaling"] is True
    groups = {g["groupName"]: g for g in doc["spec"]["workerGroupSpecs"]}
    assert set(groups) == {"cpu", "gpu"}
    gpu_limits = groups["gpu"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert gpu_limits["nvidia.com/gpu"] == "1"
    assert groups["gpu"]["minReplicas"] == 0 < groups["gpu"]["maxReplicas"]


KUBE_MUTATIONS: dict[str, tuple[str, Mutation]] = {
    # The typo the API server would silently prune: the job's cluster would never go.
    "rayjob-unknown-key": ("RayJob", _set("spec.shutdownAfterJobFinish", True)),
    "rayjob-wrong-type": ("RayJob", _set("spec.backoffLimit", "0")),
    "rayjob-container-typo": (
        "RayJob",
        _set("spec.rayClusterSpec.headGroupSpec.template.spec.containers.0.volumeMount", []),
    ),
    "raycluster-unknown-key": ("RayCluster", _set("spec.workerGroupSpecs.0.minReplica", 1)),
    "raycluster-wrong-type": ("RayCluster", _set("spec.workerGroupSpecs.1.maxReplicas", "4")),
    "raycluster-no-min-replicas": ("RayCluster", _delete("spec.workerGroupSpecs.0.minReplicas")),
    "raycluster-bad-enum": ("RayCluster", _set("spec.authOptions.mode", "tokens")),
    "pvc-unknown-key": ("PersistentVolumeClaim", _set("spec.accessMode", ["ReadWriteMany"])),
    "pvc-wrong-type": ("PersistentVolumeClaim", _set("spec.accessModes", "ReadWriteMany")),
    "pvc-wrong-kind": ("PersistentVolumeClaim", _set("kind", "PersistentVolume")),
}


@pytest.mark.parametrize("mutation", sorted(KUBE_MUTATIONS))
def test_a_broken_kubernetes_manifest_is_rejected(mutation: str) -> None:
    kind, mutate = KUBE_MUTATIONS[mutation]
    doc = yaml.safe_load((PVC if kind == "PersistentVolumeClaim" else MANIFESTS[kind]).read_text())
    mutate(doc)
    assert manifest_errors(doc)


def test_strict_mode_is_what_catches_a_misspelt_field() -> None:
    doc = yaml.safe_load(MANIFESTS["RayJob"].read_text())
    _set("spec.shutdownAfterJobFinish", True)(doc)
    assert manifest_errors(doc, strict_mode=False) == []  # the CRD alone lets it through
    assert manifest_errors(doc) == [
        "spec: Additional properties are not allowed ('shutdownAfterJobFinish' was unexpected)"
    ]


# kubectl's PersistentVolumeClaim v1 fields: a structural check, closed like strict mode.
PVC_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"enum": ["v1"]},
        "kind": {"enum": ["PersistentVolumeClaim"]},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
                "namespace": {"type": "string"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
        "spec": {
            "type": "object",
            "required": ["accessModes", "resources"],
            "additionalProperties": False,
            "properties": {
                "accessModes": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "enum": [
                            "ReadWriteOnce",
                            "ReadOnlyMany",
                            "ReadWriteMany",
                            "ReadWriteOncePod",
                        ]
                    },
                },
                "resources": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "requests": {"type": "object", "additionalProperties": {"type": "string"}},
                        "limits": {"type": "object", "additionalProperties": {"type": "string"}},
                    },
                },
                "storageClassName": {"type": "string"},
                "volumeMode": {"enum": ["Filesystem", "Block"]},
                "volumeName": {"type": "string"},
                "volumeAttributesClassName": {"type": "string"},
                "selector": {"type": "object"},
                "dataSource": {"type": "object"},
                "dataSourceRef": {"type": "object"},
            },
        },
    },
}


def test_the_pvc_is_a_readwritemany_claim() -> None:
    doc = yaml.safe_load(PVC.read_text())
    assert manifest_errors(doc) == []
    assert doc["spec"]["accessModes"] == ["ReadWriteMany"]
    assert doc["spec"]["resources"]["requests"]["storage"].endswith("Gi")


def test_every_kubernetes_manifest_is_checked_here() -> None:
    shipped = {p.name for p in KUBE.glob("*.yaml")}
    assert shipped == {p.name for p in (*MANIFESTS.values(), PVC)}


# ------------------------------------------------------------- Dockerfile, README


def dockerfile_args() -> dict[str, str]:
    """The ARG defaults of cluster/Dockerfile."""
    return dict(re.findall(r"^ARG (\w+)=(\S+)$", DOCKERFILE.read_text(), re.M))


def test_the_dockerfile_installs_torch_before_the_project_at_the_clients_ray() -> None:
    import ray

    text = DOCKERFILE.read_text()
    args = dockerfile_args()
    # The image's Ray is every client's: this checkout's (ray up, job submit, drivers).
    assert args["RAY_VERSION"] == ray.__version__
    assert re.search(r"^FROM rayproject/ray:\$\{RAY_VERSION\}-py311-\$\{CUDA\}$", text, re.M)
    torch_at = text.index('pip install --no-cache-dir "torch==${TORCH_VERSION}"')
    project_at = text.index('pip install --no-cache-dir ".[jobs]"')
    assert torch_at < project_at
    assert '--index-url "https://download.pytorch.org/whl/${CUDA}"' in text
    assert "cu128" in text and "driver" in text  # which CUDA build to pick, in a comment
    # The two tags the configs pull are the ones its build lines make.
    assert set(re.findall(r"-t (\S+) \.$", text, re.M)) == {CPU_IMAGE, GPU_IMAGE}
    for source in re.findall(r"^COPY --chown=\S+ (.+) \S+$", text, re.M):
        for name in source.split():
            assert (REPO / name).exists(), name
    ignore = [
        line
        for line in (CLUSTER / "Dockerfile.dockerignore").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert ignore[0] == "*"  # nothing in the build context but what the image copies
    assert {"!hpcbench", "!studies", "!pyproject.toml"} <= set(ignore)


def test_the_cluster_readme_names_only_shipped_files_and_absolute_job_roots() -> None:
    text = (CLUSTER / "README.md").read_text()
    for name in set(re.findall(r"\bcluster/[\w./-]*\w", text)):
        assert (REPO / name).exists(), name
    for kind in ("## Slurm", "## AWS and GCP", "## Kubernetes", "## Ray Jobs", "## An existing"):
        assert kind in text
    submits = re.findall(r"^ray job submit(?:[^\n]*\\\n)*[^\n]*", text, re.M)
    assert submits
    for command in submits:
        assert re.search(r"--root /\S+", command), command
        assert re.search(r"--out /\S+", command), command
    assert 'jobs = ["ray[default]"]' in (REPO / "pyproject.toml").read_text()
