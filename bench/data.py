"""Benchmark of the training-data path: index build, sampling, collation, peak memory.

Generates 25 datasets x 200k query groups (1 positive, 7 negatives, short texts; ~0.5 KB a line) under
bench/_work/ (git-ignored; reused when present), then measures in one process:
- index build rate: lines/s of opening every dataset with an empty index cache (scan + validate + hash),
  and the time to reopen them all from the cache;
- sampling rate: examples/s of the mixture sampler + random row reads + example building (no tokenizer),
  homogeneous and mixed, 256 groups per step, 8 passages per query;
- collation rate: examples/s of TrainCollator with the real MiniLM tokenizer (8 passages per query);
- peak RSS of the data path (before torch is imported) and of the whole process.

Run: .venv/bin/python bench/data.py [--datasets 25] [--lines 200000]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

WORK = REPO / "bench" / "_work" / "data"
WORDS = ("river mountain city music science history game film bird ocean forest planet engine market "
         "doctor garden winter summer king queen bridge island train school paper energy water light").split()


def text(rng: random.Random, n: int) -> str:
    return " ".join(rng.choices(WORDS, k=n))


def group(rng: random.Random, i: int) -> dict:
    return {"query": text(rng, 8), "positive_passages": [{"docid": f"p{i}", "text": text(rng, 10)}],
            "negative_passages": [{"docid": f"n{i}-{j}", "text": text(rng, 10)} for j in range(7)]}


def generate(folder: Path, datasets: int, lines: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for d in range(datasets):
        path = folder / f"ds{d:02d}.jsonl"
        paths.append(path)
        if path.is_file():
            continue
        rng = random.Random(d)
        pool = [json.dumps(group(rng, i)) for i in range(1000)]
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w") as fh:
            for start in range(0, lines, 1000):
                fh.write("\n".join(pool[: min(1000, lines - start)]) + "\n")
        tmp.rename(path)
    return paths


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=int, default=25)
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args()

    from tdro.data.examples import build_example, example_rng
    from tdro.data.reader import JsonlReader
    from tdro.data.sampler import MixtureSampler
    from tdro.enums import MixtureMode, Pooling, PromptStyle
    from tdro.spec.cards import DatasetCard
    from tdro.spec.retriever import RetrieverConfig

    t0 = time.perf_counter()
    paths = generate(WORK / f"{args.datasets}x{args.lines}", args.datasets, args.lines)
    size = sum(p.stat().st_size for p in paths) / 2**30
    print(f"data ready in {time.perf_counter() - t0:.1f} s ({size:.2f} GiB)")
    # In-run baseline for the index rate: the standard library's json.loads over the same lines.
    count = 0
    t0 = time.perf_counter()
    with open(paths[0], "rb") as fh:
        for line in fh:
            json.loads(line)
            count += 1
    baseline = count / (time.perf_counter() - t0)
    print(f"baseline json.loads: {baseline:,.0f} lines/s")
    cache = WORK / "index"
    shutil.rmtree(cache, ignore_errors=True)

    t0 = time.perf_counter()
    readers = [JsonlReader(p, cache_dir=cache) for p in paths]
    build = time.perf_counter() - t0
    total = sum(len(r) for r in readers)
    t0 = time.perf_counter()
    readers = [JsonlReader(p, cache_dir=cache) for p in paths]
    reopen = time.perf_counter() - t0
    assert not any(r.built_files for r in readers)
    print(f"index build: {total} lines in {build:.1f} s = {total / build:,.0f} lines/s "
          f"({total / build / baseline:.2f}x json.loads, {total / build / 200_000:.2f}x the 200k target); "
          f"reopen from cache {reopen:.2f} s; RSS peak {peak_rss_mb():.0f} MB")

    config = RetrieverConfig(pooling=Pooling.mean, prompt_style=PromptStyle.e5, query_max_length=64,
                             passage_max_length=64)
    cards = [DatasetCard(name=p.stem, path=str(p), instructions=["Retrieve passages"]) for p in paths]
    sizes = [len(r) for r in readers]
    results = {}
    for mode in MixtureMode:
        sampler = MixtureSampler(sizes, [1.0] * len(sizes), mode, batch_size=256, seed=0)
        n = 0
        t0 = time.perf_counter()
        examples = []
        for _ in range(args.steps):
            step = sampler.step
            pairs = sampler.next_step()
            examples = [build_example(readers[d][row], cards[d], 8, example_rng(0, step, 0, i), config)
                        for i, (d, row) in enumerate(pairs)]
            n += len(examples)
        rate = n / (time.perf_counter() - t0)
        results[mode] = rate
        print(f"sampling ({mode.value}): {rate:,.0f} examples/s ({rate / 20_000:.2f}x the 20k target)")

    print(f"peak RSS of the data path (no torch yet): {peak_rss_mb():.0f} MB")
    from transformers import AutoTokenizer

    from tdro.data.collator import TrainCollator
    from tests.tiny_models import minilm_path

    collator = TrainCollator(AutoTokenizer.from_pretrained(minilm_path()), config)
    t0 = time.perf_counter()
    reps = 10
    for _ in range(reps):
        batch = collator(examples, [0] * len(examples))
    rate = reps * len(examples) / (time.perf_counter() - t0)
    print(f"collation (MiniLM tokenizer, 8 passages/query): {rate:,.0f} examples/s "
          f"({batch.passages['input_ids'].shape} passage tensor)")
    print(f"peak RSS with torch and the tokenizer: {peak_rss_mb():.0f} MB; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
