"""Device benchmark of the GPU path (issue 17): a Qwen1.5-0.5B-shaped decoder, stage 0 and stage 1 steps,
then a faiss search. Not a test, but `tests/test_bench_gpu.py` runs it at `--tiny` size on CPU so it
cannot rot.

On a GPU (the default shape): a randomly initialised Qwen2 decoder built from Qwen1.5-0.5B's published
configuration (no download), bf16 autocast, SDPA attention, gradient checkpointing, tdro's own step
(`tdro.stages.step.forward_backward` with the length-aware chunked forward) and AdamW, on random token
batches of the paper's stage-0 shape scaled to one GPU (its 2048 query groups per step are 256 per GPU
of 8; here `--queries` per step), log-uniform lengths up to 64 / 256 tokens. It reports tokens/s, model
FLOP utilisation (6 x non-embedding parameters x real tokens, over the bf16 peak of the device), the
peak memory, and the stage-1 / stage-0 step ratio (stage 1: 8 passages per query, only hard negatives,
per-sample losses of the proxy plus the frozen reference's forward in the proxy's precision). Then it
encodes a sample of passages (encoding rate; the time for `--corpus` passages is extrapolated) and
searches `--corpus` x hidden-size unit vectors with faiss (GPU index when faiss has GPU support).

With `--tiny` (and on CPU) it runs fp32, the model and shapes shrunk, the MFU against the measured fp32
matmul rate. Prints one JSON object.

Usage:
    .venv/bin/python bench/gpu.py [--tiny] [--steps 20] [--warmup 3] [--queries 32] [--peak-tflops X]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "disabled")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# Qwen1.5-0.5B's config.json (published dimensions).
QWEN15_05B = dict(
    vocab_size=151936, hidden_size=1024, intermediate_size=2816, num_hidden_layers=24,
    num_attention_heads=16, num_key_value_heads=16, max_position_embeddings=32768, rope_theta=1e6,
    rms_norm_eps=1e-6, tie_word_embeddings=True,
)
TINY = dict(vocab_size=512, hidden_size=64, intermediate_size=176, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512)
# Dense bf16 peak FLOP/s by device name (vendor data sheets, SXM parts).
BF16_PEAK = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 125e12}


@dataclass(frozen=True)
class Shape:
    queries: int
    passages_s0: int
    passages_s1: int
    query_len: int
    passage_len: int
    corpus: int
    encode_rows: int
    search_queries: int


GPU_SHAPE = Shape(32, 8, 8, 64, 256, 1_000_000, 4096, 10_000)
TINY_SHAPE = Shape(4, 2, 4, 8, 16, 2_000, 16, 50)


def matmul_rate(device, dtype, seconds: float = 0.5, n: int = 1024) -> float:
    import torch

    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    best, end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        torch.mm(a, b)
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = max(best, 2 * n**3 / (time.perf_counter() - t0))
    return best


def random_batch(rows: int, max_len: int, vocab: int, generator, device):
    """Left-padded random token rows, lengths log-uniform in [4, max_len] (real text is skewed short)."""
    import torch

    low = math.log(min(4, max_len))
    lengths = torch.exp(torch.empty(rows).uniform_(low, math.log(max_len), generator=generator)).long()
    ids = torch.randint(1, vocab, (rows, max_len), generator=generator)
    mask = (torch.arange(max_len)[None, :] >= (max_len - lengths)[:, None]).long()
    return {"input_ids": (ids * mask).to(device), "attention_mask": mask.to(device)}


def build(tiny: bool, device, gpu: bool):
    import torch
    from transformers import Qwen2Config, Qwen2Model

    from tdro.enums import PaddingSide, Pooling
    from tdro.modeling.encoder import Encoder
    from tdro.spec.retriever import RetrieverConfig

    torch.manual_seed(0)
    config = Qwen2Config(**(TINY if tiny else QWEN15_05B), attn_implementation="sdpa")
    model = Qwen2Model(config)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    retriever = RetrieverConfig(pooling=Pooling.last_token, padding_side=PaddingSide.left)
    encoder = Encoder(model, None, retriever).to(device)
    embedding = model.get_input_embeddings().weight.numel()
    return encoder, config, sum(p.numel() for p in model.parameters()) - embedding


def timed(fn, steps: int, warmup: int, device) -> float:
    import torch

    times = []
    for k in range(warmup + steps):
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if k >= warmup:
            times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def faiss_search(vectors, queries, k: int = 100) -> tuple[float, bool]:
    import faiss

    on_gpu = hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0
    index = faiss.IndexFlatIP(vectors.shape[1])
    if on_gpu:
        index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
    index.add(vectors)
    t0 = time.perf_counter()
    index.search(queries, k)
    return time.perf_counter() - t0, on_gpu


def run(args) -> dict:
    import numpy as np
    import torch

    from tdro.modeling.losses import ContrastiveLoss
    from tdro.spec.experiment import TOKEN_BUDGET, ResourcesSpec
    from tdro.stages.runtime import make_accelerator
    from tdro.stages.step import encode_by_length, forward_backward

    gpu = torch.cuda.is_available() and not args.cpu
    tiny = args.tiny or not gpu
    shape = TINY_SHAPE if args.tiny else GPU_SHAPE
    shape = Shape(**{**asdict(shape), **({"queries": args.queries} if args.queries else {})})
    accelerator = make_accelerator(ResourcesSpec(mixed_precision="bf16" if gpu else "no"))
    device = accelerator.device
    encoder, config, params = build(tiny, device, gpu)
    reference, _, _ = build(tiny, device, gpu)
    reference.eval().requires_grad_(False)
    optimizer = torch.optim.AdamW(encoder.parameters(), lr=1e-5)
    model, optimizer = accelerator.prepare(encoder, optimizer)
    model.train()
    budget = args.token_budget or TOKEN_BUDGET
    gen = torch.Generator().manual_seed(0)
    vocab = config.vocab_size
    q = random_batch(shape.queries, shape.query_len, vocab, gen, device)
    p0 = random_batch(shape.queries * shape.passages_s0, shape.passage_len, vocab, gen, device)
    p1 = random_batch(shape.queries * shape.passages_s1, shape.passage_len, vocab, gen, device)
    loss0 = ContrastiveLoss(passages_per_query=shape.passages_s0, temperature=0.02)
    loss1 = ContrastiveLoss(passages_per_query=shape.passages_s1, temperature=0.02, only_hard_negatives=True)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if gpu else torch.autocast("cpu", enabled=False)

    def stage0() -> None:
        forward_backward(model, q, p0, loss0, accelerator=accelerator, token_budget=budget)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def stage1() -> None:
        proxy = loss1(encode_by_length(model, q, budget, accelerator=accelerator),
                      encode_by_length(model, p1, budget, accelerator=accelerator), reduction="none")
        with torch.inference_mode(), autocast:  # the frozen reference in the proxy's precision
            ref = loss1(encode_by_length(reference, q, budget, accelerator=accelerator),
                        encode_by_length(reference, p1, budget, accelerator=accelerator), reduction="none")
        accelerator.backward((proxy / ref.clamp(min=1e-6)).mean())
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    if gpu:
        torch.cuda.reset_peak_memory_stats()
    s0 = timed(stage0, args.steps, args.warmup, device)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss << 10  # Linux: KiB
    peak_mem = torch.cuda.max_memory_allocated() if gpu else rss
    s1 = timed(stage1, max(1, args.steps // 2), 1, device)
    tokens0 = float(q["attention_mask"].sum() + p0["attention_mask"].sum())
    name = torch.cuda.get_device_name() if gpu else "cpu"
    if args.peak_tflops:
        peak = args.peak_tflops * 1e12
    else:  # the data-sheet bf16 peak of a known GPU, else the matmul rate measured here
        known = [v for k, v in BF16_PEAK.items() if gpu and k in name]
        peak = known[0] if known else matmul_rate(device, torch.bfloat16 if gpu else torch.float32)

    rows = random_batch(shape.encode_rows, shape.passage_len, vocab, gen, device)
    model.eval()
    with torch.inference_mode(), autocast:
        t0 = time.perf_counter()
        for start in range(0, shape.encode_rows, 256):
            encode_by_length(model, {k: v[start:start + 256] for k, v in rows.items()}, budget,
                             accelerator=accelerator)
        if gpu:
            torch.cuda.synchronize()
        encode_rate = shape.encode_rows / (time.perf_counter() - t0)
    rng = np.random.default_rng(0)
    corpus = rng.standard_normal((shape.corpus, config.hidden_size), dtype=np.float32)
    corpus /= np.linalg.norm(corpus, axis=1, keepdims=True)
    search_s, faiss_gpu = faiss_search(corpus, corpus[: shape.search_queries])
    return {
        "device": name, "precision": "bf16" if gpu else "fp32", "model": "tiny" if tiny else "qwen1.5-0.5b",
        "non_embedding_params": params, "token_budget": budget, "stage0_seconds": s0, "stage1_seconds": s1,
        "stage1_over_stage0": s1 / s0, "stage0_tokens_per_second": tokens0 / s0,
        "stage0_mfu": 6 * params * tokens0 / s0 / peak, "peak_flops": peak, "peak_memory_bytes": peak_mem,
        "encode_passages_per_second": encode_rate,
        "encode_corpus_seconds_extrapolated": shape.corpus / encode_rate,
        "corpus": shape.corpus, "search_queries": shape.search_queries, "search_seconds": search_s,
        "faiss_gpu": faiss_gpu,
    }


def parse(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="shrunk model and shapes (make test)")
    parser.add_argument("--cpu", action="store_true", help="stay on CPU even with a GPU")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--queries", type=int, default=None, help="query groups per step")
    parser.add_argument("--token-budget", type=int, default=None)
    parser.add_argument("--peak-tflops", type=float, default=None, help="bf16 peak of the device")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    result = run(parse(argv))
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
