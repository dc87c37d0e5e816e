"""Inspect the data pipeline: `python experiments/inspect_data.py --preset demo --rows 200` prints one JSON object."""

from __future__ import annotations

import argparse
import json
import sys
import time

from tqdm import tqdm

from chrono_membench.config import ConfigError, load_config
from chrono_membench.data import PAD_SOURCE, MixtureStream
from chrono_membench.data.sources import sample_provenance
from chrono_membench.errors import BAD_INPUT, fault_of
from chrono_membench.model import load_tokenizer


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--config", default=None, help="a YAML config file instead of a preset")
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. data.seq_len=512")
    args = parser.parse_intermixed_args(argv)
    try:
        cfg = load_config(None if args.config else args.preset, args.config, args.overrides)
        if args.rows <= 0:
            raise ConfigError(f"--rows must be a positive integer, got {args.rows}")
        tokenizer = load_tokenizer(cfg.model)
        stream = MixtureStream(cfg.data, tokenizer, split="train")
    except BAD_INPUT as e:
        print(fault_of(e).line(e), file=sys.stderr)
        return fault_of(e).code
    start = time.perf_counter()
    real = total = 0
    for _ in tqdm(range(args.rows), desc="rows", file=sys.stderr):
        row = stream.next_row()
        real += int((row.source_index != PAD_SOURCE).sum())
        total += row.tokens.numel()
    elapsed = time.perf_counter() - start
    stats = stream.stats()
    print(json.dumps({
        "text": sample_provenance() if cfg.data.origin == "sample" else cfg.data.origin,  # real or synthetic, per source
        "rows": args.rows,
        "seq_len": cfg.data.seq_len,
        "documents": sum(stream.docs_per_source.values()),
        "packing_efficiency": real / total,
        "doc_share": stats["doc_share"],
        "token_share": stats["token_share"],
        "val_fraction": stats["other_split_fraction"],
        "epochs": stats["epochs"],
        "empty_skipped": stats["empty_skipped"],
        "tokens_per_s": total / elapsed,
    }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
