"""T5 checkpoints as retrievers (GTR): only the encoder stack of a full encoder-decoder checkpoint is loaded.

The tiny T5 is saved with its decoder and LM head; the tests check that tdro's Encoder holds exactly the
checkpoint's encoder, that its vectors are the mean-pooled, normalised encoder states under right and left
padding, that it trains, that a saved folder loads in transformers and sentence-transformers with the same
vectors and evaluates with `tdro eval`, and that other encoder-decoder types are refused.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from tdro.data.collator import TrainCollator
from tdro.enums import PaddingSide, Pooling, PromptStyle
from tdro.errors import UserError
from tdro.modeling.encoder import Encoder
from tdro.modeling.losses import ContrastiveLoss
from tdro.spec.experiment import ResourcesSpec
from tdro.spec.retriever import RetrieverConfig
from tdro.stages.runtime import make_accelerator
from tdro.stages.step import forward_backward
from tests.test_retrieval_eval import FIXTURE, METRICS, _eval
from tests.train_helpers import GRAD_PASSAGES, GRAD_QUERIES, model_card

TEXTS = ["river", "the king and the queen of the city", "blue bird in the tree"]
GTR = RetrieverConfig(pooling=Pooling.mean, normalize=True, prompt_style=PromptStyle.none)


def _full_model(folder: Path):
    from transformers import T5ForConditionalGeneration

    return T5ForConditionalGeneration.from_pretrained(folder).eval()


def _by_hand(model, tokenizer, texts: list[str]) -> torch.Tensor:
    """Each text alone through `model.encoder` (a T5 stack), its token states averaged, L2-normalised."""
    rows = []
    with torch.no_grad():
        for text in texts:
            ids = torch.tensor([tokenizer(text)["input_ids"]])
            states = model.encoder(input_ids=ids).last_hidden_state[0]
            rows.append(F.normalize(states.mean(dim=0), dim=0))
    return torch.stack(rows)


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory, tiny_t5_dir: Path) -> Path:
    folder = tmp_path_factory.mktemp("t5_saved") / "retriever"
    Encoder.from_pretrained(tiny_t5_dir, GTR).save_pretrained(folder)
    return folder


def test_full_checkpoint_loads_as_its_encoder(tiny_t5_dir: Path) -> None:
    from transformers import T5EncoderModel

    enc = Encoder.from_pretrained(tiny_t5_dir, GTR)
    assert type(enc.model) is T5EncoderModel and enc.dim == 32
    assert not any("decoder" in name for name, _ in enc.model.named_parameters())
    full = _full_model(tiny_t5_dir)
    ours = dict(enc.model.named_parameters())
    for name in ("shared.weight", "encoder.block.0.layer.0.SelfAttention.q.weight",
                 "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
                 "encoder.block.1.layer.1.DenseReluDense.wo.weight", "encoder.final_layer_norm.weight"):
        assert torch.equal(ours[name], full.get_parameter(name)), name
    encoder_size = sum(p.numel() for p in full.encoder.parameters())  # the shared embedding included
    assert sum(p.numel() for p in enc.model.parameters()) == encoder_size


@pytest.mark.parametrize("side", [PaddingSide.right, PaddingSide.left])
def test_vectors_are_mean_pooled_encoder_states(tiny_t5_dir: Path, side: PaddingSide) -> None:
    config = GTR.with_overrides({"padding_side": side})
    enc = Encoder.from_pretrained(tiny_t5_dir, config).eval()
    batch = TrainCollator(enc.tokenizer, config).encode(TEXTS, 32)
    pad_column = 0 if side is PaddingSide.left else -1
    assert batch["attention_mask"][0, pad_column] == 0  # "river" is padded on the side under test
    # The T5 tokenizer appends </s>; eos `none` keeps it, as GTR's sentence-transformers models do.
    assert enc.tokenizer("river")["input_ids"][-1] == enc.tokenizer.eos_token_id
    expected = _by_hand(_full_model(tiny_t5_dir), enc.tokenizer, TEXTS)
    with torch.no_grad():
        ours = enc(**batch)
        # token_type_ids (which tokenizers return) must not reach T5's forward, which takes none.
        with_types = enc(**batch, token_type_ids=torch.zeros_like(batch["input_ids"]))
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(with_types, ours)


def test_training_steps_lower_the_loss(tiny_t5_dir: Path) -> None:
    torch.manual_seed(0)
    enc = Encoder.from_card(model_card(tiny_t5_dir, gradient_checkpointing=True))
    assert enc.model.is_gradient_checkpointing
    collator = TrainCollator(enc.tokenizer, enc.config)
    query, passages = collator.encode(GRAD_QUERIES, 16), collator.encode(GRAD_PASSAGES, 16)
    loss_fn = ContrastiveLoss(passages_per_query=3, temperature=0.05, bidirectional=True)  # GTR's loss
    accelerator = make_accelerator(ResourcesSpec(mixed_precision="no"))
    optimizer = torch.optim.AdamW(enc.parameters(), lr=1e-2)

    def eval_loss() -> float:
        enc.eval()  # no dropout, so losses before and after compare
        with torch.no_grad():
            return float(loss_fn(enc(**query), enc(**passages)))

    before = eval_loss()
    weight = enc.model.encoder.block[0].layer[0].SelfAttention.q.weight
    start = weight.detach().clone()
    enc.train()
    for _ in range(3):
        optimizer.zero_grad()
        loss = forward_backward(enc, query, passages, loss_fn, accelerator=accelerator)
        assert math.isfinite(loss.item())
        optimizer.step()
    after = eval_loss()
    assert not torch.equal(weight, start)
    assert math.isfinite(before) and after < before


def test_saved_folder_loads_in_transformers_and_sentence_transformers(tiny_t5_dir: Path, saved: Path) -> None:
    from sentence_transformers import SentenceTransformer
    from transformers import T5EncoderModel

    ours_enc = Encoder.from_pretrained(tiny_t5_dir, GTR).eval()
    with torch.no_grad():
        ours = ours_enc(**TrainCollator(ours_enc.tokenizer, GTR).encode(TEXTS, 32))
    again = Encoder.from_pretrained(saved)  # config from tdro_retriever.json; still the encoder class
    assert type(again.model) is T5EncoderModel and again.config == GTR
    hf = T5EncoderModel.from_pretrained(saved)
    assert hf.config.architectures == ["T5EncoderModel"]
    torch.testing.assert_close(_by_hand(hf.eval(), ours_enc.tokenizer, TEXTS), ours, atol=1e-5, rtol=1e-4)
    st = SentenceTransformer(str(saved), device="cpu")
    theirs = torch.as_tensor(st.encode(TEXTS, convert_to_numpy=True))
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=1e-4)


def test_tdro_eval_of_a_saved_t5(saved: Path) -> None:
    result = _eval(str(saved), str(FIXTURE))
    assert result["model_config_from"] == "tdro_retriever.json"
    assert result["encoded"] == {"query": 10, "passage": 26}
    assert set(result["metrics"]) == set(METRICS.split(","))
    for name, value in result["metrics"].items():
        assert math.isfinite(value) and 0.0 <= value <= 1.0, name


def test_other_encoder_decoder_types_are_refused(tmp_path: Path, tiny_t5_dir: Path) -> None:
    from transformers import AutoTokenizer, BartConfig, BartModel

    config = BartConfig(
        vocab_size=64, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=32,
    )
    BartModel(config).save_pretrained(tmp_path / "bart")
    AutoTokenizer.from_pretrained(tiny_t5_dir).save_pretrained(tmp_path / "bart")
    with pytest.raises(UserError) as info:
        Encoder.from_pretrained(tmp_path / "bart", GTR)
    message = str(info.value)
    assert str(tmp_path / "bart") in message and "'bart'" in message and "not supported" in message
    assert "\n" not in message
