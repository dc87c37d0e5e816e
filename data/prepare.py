"""Download N documents of a hub source to local parquet (needs network), for `data.origin=local`.

    python data/prepare.py --source fineweb_edu --n 50000 --out data/local
    python data/prepare.py --all --out data/local      # every source at the seed's count

Then train offline with `data.origin=local data.local_dir=data/local`. Records keep the hub's columns;
WikiText and BookCorpus are cut at document boundaries (articles; passages of 40 sentences).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from chrono_membench.data.sources import _ARTICLE_HEADING, SOURCES, DataSourceError, SourceRecords
from chrono_membench.run_dir import atomic_write

SENTENCES_PER_PASSAGE = 40


def documents_so_far(name: str, record: dict, count: int) -> int:
    """Running document count after `record` (records are lines for WikiText, sentences for BookCorpus)."""
    if name == "wikitext103":
        return count + bool(_ARTICLE_HEADING.match(record["text"] or ""))
    return count + 1


def prepare(name: str, n: int, out: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    source = SOURCES[name]
    records = SourceRecords(source, "hub")  # a clear error when offline
    target_units = n * SENTENCES_PER_PASSAGE if name == "bookcorpus" else n
    rows, count = [], 0
    with tqdm(total=target_units, desc=name) as bar:
        for record in records:
            new = documents_so_far(name, record, count)
            if name == "wikitext103" and new > n:
                break  # the next article would be the (n+1)-th
            rows.append(record)
            bar.update(new - count)
            count = new
            if name != "wikitext103" and count >= target_units:
                break
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.parquet"
    with atomic_write(path) as tmp:
        pq.write_table(pa.Table.from_pylist(rows), tmp)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", choices=sorted(SOURCES))
    parser.add_argument("--all", action="store_true", help="every source at the seed's document count")
    parser.add_argument("--n", type=int, default=None, help="documents to keep (default: the seed's count)")
    parser.add_argument("--out", type=Path, default=Path("data/local"))
    args = parser.parse_args()
    if not args.source and not args.all:
        parser.error("give --source NAME or --all")
    names = sorted(SOURCES) if args.all else [args.source]
    try:
        for name in names:
            path = prepare(name, args.n or SOURCES[name].seed_count, args.out)
            print(f"{name}: wrote {path}")
    except DataSourceError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
