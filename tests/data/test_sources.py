"""The four sources: the synthetic and real-text samples, local parquet/jsonl in the hub schema, clear errors."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from chrono_membench.config import DataConfig
from chrono_membench.data import SOURCES, DataSourceError, MixtureStream, SourceRecords, is_validation
from chrono_membench.data.sources import SYNTHETIC_DIR

from helpers import load_script




def test_sample_documents_have_the_expected_shape(records):
    docs = {name: list(SOURCES[name].documents(iter(records[name]), 40)) for name in SOURCES}
    assert all(len(d) >= 500 for d in docs.values()), {k: len(v) for k, v in docs.items()}
    assert all(t.startswith("Question: ") and "\nAnswer: " in t for _, t in docs["orca_math"])
    assert all(t.startswith(f"= {k} =") for k, t in docs["wikitext103"])
    assert sum(f.stat().st_size for f in SYNTHETIC_DIR.iterdir()) < 10_000_000


def test_build_sample_falls_back_per_source_with_a_warning(tmp_path):
    """One source's package missing: that source gets the synthetic text (a warning names the package), the others
    their real text; provenance says which is which, and the stream reads the result."""
    build = load_script("data/build_sample.py")

    def missing(cache):
        raise build.Unavailable("pip download evals failed: no such package")

    info = {"text": "t", "package": "p", "licence": "l"}
    readers = {"fineweb_edu": missing,
               "wikitext103": lambda cache: ([{"text": " = Ada = \n"}, {"text": " Ada wrote the first program . \n"}], info),
               "orca_math": lambda cache: ([{"question": "1 + 1?", "answer": "2"}], info),
               "bookcorpus": lambda cache: ([{"text": "It was a dark night."}], info)}
    with pytest.warns(UserWarning, match=r"fineweb_edu: real text unavailable \(PyPI evals.*for fineweb_edu only"):
        provenance = build.build(tmp_path / "sample", tmp_path / "cache", readers)
    assert {k: v["kind"] for k, v in provenance.items()} == {"fineweb_edu": "synthetic", "wikitext103": "real",
                                                             "orca_math": "real", "bookcorpus": "real"}
    assert (tmp_path / "sample" / "fineweb_edu.jsonl").read_bytes() == (SYNTHETIC_DIR / "fineweb_edu.jsonl").read_bytes()
    assert json.loads((tmp_path / "sample" / "provenance.json").read_text()) == provenance
    wiki = SourceRecords(SOURCES["wikitext103"], "local", tmp_path / "sample")
    assert list(SOURCES["wikitext103"].documents(iter(wiki), 40)) == [("Ada", "= Ada =\n Ada wrote the first program .")]


def test_sentences_split_like_bookcorpus():
    build = load_script("data/build_sample.py")
    text = "Mr. Darcy bowed. \"Indeed!\" said she. Was it so? It was."
    assert build.sentences(text) == ["Mr. Darcy bowed.", "\"Indeed!\" said she.", "Was it so?", "It was."]


def test_local_parquet_in_hub_schema(tmp_path, tokenizer):
    table = pa.table({"question": [f"What is {i} + {i}?" for i in range(40)] + [""],
                      "answer": [f"{i} + {i} = {2 * i}." for i in range(40)] + [""], "system": [""] * 41})
    pq.write_table(table, tmp_path / "orca_math.parquet")
    cfg = DataConfig(origin="local", local_dir=str(tmp_path), mixture={"orca_math": 1.0}, seq_len=32)
    stream = MixtureStream(cfg, tokenizer, split="train", repeat=False)
    texts = []
    while (doc := stream.next_document()) is not None:
        texts.append(doc.text)
    src = stream.sources["orca_math"] or None
    n_val = sum(is_validation("orca_math", SOURCES["orca_math"].documents([r], 40).__next__()[0], 15)
                for r in table.to_pylist()[:40])
    assert len(texts) == 40 - n_val and all(t.startswith("Question: What is") for t in texts)
    assert src is None  # exhausted and dropped after its one pass


def test_local_empty_documents_are_skipped_and_counted(tmp_path, tokenizer):
    rows = [{"text": "a real document about rivers.", "id": f"d{i}"} for i in range(30)]
    rows += [{"text": "   ", "id": f"e{i}"} for i in range(10)]
    (tmp_path / "fineweb_edu.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    cfg = DataConfig(origin="local", local_dir=str(tmp_path), mixture={"fineweb_edu": 1.0}, seq_len=16)
    stream = MixtureStream(cfg, tokenizer)
    n_train = sum(not is_validation("fineweb_edu", f"d{i}", 15) for i in range(30))
    for _ in range(n_train):  # exactly one epoch
        assert stream.next_document().text.strip()
    n_empty_train = sum(not is_validation("fineweb_edu", f"e{i}", 15) for i in range(10))
    assert stream.stats()["empty_skipped"]["fineweb_edu"] == n_empty_train


def test_local_file_errors_name_file_and_columns(tmp_path):
    with pytest.raises(DataSourceError, match=r"expected .*orca_math.parquet .*columns question, answer"):
        SourceRecords(SOURCES["orca_math"], "local", tmp_path)
    pq.write_table(pa.table({"prompt": ["x"]}), tmp_path / "orca_math.parquet")
    with pytest.raises(DataSourceError, match=r"orca_math.parquet lacks column\(s\) question, answer"):
        SourceRecords(SOURCES["orca_math"], "local", tmp_path)
    (tmp_path / "bookcorpus.parquet").write_bytes(b"not a parquet file")
    with pytest.raises(DataSourceError, match=r"cannot read .*bookcorpus.parquet"):
        SourceRecords(SOURCES["bookcorpus"], "local", tmp_path)


def test_hub_offline_error_names_the_ways_out(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataSourceError, match=r"offline.*data.origin=local data.local_dir=DIR.*data/prepare.py"):
        SourceRecords(SOURCES["fineweb_edu"], "hub")
