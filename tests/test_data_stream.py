"""The training stream: batches from the demo data, exact resume, and a real 2-process accelerate run."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

from tdro.data.sampler import MixtureSampler
from tdro.data.stream import TrainingStream
from tdro.enums import MixtureMode, Pooling, PromptStyle
from tdro.spec.cards import DatasetCard
from tdro.spec.retriever import RetrieverConfig

REPO = Path(__file__).resolve().parents[1]
NAMES = ["demo_lexical", "demo_map_small", "demo_noise"]


def cards(demo: Path) -> list[DatasetCard]:
    return [DatasetCard(name=n, path=str(demo / "train" / f"{n}.jsonl"), instructions=[f"Instr {n}"])
            for n in NAMES]


@pytest.fixture
def make_stream(demo_data_dir, tiny_bert_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("TDRO_INDEX_DIR", str(tmp_path / "idx"))
    config = RetrieverConfig(pooling=Pooling.mean, prompt_style=PromptStyle.e5, query_max_length=32,
                             passage_max_length=24)

    def make(mode=MixtureMode.mixed) -> TrainingStream:
        return TrainingStream(cards(demo_data_dir), [1, 1, 2], mode=mode, batch_size=8, passages_per_query=4,
                              seed=5, config=config, tokenizer=AutoTokenizer.from_pretrained(tiny_bert_dir))
    return make


def test_stream_batches_follow_the_sampler(make_stream):
    stream = make_stream()
    assert stream.names == NAMES and [len(r) for r in stream.readers] == [600, 300, 3000]
    assert stream.skipped == [[], [], []]
    batches = stream.next_step(micro_batches=2)
    assert stream.step == 1 and len(batches) == 2
    for b in batches:
        assert b.query["input_ids"].shape[0] == 4 and b.passages["input_ids"].shape[0] == 16
        assert b.dataset_ids.dtype == torch.long
    ids = torch.cat([b.dataset_ids for b in batches]).tolist()
    assert ids == [d for d, _ in stream.last_pairs]
    expected = MixtureSampler([600, 300, 3000], [1, 1, 2], MixtureMode.mixed, batch_size=8, seed=5)
    assert stream.last_pairs == expected.next_step()


def test_stream_resume_gives_identical_tensors(make_stream):
    straight = make_stream(MixtureMode.homogeneous)
    expected = [straight.next_step() for _ in range(5)]
    first = make_stream(MixtureMode.homogeneous)
    for _ in range(2):
        first.next_step()
    state = json.loads(json.dumps(first.state_dict()))
    resumed = make_stream(MixtureMode.homogeneous)
    resumed.load_state_dict(state)
    for want in expected[2:]:
        got = resumed.next_step()
        for g, w in zip(got, want, strict=True):
            assert torch.equal(g.query["input_ids"], w.query["input_ids"])
            assert torch.equal(g.passages["input_ids"], w.passages["input_ids"])
            assert torch.equal(g.dataset_ids, w.dataset_ids)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_share_the_dataset_and_split_the_global_batch(demo_data_dir, tiny_bert_dir, tmp_path):
    accelerate = Path(sys.executable).parent / "accelerate"
    env = {**os.environ, "TDRO_INDEX_DIR": str(tmp_path / "idx"), "OMP_NUM_THREADS": "1"}
    cmd = [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
           "-m", "tests.data_dist_worker", str(demo_data_dir), str(tiny_bert_dir), str(tmp_path)]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    outs = {mode: [json.loads((tmp_path / f"{mode.value}.rank{r}.json").read_text()) for r in range(2)]
            for mode in (MixtureMode.homogeneous, MixtureMode.mixed)}

    for mode, (r0, r1) in outs.items():
        assert (r0["world"], r1["world"]) == (2, 2)
        whole = MixtureSampler([600, 300, 3000], [1.0, 2.0, 1.0], mode, batch_size=8, seed=13)
        for s0, s1 in zip(r0["steps"], r1["steps"], strict=True):
            p0 = [tuple(p) for p in s0["pairs"]]
            p1 = [tuple(p) for p in s1["pairs"]]
            assert len(p0) == len(p1) == 4 and s0["query_rows"] == [2, 2]
            assert p0 + p1 == whole.next_step()  # disjoint slices that make up the global batch
            assert [tuple(p) for p in s0["gathered"]] == p0 + p1 == [tuple(p) for p in s1["gathered"]]
            assert not set(p0) & set(p1)
            assert [d for ids in s0["dataset_ids"] for d in ids] == [d for d, _ in p0]
            if mode is MixtureMode.homogeneous:
                assert len({d for d, _ in p0 + p1}) == 1  # one dataset for the step, on both processes
    homogeneous_sets = {s["pairs"][0][0] for s in outs[MixtureMode.homogeneous][0]["steps"]}
    assert len(homogeneous_sets) > 1  # the dataset changes between steps
