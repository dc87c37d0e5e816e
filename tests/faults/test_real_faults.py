"""Faults as they really happen, each made real: a full tmpfs, a NaN inside an SAE's weights, a kill -9 of the run
before its first checkpoint and of its data worker, a manifest that lists nothing, a second SIGTERM during
teardown, a wandb server that cannot be reached, a live run's lock. Every run that goes on is compared with
its uninterrupted twin (conftest.uninterrupted_run): the LM's values bitwise, no line lost or repeated."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import FAULT_ARGS, HOLD, HOOK, ROOT, cli, differing_payload, load_script, run_main, values, wait_for_step

from chrono_membench import metric_keys as K
from chrono_membench.checkpoint import MANIFEST, _sha256, payload_file
from chrono_membench.logging import read_metrics
from chrono_membench.safety import EXIT_PREEMPTED


def start(out: Path, name: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "experiments/run.py", *FAULT_ARGS, *extra, f"run.out_dir={out}",
                             f"run.name={name}"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def lm_values(run_dir: Path) -> list[dict]:
    """What the LM logged (train/, val/, mem/, data/): what an SAE's failure must leave as it was."""
    records = [{k: v for k, v in r.items() if k.split("/")[0] in ("step", "train", "val", "mem", "data")}
               for r in values(run_dir)]
    return [r for r in records if len(r) > 1]


@pytest.fixture
def small_disk(tmp_path):
    """A real 100 MB tmpfs (a tiny run's checkpoint is 38 MB: two fit, the third does not)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=100M", "tmpfs", str(mount)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_really_full_disk_exits_5_naming_the_path_and_the_run_resumes_elsewhere(small_disk, tmp_path, uninterrupted_run):
    full = cli(*FAULT_ARGS, f"run.out_dir={small_disk}", "run.name=full", "logging.wandb_mode=offline")
    assert full.returncode == 5, full.stderr[-3000:]
    message = full.stderr.strip().splitlines()
    assert len(message) <= 3 and "Traceback" not in full.stderr, full.stderr[-3000:]  # one line, not a torrent
    assert "cannot write" in message[-1] and str(small_disk) in message[-1] and "GB free" in message[-1]
    run = small_disk / "full"
    kept = [p.name for p in run.joinpath("checkpoints").iterdir()]
    assert kept and all(p.startswith("step_") for p in kept), kept  # no half-written temporary left
    moved = tmp_path / "moved"  # the researcher frees space (here: moves the run) and resumes: nothing was lost
    shutil.copytree(run, moved, ignore=shutil.ignore_patterns("wandb"))
    resumed = run_main("--resume", str(moved), "--no-progress")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    without_wandb = lambda run: [{k: v for k, v in r.items() if not k.startswith("logging/")} for r in values(run)]  # noqa: E731
    assert without_wandb(moved) == values(uninterrupted_run[0])  # (its twin ran without wandb: no upload counters)


def test_a_nan_in_one_sae_retires_it_and_the_lm_run_goes_on_unchanged(tmp_path, uninterrupted_run):
    straight = uninterrupted_run[0]
    run = tmp_path / "nan"
    shutil.copytree(straight, run)
    for later in ("step_00000008", "step_00000009", "step_00000010"):  # continue from 6, the SAE's encoder poisoned
        for kind in ("checkpoints", "artifacts"):
            shutil.rmtree(run / kind / later, ignore_errors=True)
    shutil.rmtree(run / "final_model")
    ckpt = run / "checkpoints" / "step_00000006"
    saes = torch.load(payload_file(ckpt, "saes"), weights_only=False)
    saes["saes"][HOOK]["W_enc"][0, 0] = float("nan")
    torch.save(saes, payload_file(ckpt, "saes"))
    manifest = json.loads((ckpt / MANIFEST).read_text())
    manifest["files"]["saes.pt"] = _sha256(payload_file(ckpt, "saes"))
    (ckpt / MANIFEST).write_text(json.dumps(manifest))

    resumed = run_main("--resume", str(run), "--no-progress")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"SAE at {HOOK} retired at step 7" in resumed.stderr
    assert lm_values(run) == lm_values(straight)  # the LM never noticed
    after = [r for r in read_metrics(run / "metrics.jsonl") if r["step"] > 6]
    assert [r[K.sae(HOOK, "retired_at_step")] for r in after if K.sae(HOOK, "retired_at_step") in r] == [7]
    assert [r[K.sae(HOOK, "skipped_steps")] for r in after if K.sae(HOOK, "skipped_steps") in r] == [1]
    retired_keys = [k for r in after for k in r if K.hook_of(k) == HOOK and "retired_at_step" not in k
                    and "skipped_steps" not in k]
    assert retired_keys == []  # no drift, purity, panel or step metric for a retired SAE
    assert not list((run / "artifacts" / "step_00000008").glob("sae_*"))  # nor artifacts
    ckpt = torch.load(payload_file(run / "checkpoints" / "step_00000010", "saes"), weights_only=False)
    assert ckpt["health"]["retired"] == {HOOK: 7}  # and it stays retired on a resume


def test_an_sae_that_diverges_by_itself_is_retired_after_its_skips(tmp_path):
    """sae.lr = 1e30: Adam moves every weight by ~1e30, the next forward overflows. Nothing is injected."""
    done = run_main(*FAULT_ARGS, "sae.lr=1e30", "sae.max_skipped_in_a_row=2", f"run.out_dir={tmp_path}", "run.name=lr")
    assert done.returncode == 0, done.stderr[-3000:]
    records = read_metrics(tmp_path / "lr" / "metrics.jsonl")
    skipped = [r[K.sae(HOOK, "skipped_steps")] for r in records if K.sae(HOOK, "skipped_steps") in r]
    retired = [(r["step"], r[K.sae(HOOK, "retired_at_step")]) for r in records if K.sae(HOOK, "retired_at_step") in r]
    assert skipped[-3:] == [1, 2, 3] and len(retired) == 1  # two skips allowed, the third retires it
    assert "retired at step" in done.stderr and "non-finite updates in a row" in done.stderr
    assert max(r["step"] for r in records) == 10 and (tmp_path / "lr" / "final_model").exists()


def test_a_retired_variant_says_it_is_the_variant_and_logs_nothing_more(tmp_path):
    """A variant whose SAE diverges (sae.lr = 1e30) is retired; the run's own SAE at that hook goes on, the warning
    says which retired, and nothing more is logged under the variant's name (its dropout rate included)."""
    done = run_main("--preset", "tiny", "--no-progress", "sae.max_skipped_in_a_row=2", "train.max_steps=10",
                    "sae.variants={wild: {sae.lr: 1e30}}", f"run.out_dir={tmp_path}", "run.name=v")
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"variant wild's SAE at {HOOK} retired at step" in done.stderr and "own SAE at this hook" in done.stderr
    records = read_metrics(tmp_path / "v" / "metrics.jsonl")
    wild = K.variant("wild", K.sae(HOOK, "retired_at_step"))
    (at,) = [r[wild] for r in records if wild in r]
    later = [k for r in records if r["step"] > at for k in r if k.startswith("variant/wild/") and k != wild
             and not k.endswith("skipped_steps")]
    assert later == [] and any(K.sae(HOOK, "fve") in r for r in records if r["step"] > at)  # the main SAE goes on


def test_a_kill_before_the_first_checkpoint_restarts_clean(tmp_path, uninterrupted_run):
    proc = start(tmp_path, "early")
    wait_for_step(tmp_path / "early", 1, proc)  # step 1 logged; the first checkpoint comes at step 2
    if (tmp_path / "early" / "checkpoints").exists() and list((tmp_path / "early" / "checkpoints").glob("step_*")):
        pytest.skip("the run reached its first checkpoint before the kill (an overloaded machine)")
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    resumed = run_main("--resume", str(tmp_path / "early"), "--no-progress")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "no checkpoint yet; training it again from step 0" in resumed.stderr
    assert values(tmp_path / "early") == values(uninterrupted_run[0])  # no line repeated


def test_the_same_command_run_again_after_an_early_kill_repeats_no_line(tmp_path):
    """A run directory with logged lines and no checkpoint (what a kill before the first one leaves), trained again
    by the same (fresh) command: its log starts clean, so every line appears once."""
    from helpers import train_tiny

    first = train_tiny(tmp_path / "r", "train.max_steps=2", "checkpointing.checkpoint_every_n_steps=2")
    shutil.rmtree(tmp_path / "r" / "checkpoints")  # as if killed before its first checkpoint
    shutil.rmtree(tmp_path / "r" / "final_model")
    again = train_tiny(tmp_path / "r", "train.max_steps=2", "checkpointing.checkpoint_every_n_steps=2")
    strip = lambda rs: [{k: v for k, v in r.items() if not K.is_timing(k)} for r in rs]  # noqa: E731
    assert strip(again) == strip(first)  # not first + first


def test_a_killed_data_worker_is_restarted_and_the_rows_go_on_exactly(tmp_path, uninterrupted_run):
    proc = start(tmp_path, "worker", "data.prefetch_rows=4")  # one step's rows ahead: the worker is still needed
    wait_for_step(tmp_path / "worker", 2, proc)
    (worker,) = load_script("benchmarks/fault_soak.py").data_workers(proc.pid)
    os.kill(worker, signal.SIGKILL)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    assert "data worker died" in err and "restarted" in err
    assert values(tmp_path / "worker") == values(uninterrupted_run[0])
    assert differing_payload(uninterrupted_run[0], tmp_path / "worker", 10) == []  # RNG states included
    restarts = [r["data/worker_restarts"] for r in read_metrics(tmp_path / "worker" / "metrics.jsonl")
                if "data/worker_restarts" in r]
    assert restarts[-1] == 1


def test_a_second_sigterm_during_teardown_still_exits_4(tmp_path):
    proc = start(tmp_path, "twice", "logging.wandb_mode=offline")  # wandb's finish makes teardown last seconds
    wait_for_step(tmp_path / "twice", 3, proc)
    before = set((tmp_path / "twice" / "checkpoints").glob("step_*"))
    proc.send_signal(signal.SIGTERM)
    deadline = time.time() + 120
    while time.time() < deadline and not set((tmp_path / "twice" / "checkpoints").glob("step_*")) - before \
            and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)  # the stop's checkpoint is complete; the process is tearing down
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_PREEMPTED, err[-2000:]


def test_bad_inputs_are_refused_in_one_line_naming_the_field(tmp_path):
    too_many = run_main(*FAULT_ARGS, "sae.k=100000", f"run.out_dir={tmp_path}", "run.name=k")
    assert too_many.returncode == 2 and "Traceback" not in too_many.stderr, too_many.stderr[-2000:]
    assert too_many.stderr.strip().startswith("error: sae.k=100000") and "allowed: 1..256" in too_many.stderr
    nowhere = cli(*FAULT_ARGS, "run.out_dir=/proc/nope")
    assert nowhere.returncode == 2 and nowhere.stderr.strip().startswith("error: run.out_dir=/proc/nope")


PROBE = """
import runpy, sys
code = runpy.run_path("experiments/run.py", run_name="probe")["main"](sys.argv[1:])
print(code, "transformers" in sys.modules)
"""


def test_a_live_run_is_refused_before_the_heavy_imports(tmp_path):
    (tmp_path / "live").mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "live")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        probe = subprocess.run([sys.executable, "-c", PROBE, *FAULT_ARGS, f"run.out_dir={tmp_path}", "run.name=live"],
                               cwd=ROOT, capture_output=True, text=True)
    finally:
        holder.kill()
        holder.wait()
    assert f"in use by pid {holder.pid}" in probe.stderr, probe.stderr[-2000:]
    assert probe.stdout.split() == ["2", "False"]  # refused, and transformers (the model stack) never imported


def test_an_unreachable_wandb_logs_offline_at_once(tmp_path, monkeypatch):
    from helpers import tiny

    import chrono_membench.train as train_mod

    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # the discard port: nothing listens, refused at once
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    with pytest.warns(UserWarning, match=r"wandb unreachable \(127.0.0.1:9: Connection refused\); logging offline"):
        summary = train_mod.train(tiny("train.max_steps=2", "logging.wandb_mode=online"), tmp_path / "w", progress=False)
    assert summary.wandb_dir.name.startswith("offline-run-") and list(summary.wandb_dir.glob("*.wandb"))


def resumable_copy(uninterrupted_run, tmp_path, name="copy") -> Path:
    """The uninterrupted run as it was at step 8: its last checkpoint and final model removed."""
    copy = tmp_path / name
    shutil.copytree(uninterrupted_run[0], copy)
    shutil.rmtree(copy / "checkpoints" / "step_00000010")
    shutil.rmtree(copy / "final_model")
    return copy


def test_a_checkpoint_of_another_model_is_refused_in_one_line(tmp_path, uninterrupted_run):
    """A checkpoint written by a model of another width, copied in as the newest, is named and refused (exit 2)."""
    copy = resumable_copy(uninterrupted_run, tmp_path)
    foreign = run_main(*FAULT_ARGS, "model.tiny_d_model=32", "train.max_steps=10", f"run.out_dir={tmp_path}",
                       "run.name=narrow")
    assert foreign.returncode == 0, foreign.stderr[-2000:]
    shutil.rmtree(copy / "checkpoints" / "step_00000008")
    shutil.copytree(tmp_path / "narrow" / "checkpoints" / "step_00000008", copy / "checkpoints" / "step_00000008")
    got = run_main("--resume", str(copy), "--no-progress")
    last = got.stderr.strip().splitlines()[-1]
    assert got.returncode == 2 and "Traceback" not in got.stderr, got.stderr[-2000:]
    assert last.startswith(f"error: --resume: checkpoint {copy / 'checkpoints' / 'step_00000008'}: the saved weights "
                           "are not this model's:") and "another shape" in last


def test_a_damaged_missing_metrics_file_or_empty_config_is_named_and_nothing_is_rebuilt_short(tmp_path,
                                                                                                uninterrupted_run):
    copy = resumable_copy(uninterrupted_run, tmp_path)
    metrics = copy / "metrics.jsonl"
    lines = metrics.read_text().splitlines(keepends=True)
    metrics.write_text("".join(lines[:5]) + "{garbage\n" + "".join(lines[5:]))
    damaged = run_main("--resume", str(copy), "--no-progress")
    assert damaged.returncode == 2 and damaged.stderr.strip() == (
        f"error: {metrics} line 6 is not a metrics record ('{{garbage'): the file is damaged; remove or repair that "
        "line"), damaged.stderr
    metrics.unlink()
    missing = run_main("--resume", str(copy), "--no-progress")
    assert missing.returncode == 2 and f"{metrics} is missing" in missing.stderr and "lost" in missing.stderr
    assert not metrics.exists() and (copy / "checkpoints" / "step_00000008").exists()  # nothing rebuilt, nothing lost
    (copy / "config.yaml").write_text("")
    empty = run_main("--resume", str(copy), "--no-progress")
    assert empty.returncode == 2 and "config.yaml is empty or corrupt" in empty.stderr and len(empty.stderr) < 400
    never = run_main("--resume", str(tmp_path / "never_started"), "--no-progress")  # killed before it had a directory
    assert never.returncode == 2 and "run the same command again" in never.stderr


def test_out_of_memory_is_one_line_saying_what_to_lower(tmp_path):
    """A real allocation failure: the address space capped at 6 GB, an SAE whose encoder alone needs 3.3 GB."""
    import resource

    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (6 * 2**30, 6 * 2**30))

    proc = subprocess.run([sys.executable, "experiments/run.py", "--preset", "tiny", "--no-progress",
                           "sae.expansion=200000", f"run.out_dir={tmp_path}"], cwd=ROOT, capture_output=True,
                          text=True, preexec_fn=cap)
    assert proc.returncode == 6 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    (line,) = [s for s in proc.stderr.splitlines() if s.startswith("out of memory:")]
    assert "can't allocate memory" in line and "lower train.micro_batch, sae.expansion" in line


def test_a_wandb_server_that_never_answers_falls_back_to_offline_with_a_sync_command(tmp_path, monkeypatch):
    """A real TCP server that accepts every connection and never answers (a key set, as a user's would be): wandb's
    online start times out after logging.init_timeout_s; the run then logs offline and says how to sync it."""
    import socket
    import threading

    import wandb
    from helpers import tiny

    import chrono_membench.train as train_mod

    wandb.teardown()  # a run of an earlier test in this process leaves wandb's settings (its server) behind
    server, held = socket.socket(), []
    server.bind(("127.0.0.1", 0))
    server.listen(64)

    def silent():  # accept, never answer, until the server is closed
        try:
            while True:
                held.append(server.accept())
        except OSError:
            pass

    threading.Thread(target=silent, daemon=True).start()
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{server.getsockname()[1]}")
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    try:
        with pytest.warns(UserWarning, match=r"wandb unreachable \(.*\); logging offline to .*sync later with: wandb sync"):
            summary = train_mod.train(tiny("train.max_steps=2", "logging.wandb_mode=online", "logging.init_timeout_s=5"),
                                      tmp_path / "w", progress=False)
    finally:
        server.close()
        for connection, _ in held:
            connection.close()
    assert held  # wandb did reach the silent server
    assert summary.wandb_dir.name.startswith("offline-run-") and list(summary.wandb_dir.glob("*.wandb"))
