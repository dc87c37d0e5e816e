"""The four corpus sources: where their records come from and how a record becomes a document.

A source's records are read one of three ways (config `data.origin`): streamed from its hub dataset,
from local parquet/jsonl files with the hub's columns (`data/prepare.py` writes those), or from the
bundled offline sample under data/sample/ (the same format). Every way goes through `datasets` in
streaming mode, so nothing is cached or materialised.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

from chrono_membench.errors import DataSourceError
from chrono_membench.net import unreachable
from chrono_membench.run_dir import atomic_write

DATA_DIR = Path(__file__).resolve().parents[2] / "data"
SAMPLE_DIR, SYNTHETIC_DIR = DATA_DIR / "sample", DATA_DIR / "synthetic"  # real text (built at install); templates


def _text_documents(records: Iterable[dict], sentences_per_passage: int) -> Iterator[tuple[str, str]]:
    for i, rec in enumerate(records):
        text = rec["text"] or ""
        key = rec.get("id") or hashlib.sha1(text.encode()).hexdigest()[:16] or str(i)
        yield str(key), text


_ARTICLE_HEADING = re.compile(r"^ = ([^=].*?) = \s*$")


def _wikitext_documents(records: Iterable[dict], sentences_per_passage: int) -> Iterator[tuple[str, str]]:
    """WikiText rows are lines; an article starts at a level-1 ` = Title = ` heading."""
    title, lines = None, []
    for rec in records:
        line = rec["text"] or ""
        match = _ARTICLE_HEADING.match(line)
        if match:
            if title is not None:
                yield title, "".join(lines).strip()
            title, lines = match.group(1).strip(), [line.strip() + "\n"]
        elif title is not None:
            lines.append(line)
    if title is not None:
        yield title, "".join(lines).strip()


def _orca_documents(records: Iterable[dict], sentences_per_passage: int) -> Iterator[tuple[str, str]]:
    for rec in records:
        question, answer = (rec["question"] or "").strip(), (rec["answer"] or "").strip()
        key = hashlib.sha1(question.encode()).hexdigest()[:16]
        text = f"Question: {question}\nAnswer: {answer}" if question and answer else ""
        yield key, text


def _book_documents(records: Iterable[dict], sentences_per_passage: int) -> Iterator[tuple[str, str]]:
    """BookCorpus rows are single sentences; consecutive sentences are grouped into passages."""
    passage, index = [], 0
    for rec in records:
        sentence = (rec["text"] or "").strip()
        if sentence:
            passage.append(sentence)
        if len(passage) == sentences_per_passage:
            yield f"p{index}", " ".join(passage)
            passage, index = [], index + 1
    if passage:
        yield f"p{index}", " ".join(passage)


@dataclass(frozen=True)
class Source:
    name: str
    hub_path: str
    hub_config: str | None
    columns: tuple[str, ...]
    documents: Callable[[Iterable[dict], int], Iterator[tuple[str, str]]]  # records → (key, text)
    seed_count: int  # records the seed runs used; data/prepare.py's default


SOURCES: dict[str, Source] = {
    s.name: s
    for s in (
        Source("fineweb_edu", "HuggingFaceFW/fineweb-edu", "sample-10BT", ("text",), _text_documents, 50_000),
        Source("wikitext103", "Salesforce/wikitext", "wikitext-103-raw-v1", ("text",), _wikitext_documents, 20_000),
        Source("orca_math", "microsoft/orca-math-word-problems-200k", None, ("question", "answer"),
               _orca_documents, 25_000),
        Source("bookcorpus", "bookcorpus/bookcorpus", None, ("text",), _book_documents, 15_000),
    )
}
SOURCE_NAMES = tuple(SOURCES)  # the one list of sources; a token's source id is its index here
PAD_SOURCE = -1  # source id of padding tokens (only the last partial row of a finite stream)
INSERTED_SOURCE = len(SOURCE_NAMES)  # source id of inserted tokens: canaries and planted documents (trained on)


def write_jsonl(path: Path, records: Iterable[dict]) -> None:
    """Records as JSON lines in a source's hub schema (what the sample, synthetic and local origins read),
    written whole or not at all."""
    with atomic_write(path) as tmp, open(tmp, "w") as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")


def sample_provenance() -> dict[str, str]:
    """source → "real: <text> (<package>)" or "synthetic: …", from data/sample/provenance.json ({} if not built)."""
    path = SAMPLE_DIR / "provenance.json"
    if not path.exists():
        return {}
    return {name: f"{p['kind']}: {p['text']} ({p['package']})" for name, p in json.loads(path.read_text()).items()}


def hub_offline() -> bool:
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def hub_unreachable(timeout_s: float = 5.0) -> str | None:
    """Why the Hugging Face hub (HF_ENDPOINT, else huggingface.co) cannot be reached, in words; None if a TCP
    connection opens within timeout_s. One try, so that a machine without network is told at once, not after the
    hub client's retries (measured: 86 s of "Retrying in 8s" before a multi-line error)."""
    return unreachable(os.environ.get("HF_ENDPOINT", "https://huggingface.co"), timeout_s)


def _offline_advice(source: Source) -> str:
    return (
        f"without network, use data.origin=local data.local_dir=DIR with files written by "
        f"`python data/prepare.py --source {source.name} --n {source.seed_count} --out DIR` on a machine "
        f"that has network, or data.origin=sample for the bundled offline sample"
    )


def local_files(source: Source, directory: Path) -> list[Path]:
    """`<dir>/<source>.parquet|.jsonl` or shards `<dir>/<source>-*.parquet|.jsonl`."""
    found = sorted(
        p for pattern in (f"{source.name}.parquet", f"{source.name}.jsonl",
                          f"{source.name}-*.parquet", f"{source.name}-*.jsonl")
        for p in directory.glob(pattern)
    )
    if not found:
        raise DataSourceError(
            f"no local file for source {source.name!r}: expected {directory}/{source.name}.parquet or "
            f"{directory}/{source.name}.jsonl with columns {', '.join(source.columns)}"
        )
    return found


class SourceRecords:
    """An iterable over one source's records, restartable (each epoch iterates it again)."""

    def __init__(self, source: Source, origin: str, local_dir: str | Path = ""):
        import datasets

        self.source = source
        self.streamed = origin == "hub"  # hub: streamed once per epoch; local/sample: read once, permuted per epoch
        if origin == "hub":
            if hub_offline():
                raise DataSourceError(
                    f"source {source.name}: data.origin=hub but the hub is offline (HF_HUB_OFFLINE is set); "
                    + _offline_advice(source)
                )
            if (why := hub_unreachable()) is not None:
                raise DataSourceError(f"source {source.name}: data.origin=hub but the hub is unreachable ({why}); "
                                      + _offline_advice(source))
            self.where = f"hub dataset {source.hub_path}"
            try:
                self._dataset = datasets.load_dataset(
                    source.hub_path, source.hub_config, split="train", streaming=True
                )
            except Exception as e:  # no network, gated, renamed: all end the same way for the user
                raise DataSourceError(
                    f"source {source.name}: cannot open {self.where} ({type(e).__name__}: {str(e)[:200]}); "
                    + _offline_advice(source)
                ) from None
        else:
            directory = {"sample": SAMPLE_DIR, "synthetic": SYNTHETIC_DIR}.get(origin) or Path(local_dir)
            if origin == "sample" and not (SAMPLE_DIR / "provenance.json").exists():
                raise DataSourceError(
                    f"the offline sample is not built ({SAMPLE_DIR} is missing): run `python data/build_sample.py` "
                    f"(scripts/install.sh does), or use data.origin=synthetic for the committed template text")
            files = local_files(source, directory)
            self.where = ", ".join(map(str, files))
            for f in files:
                if not os.access(f, os.R_OK):
                    raise DataSourceError(f"source {source.name}: cannot read {f} (permission denied)")
            builder = "parquet" if files[0].suffix == ".parquet" else "json"
            try:
                self._dataset = datasets.load_dataset(
                    builder, data_files=[str(f) for f in files], split="train", streaming=True
                )
            except Exception as e:
                raise DataSourceError(f"source {source.name}: cannot read {self.where}: {e}") from None
        self._check_columns()

    def _check_columns(self) -> None:
        try:
            first = next(iter(self._dataset))
        except StopIteration:
            raise DataSourceError(f"source {self.source.name}: {self.where} holds no records") from None
        except Exception as e:
            hint = "; " + _offline_advice(self.source) if self.where.startswith("hub") else ""
            raise DataSourceError(
                f"source {self.source.name}: cannot read {self.where} ({type(e).__name__}: {str(e)[:200]}){hint}"
            ) from None
        missing = [c for c in self.source.columns if c not in first]
        if missing:
            raise DataSourceError(
                f"source {self.source.name}: {self.where} lacks column(s) {', '.join(missing)}; "
                f"expected columns {', '.join(self.source.columns)} (found {', '.join(first)})"
            )

    def __iter__(self) -> Iterator[dict]:
        return iter(self._dataset)
