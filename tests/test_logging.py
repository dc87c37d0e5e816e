"""Logging: metrics.jsonl is complete whatever wandb does; resume drops a half-written tail; uploads retry."""

import json

import pytest
from helpers import losses, tiny

import chrono_membench.train as train_mod
from chrono_membench.logging import MetricsLogger, NullLogger, read_metrics, truncate_metrics


def test_wandb_disabled_or_failing_keeps_metrics_complete(tmp_path, monkeypatch):
    import wandb

    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setattr(wandb, "init", lambda **kw: (_ for _ in ()).throw(RuntimeError("no network")))
    with pytest.warns(UserWarning, match="wandb disabled for this run"):
        train_mod.train(tiny("train.max_steps=4", "logging.wandb_mode=offline"), tmp_path / "fail", progress=False)
    train_mod.train(tiny("train.max_steps=4"), tmp_path / "off", progress=False)  # disabled in the preset
    for name in ("fail", "off"):
        assert sorted(losses(tmp_path / name)) == [1, 2, 3, 4]


def test_wandb_offline_run_is_written(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    summary = train_mod.train(tiny("train.max_steps=2", "logging.wandb_mode=offline"), tmp_path / "w", progress=False)
    assert summary.wandb_dir is not None and summary.wandb_dir.name.startswith("offline-run-")
    assert list(summary.wandb_dir.glob("*.wandb"))


def test_half_written_metrics_tail_is_dropped_on_resume_and_nothing_else(tmp_path):
    path = tmp_path / "metrics.jsonl"
    lines = [json.dumps({"step": s, "train/loss": 1.0 / s}) for s in range(1, 7)]
    path.write_text("\n".join(lines) + "\n" + '{"step": 7, "train/lo')
    assert truncate_metrics(path, 6) == 1
    assert path.read_text() == "\n".join(lines) + "\n"
    truncate_metrics(path, 4)
    assert [r["step"] for r in read_metrics(path)] == [1, 2, 3, 4]


class FakeRun:
    def __init__(self):
        self.fail, self.uploaded, self.finished = True, [], False

    def log_artifact(self, artifact):
        if self.fail:
            raise ConnectionError("no network")
        self.uploaded.append(artifact.name)

    def finish(self):
        self.finished = True


@pytest.fixture
def failed_upload(tmp_path):
    """A logger whose wandb run (fake) has just failed to upload artifact "first": → (logger, fake run, file)."""
    logger = MetricsLogger(tmp_path, {}, "disabled", "p", "g", "full", "r")
    logger.wandb_run = fake = FakeRun()
    (tmp_path / "a.bin").write_bytes(b"x")
    with pytest.warns(UserWarning, match="will retry"):
        logger.log_artifact(tmp_path / "a.bin", "first", "features")
    return logger, fake, tmp_path / "a.bin"


def test_failed_artifact_uploads_are_counted_and_retried(failed_upload):
    logger, fake, path = failed_upload
    assert logger.artifact_failures == 1 and len(logger.pending_artifacts) == 1
    assert logger.health() == {"logging/artifact_upload_failures": 1, "logging/artifacts_pending": 1}
    fake.fail = False
    logger.log_artifact(path, "second", "features")
    assert fake.uploaded == ["first", "second"] and not logger.pending_artifacts
    logger.close()


def test_the_last_checkpoints_failed_upload_is_retried_at_close(failed_upload):
    logger, fake, _ = failed_upload  # "first" failed at the last checkpoint; no later upload retries it
    fake.fail = False  # the network came back before the run ended
    logger.close()
    assert fake.uploaded == ["first"] and fake.finished and not logger.pending_artifacts


def test_null_logger_has_the_real_loggers_interface():
    public = lambda cls: {n for n in dir(cls) if not n.startswith("_")}  # noqa: E731
    assert public(MetricsLogger) == public(NullLogger)
    null = NullLogger()
    null.log(1, {"train/loss": 1.0})
    assert null.health() == {} and null.wandb_dir is None


def test_offline_wandb_run_carries_plotly_panels_and_metric_summaries(tmp_path):
    import json

    import plotly.io

    from helpers import HOOK, train_tiny, wandb_records

    train_tiny(tmp_path / "r", "logging.wandb_mode=offline", "train.max_steps=12")  # drift exists from step 8 on
    run_file = next((tmp_path / "r" / "wandb").glob("offline-run-*/run-*.wandb"))
    panels, summaries = {}, {}
    for record in wandb_records(run_file):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            for item in record.history.item:
                key = item.key or "/".join(item.nested_key)
                if key.startswith("panels/") and key.endswith("/path"):
                    panels.setdefault(key[:-len("/path")], []).append(json.loads(item.value_json))
        elif kind == "metric":
            summaries[record.metric.glob_name or record.metric.name] = record.metric.summary
    assert set(panels) >= {f"panels/purity/{HOOK}", "panels/memorisation", "panels/drift"}
    assert len(panels["panels/memorisation"]) == 4  # one per eval: steps 0, 4, 8, 12
    figure = plotly.io.from_json((run_file.parent / "files" / panels[f"panels/purity/{HOOK}"][-1]).read_text())
    assert figure.data[0].type == "heatmap" and len(figure.data[0].z) > 0
    assert summaries["train/loss"].min and summaries["mem/canary_exposure/*"].max
