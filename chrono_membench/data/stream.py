"""Mixture sampling, the hash split, packing into rows, and the resumable stream state (docs/design.md §2).

Flow: each source yields its documents of one split (train or validation), reshuffled every epoch; the
mixture draws the source of each next document by weight from a seeded generator; the packer tokenises
documents ([BOS] tokens EOS) and cuts the concatenation into rows of seq_len tokens. Each row carries, per
token, the document's running index and the source's index, and lists the documents it touches (so the
trainer can keep the seen log). `state_dict()` / `load_state_dict()` make the stream resume exactly.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterator

import numpy as np
import torch

from chrono_membench.data.sources import PAD_SOURCE, SOURCE_NAMES, SOURCES, DataSourceError, SourceRecords

if TYPE_CHECKING:  # config.py reads data/sources.py: no import back up at run time
    from chrono_membench.config import DataConfig



def is_validation(source: str, key: str, val_percent: int) -> bool:
    """Stable 85/15 split: depends only on (source, key), never on weights, order or seed."""
    digest = hashlib.sha1(f"{source}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100 < val_percent


def buffer_shuffle(items: Iterator, buffer_size: int, rng: random.Random) -> Iterator:
    """Streaming shuffle over documents. datasets' own shuffle works on records, and WikiText/BookCorpus
    records (lines, sentences) must stay in order to be grouped into documents, so we shuffle after."""
    buffer = []
    for item in items:
        if len(buffer) < buffer_size:
            buffer.append(item)
            continue
        i = rng.randrange(buffer_size)
        yield buffer[i]
        buffer[i] = item
    rng.shuffle(buffer)
    yield from buffer


@dataclass
class Document:
    index: int  # running index in this stream (the per-token document id)
    source: str
    key: str
    epoch: int
    text: str
    tokens: list[int] = field(default_factory=list)  # as packed ([BOS] ids EOS), once tokenised

    @property
    def uid(self) -> str:
        return f"{self.source}/{self.key}"


class SourceDocuments:
    """One source's non-empty documents of one split, epoch after epoch, each epoch reshuffled."""

    def __init__(self, records: SourceRecords, cfg: DataConfig, split: str, repeat: bool = True,
                 shuffle: bool | None = None):
        self.records, self.cfg, self.split, self.repeat = records, cfg, split, repeat
        self.shuffle = split != "val" if shuffle is None else shuffle  # validation: file order unless asked
        self.name = records.source.name
        self.epoch, self.position = 0, 0  # position: documents handed out in this epoch
        self.n_empty, self.n_other_split, self.n_read = 0, 0, 0  # documents read and skipped, counted
        self._iter: Iterator | None = None
        self._all: list[tuple[str, str]] | None = None  # a file's documents of this split, read once

    def _epoch_documents(self, epoch: int) -> Iterator[tuple[str, str]]:
        """This epoch's documents in order. Local and sample files are read in a fresh seeded permutation per
        epoch: a small shuffle buffer would leave each time bucket a contiguous stretch of the file (a few books,
        one crawl period), confounding "time seen" with file order. Hub streams cannot be permuted; they go
        through a shuffle buffer of data.shuffle_buffer documents (docs/data.md: the confound that remains)."""
        rng = random.Random(f"{self.cfg.seed}/{self.name}/{epoch}" + ("/val" if self.split == "val" else ""))
        if self.records.streamed:
            docs = self._filter(self.records.source.documents(iter(self.records), self.cfg.sentences_per_passage),
                                self.split == "val")
            return buffer_shuffle(docs, self.cfg.shuffle_buffer, rng) if self.shuffle else docs
        if self._all is None:  # read once; every epoch permutes the same list
            self._all = list(self._filter(self.records.source.documents(iter(self.records),
                                                                        self.cfg.sentences_per_passage),
                                          self.split == "val"))
        if not self.shuffle:
            return iter(self._all)  # the validation loss's rows: file order, fixed whatever the seed
        order = list(range(len(self._all)))
        rng.shuffle(order)
        return (self._all[i] for i in order)

    def _filter(self, docs, want_val):
        for key, text in docs:
            if is_validation(self.name, key, self.cfg.val_percent) != want_val:
                self.n_other_split += 1
            elif not text.strip():
                self.n_empty += 1
            else:
                self.n_read += 1
                yield key, text

    def next(self) -> tuple[str, str, int] | None:
        """(key, text, epoch) of the next document; None when a non-repeating source is exhausted."""
        if self._iter is None:
            self._iter = self._epoch_documents(self.epoch)
        for _ in range(2):
            try:
                key, text = next(self._iter)
                self.position += 1
                return key, text, self.epoch
            except StopIteration:
                if self.position == 0:
                    raise DataSourceError(
                        f"source {self.name}: {self.records.where} has no non-empty {self.split} documents"
                    ) from None
                if not self.repeat:
                    return None
                self.epoch, self.position = self.epoch + 1, 0
                self._iter = self._epoch_documents(self.epoch)
        raise AssertionError("unreachable")

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position, "n_empty": self.n_empty,
                "n_other_split": self.n_other_split, "n_read": self.n_read}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.position = state["epoch"], state["position"]
        self.n_empty, self.n_other_split, self.n_read = 0, 0, 0
        if state == self.state_dict():  # never read: it opens (and counts) on its first next()
            self._iter = None
            return
        self._iter = self._epoch_documents(state["epoch"])
        for _ in range(state["position"]):  # replay the epoch's order up to where we were
            next(self._iter)
        self.n_empty, self.n_other_split, self.n_read = state["n_empty"], state["n_other_split"], state["n_read"]


@dataclass
class Row:
    tokens: torch.Tensor  # [seq_len] int64
    doc_index: torch.Tensor  # [seq_len] int64, running document index
    source_index: torch.Tensor  # [seq_len] int64, index into SOURCE_NAMES; PAD_SOURCE for padding
    docs: list[Document] = field(default_factory=list)  # documents with tokens in this row (text and ids dropped)

    def span(self, doc: Document) -> tuple[int, int]:
        """[start, end) of the document's tokens in this row (they are contiguous: documents are packed)."""
        where = (self.doc_index == doc.index).nonzero().flatten()
        return int(where[0]), int(where[-1]) + 1


class MixtureStream:
    """Packed rows of EOS-separated documents drawn from the weighted mixture of sources."""

    def __init__(self, cfg: DataConfig, tokenizer, split: str = "train", seed: int | None = None,
                 repeat: bool = True, records: dict[str, SourceRecords] | None = None, shuffle: bool | None = None):
        self.cfg, self.tokenizer, self.split = cfg, tokenizer, split
        self.names = [s for s in SOURCE_NAMES if cfg.mixture.get(s, 0) > 0]
        self.weights = np.array([cfg.mixture[s] for s in self.names]) / sum(cfg.mixture[s] for s in self.names)
        records = records or {}
        self.sources = {
            n: SourceDocuments(records.get(n) or SourceRecords(SOURCES[n], cfg.origin, cfg.local_dir), cfg, split, repeat,
                               shuffle)
            for n in self.names
        }
        self.rng = np.random.default_rng(cfg.seed if seed is None else seed)
        self.eos = tokenizer.eos_token_id
        self.bos = tokenizer.bos_token_id if adds_bos(tokenizer) else None
        self.next_doc_index = 0
        self.docs_per_source = {n: 0 for n in self.names}
        self.tokens_per_source = {n: 0 for n in self.names}
        self._carry: list[tuple[int, int, int]] = []  # (token, doc index, source index) not yet in a row
        self._carry_docs: dict[int, Document] = {}

    # -- documents ------------------------------------------------------------------------------------
    def next_document(self) -> Document | None:
        live = [i for i, n in enumerate(self.names) if self.sources[n] is not None]
        if not live:
            return None
        w = self.weights[live] / self.weights[live].sum()
        name = self.names[live[self.rng.choice(len(live), p=w)]]
        got = self.sources[name].next()
        if got is None:  # a finite (val) source ran out: draw again from the others
            self.sources[name] = None
            return self.next_document()
        key, text, epoch = got
        doc = Document(self.next_doc_index, name, key, epoch, text)
        self.next_doc_index += 1
        self.docs_per_source[name] += 1
        return doc

    def documents(self) -> Iterator[Document]:
        """Whole documents, tokenised, in mixture order (no packing)."""
        while (doc := self.next_document()) is not None:
            doc.tokens = self.tokenize(doc)
            yield doc

    def tokenize(self, doc: Document) -> list[int]:
        ids = self.tokenizer(doc.text, add_special_tokens=False)["input_ids"]
        return ([self.bos] if self.bos is not None else []) + ids + [self.eos]

    # -- rows -----------------------------------------------------------------------------------------
    def next_row(self) -> Row | None:
        T = self.cfg.seq_len
        while len(self._carry) < T:
            doc = self.next_document()
            if doc is None:
                break
            src = SOURCE_NAMES.index(doc.source)
            ids = self.tokenize(doc)
            self.tokens_per_source[doc.source] += len(ids)
            self._carry.extend((t, doc.index, src) for t in ids)
            self._carry_docs[doc.index] = Document(doc.index, doc.source, doc.key, doc.epoch, "")  # ids: in the row
        if not self._carry:
            return None
        take, self._carry = self._carry[:T], self._carry[T:]
        pad = T - len(take)  # only when a finite stream ended
        take += [(self.eos, -1, PAD_SOURCE)] * pad
        tokens, doc_index, source_index = (torch.tensor(c, dtype=torch.long) for c in zip(*take))
        in_row = sorted(set(doc_index.tolist()) - {-1})
        docs = [self._carry_docs[i] for i in in_row]
        still = {d for _, d, _ in self._carry}
        self._carry_docs = {i: d for i, d in self._carry_docs.items() if i in still}
        return Row(tokens, doc_index, source_index, docs)

    def __iter__(self) -> Iterator[Row]:
        while (row := self.next_row()) is not None:
            yield row

    # -- resume ---------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "rng": self.rng.bit_generator.state,
            "next_doc_index": self.next_doc_index,
            "sources": {n: (s.state_dict() if s is not None else None) for n, s in self.sources.items()},
            "docs_per_source": dict(self.docs_per_source),
            "tokens_per_source": dict(self.tokens_per_source),
            # token ids, document indices, source indices of the tokens not yet in a row: three flat lists, not one
            # small list per token (the prefetch worker sends a state with every row; thousands of tiny lists per
            # row made the receiving process's garbage collector stall for ≈ 200 ms every few hundred rows)
            "carry_columns": [list(column) for column in zip(*self._carry)] if self._carry else [[], [], []],
            "carry_docs": [[d.index, d.source, d.key, d.epoch] for d in self._carry_docs.values()],
        }

    def load_state_dict(self, state: dict) -> None:
        if list(state["sources"]) != self.names:
            raise ValueError(f"stream state is for sources {list(state['sources'])}, this stream has {self.names}")
        self.rng.bit_generator.state = state["rng"]
        self.next_doc_index = state["next_doc_index"]
        for name, s in state["sources"].items():
            if s is None:
                self.sources[name] = None
            else:
                self.sources[name].load_state_dict(s)
        self.docs_per_source = dict(state["docs_per_source"])
        self.tokens_per_source = dict(state["tokens_per_source"])
        self._carry = list(zip(*state["carry_columns"]))
        self._carry_docs = {d[0]: Document(d[0], d[1], d[2], d[3], "") for d in state["carry_docs"]}

    def stats(self) -> dict:
        return stream_stats(self.state_dict())

    def close(self) -> None:
        """Nothing to stop (PrefetchedStream stops its thread)."""


def stream_stats(state: dict) -> dict:
    """Realised shares, epochs and skipped documents of a stream state (MixtureStream.state_dict), for logging."""
    docs, tokens = state["docs_per_source"], state["tokens_per_source"]
    n_docs, n_tok = max(1, sum(docs.values())), max(1, sum(tokens.values()))
    live = {n: s for n, s in state["sources"].items() if s is not None}
    other, read = sum(s["n_other_split"] for s in live.values()), sum(s["n_read"] for s in live.values())
    return {
        "doc_share": {n: docs[n] / n_docs for n in docs},
        "token_share": {n: tokens[n] / n_tok for n in tokens},
        "epochs": {n: s["epoch"] for n, s in live.items()},  # completed passes over the source
        "empty_skipped": {n: s["n_empty"] for n, s in live.items()},
        "other_split_fraction": other / max(1, other + read),  # val docs skipped by a train stream
    }


def adds_bos(tokenizer) -> bool:
    """Whether the model expects a BOS (Gemma does, SmolLM2 does not): ask its own tokenizer."""
    bos = tokenizer.bos_token_id
    return bos is not None and tokenizer("a")["input_ids"][:1] == [bos]


def collate(rows: list[Row]) -> dict[str, torch.Tensor]:
    """Rows → tokens and source_index [rows, seq_len] (the per-token document index stays with the rows)."""
    return {"tokens": torch.stack([r.tokens for r in rows]), "source_index": torch.stack([r.source_index for r in rows])}
