"""What `rexec submit` decides before anything is queued: sweeps, the script, the identity."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from executor import spec
from executor.canonical import sha256_hex
from executor.cluster import SiteOptions, Submission, SweepTask, load_submission, sweep_tasks
from executor.cluster.identity import gpu_indices, job_identity, resolve_allocated
from executor.cluster.submit import export_names, render_script
from executor.errors import InputError, MismatchError
from tests.host.nvml_fixtures import answer, replay

PARAMS = {"lr": 0.1, "layers": 2}


def test_a_sweep_is_the_product_of_its_axes_in_order() -> None:
    tasks = sweep_tasks(["lr=0.1,0.05,0.01", "seed=1,2"], parse=spec.parse_override, params=PARAMS)
    assert len(tasks) == 6
    assert tasks[0] == SweepTask((("lr", 0.1),), 1)
    assert tasks[1] == SweepTask((("lr", 0.1),), 2)
    assert tasks[5] == SweepTask((("lr", 0.01),), 2)
    assert sweep_tasks([], parse=spec.parse_override, params=PARAMS) == (SweepTask(),)


@pytest.mark.parametrize(
    ("sweep", "expected"),
    [
        (["lr"], "expected KEY=V1,V2"),
        (["nope=1,2"], "no such parameter in"),
        (["lr=1,2", "lr=3"], "is given twice"),
        (["seed=1,x"], "expected integers"),
    ],
)
def test_bad_sweeps_are_refused(sweep: list[str], expected: str) -> None:
    with pytest.raises(InputError, match=expected):
        sweep_tasks(sweep, parse=spec.parse_override, params=PARAMS)


SPEC = (
    'version = 1\nname = "t"\n[image]\nref = "r@sha256:'
    + "a" * 64
    + '"\n[run]\ncommand = ["t"]\nseed = 1\n'
)


def submission(tmp_path: Path, **site: object) -> Submission:
    return Submission(
        run_id="20261201T000000Z-t-abcdef",
        spec_path=str(tmp_path / "s.toml"),
        spec_sha256=sha256_hex(SPEC.encode()),
        runs_dir=str(tmp_path / "runs"),
        site=SiteOptions(**site),  # type: ignore[arg-type]
        sign={"method": "none"},
        tasks=(SweepTask(), SweepTask()) if site.pop("array", False) else (SweepTask(),),
        spec_text=SPEC,
    )


def saved(sub: Submission) -> str:
    """Write the submission as `rexec submit` does; its sha256, as the script names it."""
    sub.directory.mkdir(parents=True)
    data = sub.encoded()
    (sub.directory / "submission.json").write_bytes(data)
    return sha256_hex(data)


def test_the_script_holds_every_choice_as_an_sbatch_line(tmp_path: Path) -> None:
    sub = submission(
        tmp_path,
        partition="gpu",
        account="ml",
        time="4:00:00",
        gpus_per_node=2,
        signal="USR2@60",
        extra=("--exclusive",),
    )
    script = render_script(sub, name="t", export=["REXEC_CACHE_DIR", "HF_TOKEN"], sha256="f" * 64)
    lines = script.splitlines()
    assert lines[0] == "#!/bin/bash"
    for flag in (
        "--partition=gpu",
        "--account=ml",
        "--time=4:00:00",
        "--gpus-per-node=2",
        "--signal=B:USR2@60",
        "--no-requeue",
        "--export=NONE,REXEC_CACHE_DIR,HF_TOKEN",
        "--exclusive",
    ):
        assert f"#SBATCH {flag}" in lines, flag
    assert lines[-1].startswith("exec ") and "slurm-node" in lines[-1]
    assert lines[-1].endswith(f"--submission-sha256 {'f' * 64}")  # Slurm holds this line
    assert "srun" not in script


def test_multi_node_starts_one_agent_per_node(tmp_path: Path) -> None:
    script = render_script(submission(tmp_path, nodes=2), name="t", export=[], sha256="f" * 64)
    assert "#SBATCH --nodes=2" in script
    assert "exec srun --export=ALL --ntasks-per-node=1" in script  # the ranks get the job env


def test_a_submission_round_trips_through_its_file(tmp_path: Path) -> None:
    sub = submission(tmp_path, partition="p", extra=("--x",))
    sub.tasks = (SweepTask((("lr", 0.5),), 3), SweepTask())
    digest = saved(sub)
    again = load_submission(sub.directory, sha256=digest)
    assert again == sub
    sub.save_job_id("4242")  # after sbatch answered: beside it, not inside the bound bytes
    assert load_submission(sub.directory, sha256=digest).job_id == "4242"
    assert again.task_run_id(1, 0) == f"{sub.run_id}-t1"
    assert again.task_run_id(1, 2) == f"{sub.run_id}-t1-r2"


def test_only_names_are_exported_and_undeclared_secrets_stay_behind(tmp_path: Path) -> None:
    (tmp_path / "s.toml").write_text(
        'version = 1\nname = "t"\n[image]\nref = "r@sha256:' + "a" * 64 + '"\n'
        '[run]\ncommand = ["t"]\nseed = 1\nsecrets = ["HF_TOKEN"]\n'
    )
    run_spec = spec.load(tmp_path / "s.toml")
    names = export_names(run_spec, {"SECRET_TOKEN": "x", "HF_TOKEN": "y", "REXEC_CACHE_DIR": "/c"})
    assert names == ["REXEC_CACHE_DIR", "HF_TOKEN"]


def test_gres_indices_resolve_to_uuids_in_pci_order() -> None:
    """Slurm's GRES indices are neither NVML indices nor names: the index-th GPU by PCI bus."""
    env = {"SLURM_JOB_GPUS": "0,2-3"}
    assert gpu_indices(env) == [0, 2, 3]
    _, doc = replay("dgx-h100-8gpu-nvswitch")
    handles = [answer(doc, "nvmlDeviceGetHandleByIndex", str(i))["handle"] for i in range(8)]
    by_bus = sorted(
        (answer(doc, "nvmlDeviceGetPciInfo", h)["fields"]["busId"].lower(),
         answer(doc, "nvmlDeviceGetUUID", h))
        for h in handles
    )  # fmt: skip
    nvml, _ = replay("dgx-h100-8gpu-nvswitch")
    assert resolve_allocated([1, 3], nvml=nvml) == (by_bus[1][1], by_bus[3][1])
    nvml, _ = replay("dgx-h100-8gpu-nvswitch")
    with pytest.raises(InputError, match="has 8 GPU"):
        resolve_allocated([9], nvml=nvml)


def test_the_identity_names_the_job_array_restart_and_gpus() -> None:
    env = {
        "SLURM_CLUSTER_NAME": "c",
        "SLURM_JOB_ID": "15",
        "SLURM_ARRAY_JOB_ID": "13",
        "SLURM_ARRAY_TASK_ID": "2",
        "SLURM_RESTART_COUNT": "1",
        "SLURM_JOB_PARTITION": "gpu",
        "SLURM_JOB_ACCOUNT": "ml",
        "SLURM_JOB_NODELIST": "n[1-2]",
        "SLURM_JOB_GPUS": "1",
        "SLURM_CPUS_ON_NODE": "8",
        "SLURM_MEM_PER_NODE": "1024",
    }
    ident = job_identity(env, nodes=["n1", "n2"], gpu_uuids=["GPU-x"], submit_host="h", site={})
    assert ident["jobId"] == "15" and ident["array"] == {"jobId": "13", "taskId": 2}
    assert ident["restartCount"] == 1 and ident["account"] == "ml" and "qos" not in ident
    assert ident["gpus"] == {"slurmIndices": [1], "uuids": ["GPU-x"]}
    assert ident["memPerNodeBytes"] == 1024 << 20 and ident["cpusOnNode"] == 8
    assert job_identity({}, nodes=[], gpu_uuids=[], submit_host="h", site={})["restartCount"] == 0


@pytest.mark.parametrize(
    ("gpus", "site", "expected"),
    [
        ('["GPU-1"]', {"gpus_per_node": 1}, "GPU UUIDs, which Slurm cannot allocate"),
        ("2", {"gpus_per_node": 1}, "gpus = 2 but --gpus-per-node 1"),
    ],
)
def test_gpu_requests_slurm_cannot_honour_are_refused(
    tmp_path: Path, gpus: str, site: dict[str, object], expected: str
) -> None:
    from executor.cluster.submit import _check_resources

    (tmp_path / "s.toml").write_text(
        'version = 1\nname = "t"\n[image]\nref = "r@sha256:' + "a" * 64 + '"\n'
        f'[run]\ncommand = ["t"]\nseed = 1\n[resources]\ngpus = {gpus}\n'
    )
    with pytest.raises(InputError) as info:
        _check_resources(spec.load(tmp_path / "s.toml"), SiteOptions(**site))  # type: ignore[arg-type]
    assert expected in info.value.message + (info.value.hint or "")


def test_site_defaults_come_from_the_users_config(tmp_path: Path) -> None:
    from executor.cluster import site_defaults

    assert site_defaults(tmp_path / "none.toml") == {}
    conf = tmp_path / "cluster.toml"
    conf.write_text('[slurm]\npartition = "gpu"\naccount = "ml"\nextra = ["--exclusive"]\n')
    assert site_defaults(conf) == {"partition": "gpu", "account": "ml", "extra": ["--exclusive"]}
    conf.write_text('[slurm]\npartiton = "gpu"\n')
    with pytest.raises(InputError, match="unknown keys partiton"):
        site_defaults(conf)


def test_resources_become_sbatch_requests_unless_the_command_line_says(tmp_path: Path) -> None:
    from executor.cluster.submit import with_resources

    (tmp_path / "s.toml").write_text(
        'version = 1\nname = "t"\n[image]\nref = "r@sha256:' + "a" * 64 + '"\n'
        '[run]\ncommand = ["t"]\nseed = 1\n[resources]\ncpus = 1.5\nmemory = "1g"\ngpus = 2\n'
    )
    run_spec = spec.load(tmp_path / "s.toml")
    site = with_resources(run_spec, SiteOptions())
    assert (site.cpus_per_task, site.mem, site.gpus_per_node) == (2, "1024M", 2)
    mine = with_resources(run_spec, SiteOptions(cpus_per_task=4, mem="8G"))
    assert (mine.cpus_per_task, mine.mem, mine.gpus_per_node) == (4, "8G", 2)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("seed", 99),  # a task's seed
        ("allow_dirty", True),  # an opt-in
        ("spec_path", "/elsewhere/evil.toml"),  # another spec file
        ("sign", {"method": "key", "key_path": "/tmp/attacker.key"}),  # another signer
    ],
)
def test_a_submission_edited_while_queued_is_refused_by_the_node(
    tmp_path: Path, field: str, value: object
) -> None:
    sub = submission(tmp_path)
    digest = saved(sub)
    path = sub.directory / "submission.json"
    doc = json.loads(path.read_text())
    if field == "seed":
        doc["tasks"][0]["seed"] = value
    else:
        doc[field] = value
    path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    with pytest.raises(MismatchError, match="changed after it was submitted"):
        load_submission(sub.directory, sha256=digest)


def test_a_spec_swapped_inside_the_submission_with_its_sha_is_refused(tmp_path: Path) -> None:
    """Rewriting the spec text and its sha256 together still changes the bytes Slurm's
    copy of the script names."""
    sub = submission(tmp_path)
    digest = saved(sub)
    path = sub.directory / "submission.json"
    doc = json.loads(path.read_text())
    evil = SPEC.replace('command = ["t"]', 'command = ["sh", "-c", "curl evil"]')
    doc["spec_text"], doc["spec_sha256"] = evil, sha256_hex(evil.encode())
    path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    with pytest.raises(MismatchError):
        load_submission(sub.directory, sha256=digest)


def test_the_node_runs_the_submitted_spec_not_the_file_at_its_path(tmp_path: Path) -> None:
    from executor.cluster.node import _load_spec

    sub = submission(tmp_path)
    (tmp_path / "s.toml").write_text(SPEC.replace("seed = 1", "seed = 666"))  # edited after
    assert _load_spec(sub, None).run.seed == 1


def test_a_refused_submission_says_why_on_shared_storage(tmp_path: Path) -> None:
    from executor.cluster import run_on_node

    sub = submission(tmp_path)
    saved(sub)
    env = {"SLURMD_NODENAME": "n1", "SLURM_JOB_ID": "77"}
    with pytest.raises(MismatchError):
        run_on_node(sub.directory, sha256="0" * 64, say=lambda t: None, env=env)
    refused = json.loads((sub.directory / "refused.json").read_text())
    assert "changed after it was submitted" in refused["reason"] and refused["jobId"] == "77"
    with pytest.raises(MismatchError, match="names no submission digest"):
        run_on_node(sub.directory, sha256=None, say=lambda t: None, env=env)


def test_the_specs_timeout_becomes_the_time_limit_with_a_margin_for_recording(
    tmp_path: Path,
) -> None:
    from executor.cluster.submit import render_script, time_limit, with_resources

    assert time_limit(120) == "7"  # 2 minutes and the 5-minute floor
    assert time_limit(10 * 3600) == "660"  # 10 hours and a tenth
    (tmp_path / "s.toml").write_text(
        'version = 1\nname = "t"\n[image]\nref = "r@sha256:' + "a" * 64 + '"\n'
        '[run]\ncommand = ["t"]\nseed = 1\ntimeout = "2h"\n'
    )
    run_spec = spec.load(tmp_path / "s.toml")
    assert with_resources(run_spec, SiteOptions()).time == "132"
    assert with_resources(run_spec, SiteOptions(time="4:00:00")).time == "4:00:00"
    sub = submission(tmp_path, time=with_resources(run_spec, SiteOptions()).time)
    assert "#SBATCH --time=132" in render_script(sub, name="t", export=[], sha256="0" * 64)


def test_infiniband_devices_are_the_character_devices_there_and_nothing_else(
    tmp_path: Path,
) -> None:
    """/dev stands in for /dev/infiniband: its character devices count, its links and
    directories do not; a node without the directory has none."""
    from executor.cluster.node import infiniband_devices

    found = infiniband_devices(Path("/dev"))
    assert "/dev/null" in found and "/dev/stdin" not in found and "/dev/pts" not in found
    assert infiniband_devices(tmp_path / "infiniband") == ()


def test_an_input_written_while_the_submit_host_hashed_it_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stamps vouch for the bytes that were hashed: a write during the hash would let
    every node accept bytes nobody hashed, so nothing is queued."""
    from executor import runner, snapshot
    from executor.cluster import submit

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "x.txt").write_text("x\n")
    digest = snapshot.hash_tree(tmp_path / "data", use_cache=False).digest
    (tmp_path / "s.toml").write_text(
        'version = 1\nname = "t"\n[image]\nref = "r@sha256:' + "a" * 64 + '"\n'
        '[run]\ncommand = ["t"]\nseed = 1\n'
        f'[[inputs]]\nname = "data"\npath = "data"\ndigest = "{digest}"\nmount = "/data"\n'
    )
    hashed = runner.check_pins

    def hash_while_written(*args: object, **kwargs: object) -> object:
        found = hashed(*args, **kwargs)  # type: ignore[arg-type]
        (tmp_path / "data" / "y.txt").write_text("written meanwhile\n")
        return found

    def queue() -> tuple[Submission, str]:
        return submit(
            tmp_path / "s.toml", site=SiteOptions(), tasks=[SweepTask()],
            runs_dir=tmp_path / "runs", sign={}, allow_dirty=False, dry_run=True,
            say=lambda _: None,
        )  # fmt: skip

    sub, _ = queue()
    assert set(sub.stamps) == {"data"} and not sub.rehash_inputs
    monkeypatch.setattr(runner, "check_pins", hash_while_written)
    with pytest.raises(MismatchError, match="input 'data' changed while it was being verified"):
        queue()
    assert not (tmp_path / "runs").exists()


def test_an_engine_the_user_cannot_use_on_the_nodes_is_refused_before_queueing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checked on the submit host, which shares the nodes' users and groups."""
    import grp
    import pwd

    from executor.cluster.engines import engine_check

    nobody = pwd.getpwnam("nobody").pw_uid
    said: list[str] = []
    engine_check("docker", say=said.append, uid=0)  # root may use anything
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    docker = grp.struct_group(("docker", "x", 4242, ["someone"]))
    monkeypatch.setattr(grp, "getgrnam", lambda name: docker)
    with pytest.raises(InputError, match="nobody may not use") as refused:
        engine_check("docker", say=said.append, uid=nobody)
    assert "--runtime podman" in (refused.value.hint or "")
    member = grp.struct_group(("docker", "x", 4242, ["nobody"]))
    monkeypatch.setattr(grp, "getgrnam", lambda name: member)
    engine_check("docker", say=said.append, uid=nobody)
    with pytest.raises(InputError, match="subordinate ids for nobody"):
        engine_check("podman", say=said.append, uid=nobody, etc=tmp_path)
    for table in ("subuid", "subgid"):
        (tmp_path / table).write_text("nobody:100000:65536\n")
    engine_check("podman", say=said.append, uid=nobody, etc=tmp_path)

    def no_group(name: str) -> grp.struct_group:
        raise KeyError(name)

    monkeypatch.setattr(grp, "getgrnam", no_group)
    engine_check("docker", say=said.append, uid=nobody)  # cannot tell: said, not refused
    monkeypatch.setattr(grp, "getgrnam", lambda name: docker)
    monkeypatch.setenv("DOCKER_HOST", "unix:///run/user/65534/docker.sock")
    engine_check("docker", say=said.append, uid=nobody)  # rootless Docker: its own socket
    assert said == [
        "no docker group here: whether you may use Docker on the nodes is not checked",
        "DOCKER_HOST is set: whether its engine answers on the nodes is not checked",
    ]


def test_from_links_name_from_inputs_and_an_unrun_upstream_needs_keys(tmp_path: Path) -> None:
    """A pipeline binds a stage's `from` input to an upstream job not run yet: the node
    must be told whose signature that record carries; nothing else may be bound."""
    from executor.cluster import FromLinks, submit

    (tmp_path / "s.toml").write_text(
        'version = 1\nname = "t"\n[image]\nref = "r@sha256:' + "a" * 64 + '"\n'
        '[run]\ncommand = ["t"]\nseed = 1\n'
        '[[inputs]]\nname = "data"\nfrom = "latest:up:table"\nmount = "/data"\n'
    )

    def queue(links: FromLinks) -> Submission:
        sub, _ = submit(
            tmp_path / "s.toml", site=SiteOptions(), tasks=[SweepTask()],
            runs_dir=tmp_path / "runs", sign={}, allow_dirty=False, dry_run=True,
            say=lambda _: None, links=links,
        )  # fmt: skip
        return sub

    later = {"data": "run:20261201T000000Z-up-000000:table"}
    with pytest.raises(InputError, match="needs the public keys"):
        queue(FromLinks(refs=later, deferred=frozenset(later)))
    with pytest.raises(InputError, match="'labels': not a `from` input"):
        queue(FromLinks(refs={"labels": later["data"]}))
    sub = queue(FromLinks(refs=later, deferred=frozenset(later), keys=("PEM",)))
    assert sub.from_inputs == {"data": {"from": later["data"]}} and sub.upstream_keys == ("PEM",)
    assert load_submission_roundtrip(sub).from_inputs == sub.from_inputs


def load_submission_roundtrip(sub: Submission) -> Submission:
    sub.directory.mkdir(parents=True)
    (sub.directory / "submission.json").write_bytes(sub.encoded())
    return load_submission(sub.directory)


def test_an_upstream_job_counts_as_pruned_only_when_it_made_no_record(tmp_path: Path) -> None:
    """A regeneration step reads its upstream job's record when there is one: a
    `pruned.json` planted beside a job that did run never hides its new outputs."""
    from executor.cluster.rerun import _pruned_upstream, prune

    runs = tmp_path / "runs"
    jobs = runs / ".rexec-jobs"
    for run_id in ("ran", "pruned", "lost"):
        (jobs / run_id).mkdir(parents=True)
    (runs / "ran").mkdir()
    prune(jobs / "ran", "planted")
    prune(jobs / "pruned", "unchanged")
    assert not _pruned_upstream("run:ran:d", runs)
    assert _pruned_upstream("run:pruned:d", runs)
    assert not _pruned_upstream("run:lost:d", runs)  # neither: resolving it fails, loudly
    with pytest.raises(InputError):
        _pruned_upstream("latest:ran:d", runs)
