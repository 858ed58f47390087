"""Run by tests/test_train_distributed.py under `accelerate launch --multi_gpu --num_processes 2`.

argv: MODEL_DIR OUT_PREFIX [STAGE_FILE]. Computes the cross-device InfoNCE loss (hard negatives on) and
its gradients on each process's half of a fixed batch, whole, GradCache-chunked, in length-aware chunks
and both (`VARIANTS`), and saves them to OUT_PREFIX.rank<i>.pt; then, given a stage file, runs the
training stage on both processes.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


# (label, GradCache chunk size, token budget): whole batch, GradCache, length chunks, both.
VARIANTS = (("full", None, None), ("chunked", 1, None), ("by_length", None, 16), ("by_length_chunked", 2, 16))


def main(model_dir: str, out_prefix: str, stage_path: str | None = None) -> None:
    import torch
    from accelerate import Accelerator

    from tdro.enums import Pooling
    from tdro.modeling.encoder import Encoder
    from tdro.modeling.losses import ContrastiveLoss
    from tdro.spec.retriever import RetrieverConfig
    from tdro.stages.step import forward_backward
    from tests.train_helpers import grad_check_batch

    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    encoder = Encoder.from_pretrained(model_dir, RetrieverConfig(pooling=Pooling.mean))
    encoder.eval()  # no dropout: the processes' encodings must equal the single-process ones
    query, passages = grad_check_batch(
        encoder.tokenizer, accelerator.num_processes, accelerator.process_index
    )
    model = accelerator.prepare(encoder)
    loss_fn = ContrastiveLoss(passages_per_query=3, temperature=0.05, cross_device=True)
    saved = {"world": accelerator.num_processes}
    for label, chunk, budget in VARIANTS:
        loss = forward_backward(
            model, query, passages, loss_fn, accelerator=accelerator, chunk_size=chunk, token_budget=budget
        )
        saved[f"{label}_loss"] = (loss / loss_fn.scale()).item()
        saved[f"{label}_grads"] = {
            n: p.grad.detach().clone()
            for n, p in accelerator.unwrap_model(model).named_parameters()
            if p.grad is not None
        }
        model.zero_grad(set_to_none=True)
    torch.save(saved, f"{out_prefix}.rank{accelerator.process_index}.pt")
    if stage_path:
        from tdro.spec.stage_file import read_stage_file
        from tdro.stages.train import run

        run(read_stage_file(stage_path))


if __name__ == "__main__":
    main(*sys.argv[1:])
