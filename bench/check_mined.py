"""Check a mined BEIR split: every query has N negatives from candidate ranks [start, end), none a positive.

    python bench/check_mined.py BEIR_FOLDER SPLIT MINED.jsonl [--negatives 16 --start 2 --end 100]

Reads the groups `tdro data mine` wrote, the candidates parquet beside them and the split's qrels; prints
one line of counts and exits 1 if any rule is broken.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import duckdb

from tdro.retrieval.beir import load_beir


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("beir", type=Path)
    parser.add_argument("split")
    parser.add_argument("mined", type=Path)
    parser.add_argument("--negatives", type=int, default=16)
    parser.add_argument("--start", type=int, default=2)
    parser.add_argument("--end", type=int, default=100)
    args = parser.parse_args()
    qrels = load_beir(args.beir, args.split).qrels
    candidates_file = args.mined.with_name(args.mined.stem + ".candidates.parquet")
    ranked = {q: list(ids) for q, ids in duckdb.sql(
        f"SELECT query_id, doc_ids FROM '{candidates_file}'").fetchall()}
    groups = [json.loads(line) for line in args.mined.read_text().splitlines() if line.strip()]
    full = positives = outside = 0
    for group in groups:
        qid, negatives = group["query_id"], [p["docid"] for p in group["negative_passages"]]
        relevant = {d for d, score in qrels[qid].items() if score > 0}
        full += len(negatives) == args.negatives
        positives += sum(d in relevant for d in negatives)
        outside += sum(not args.start <= ranked[qid].index(d) < args.end for d in negatives)
    print(f"groups {len(groups)}, with {args.negatives} negatives {full}, negatives that are positives "
          f"{positives}, outside ranks [{args.start}, {args.end}) {outside}")
    return 0 if full == len(groups) and positives == outside == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
