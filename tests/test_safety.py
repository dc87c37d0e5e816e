"""Resume safety: a different experiment is refused (with the reason where a field gives one), safe changes are
recorded; under chrono the horizon (train.max_steps) may not change."""

import json

import pytest
from helpers import run_main as cli  # in-process: these read the run, not the process

from chrono_membench.logging import read_metrics
from chrono_membench.safety import config_changes

ARGS = ["--preset", "tiny", "--no-progress", "train.max_steps=4", "checkpointing.checkpoint_every_n_steps=2"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One finished chrono run (ARGS) that both resume tests try to continue."""
    out = tmp_path_factory.mktemp("finished")
    first = cli(*ARGS, f"run.out_dir={out}", "run.name=r")
    assert first.returncode == 0, first.stderr[-2000:]
    return out / "r"


def test_resume_refuses_a_different_experiment_and_records_safe_changes(finished):
    tmp_path = finished.parent
    for override, key in (("data.seq_len=32", "data.seq_len"), ("sae.expansion=2", "sae.expansion"),
                          ("run.seed=7", "run.seed"), ("model.tiny_d_model=32", "model.tiny_d_model")):
        refused = cli("--resume", str(tmp_path / "r"), override)
        assert refused.returncode == 2 and "different experiment" in refused.stderr and key in refused.stderr
    refused = cli("--resume", str(tmp_path / "r"), "--ablation", "no_dropout")
    assert refused.returncode == 2 and "chrono.dropout_p_max" in refused.stderr and "run.ablation" in refused.stderr
    safe = cli("--resume", str(tmp_path / "r"), "train.eval_every=2", "train.log_every=2", "--no-progress")
    assert safe.returncode == 0, safe.stderr[-2000:]
    record = json.loads((tmp_path / "r" / "resume_log.jsonl").read_text().splitlines()[-1])
    assert record["changed"] == {"train.eval_every": 2, "train.log_every": 2}
    assert record["was"] == {"train.eval_every": 4, "train.log_every": 1}


def test_chrono_runs_refuse_a_new_horizon_others_may_extend(tmp_path, finished):
    refused = cli("--resume", str(finished), "train.max_steps=6")
    assert refused.returncode == 2 and "train.max_steps: 4 → 6" in refused.stderr
    assert "time buckets" in refused.stderr and "Traceback" not in refused.stderr
    plain = cli(*ARGS, "chrono.enabled=false", f"run.out_dir={tmp_path}", "run.name=plain")
    assert plain.returncode == 0, plain.stderr[-2000:]
    longer = cli("--resume", str(tmp_path / "plain"), "train.max_steps=6", "--no-progress")
    assert longer.returncode == 0, longer.stderr[-2000:]
    record = json.loads((tmp_path / "plain" / "resume_log.jsonl").read_text().splitlines()[-1])
    assert record["changed"] == {"train.max_steps": 6} and record["was"] == {"train.max_steps": 4}
    assert max(r["step"] for r in read_metrics(tmp_path / "plain" / "metrics.jsonl")) == 6


def test_the_rules_live_on_the_config_fields():
    base = {"train": {"max_steps": 4, "log_every": 1}, "chrono": {"enabled": True}, "data": {"seq_len": 64}}
    changed = lambda **sections: {s: {**base[s], **sections.get(s, {})} for s in base}  # noqa: E731
    unsafe, safe = config_changes(base, changed(train={"log_every": 5}))
    assert unsafe == {} and safe == ["train.log_every"]
    unsafe, _ = config_changes(base, changed(data={"seq_len": 32}))
    assert unsafe == {"data.seq_len": ""}  # not marked safe: a different experiment, no further reason needed
    unsafe, _ = config_changes(base, changed(train={"max_steps": 8}))
    assert "time buckets" in unsafe["train.max_steps"]
    no_chrono = {**base, "chrono": {"enabled": False}}
    assert config_changes(no_chrono, {**no_chrono, "train": {"max_steps": 8, "log_every": 1}}) == ({}, ["train.max_steps"])


def test_every_fault_maps_its_exceptions_to_its_code_and_one_line():
    import errno

    from chrono_membench.errors import FAULTS, ConfigError, Preempted, RunWriteError, TrainingStopped, fault_of

    for fault in FAULTS:
        for exc in fault.raised:
            assert fault_of(exc("x")).code == fault.code
    assert fault_of(OSError(errno.ENOSPC, "No space left on device")).code == 5  # a plain full disk, too
    assert fault_of(OSError(errno.EACCES, "denied")) is None and fault_of(KeyError("x")) is None  # bugs: 1
    written = RunWriteError(errno.ENOSPC, "cannot write runs/x/metrics.jsonl: No space left on device")
    assert fault_of(written).line(written) == "error: cannot write runs/x/metrics.jsonl: No space left on device"
    assert fault_of(TrainingStopped("3 updates")).line(TrainingStopped("3 updates")) == "stopped: 3 updates"
    assert [fault_of(e).code for e in (ConfigError("a"), Preempted("b"))] == [2, 4]
