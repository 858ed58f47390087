"""The demo collection: eight generated training domains and a held-out BEIR test set for each.

`write_demo_collection(folder)` writes `train/<name>.jsonl` (one query group a line, 1 positive and 7 hard
negatives) and `test/<name>/{corpus.jsonl,queries.jsonl,qrels/test.tsv}`, plus `manifest.json` last. It is
deterministic (every draw comes from `random.Random("tdro-demo|<domain>|<part>")`) and idempotent: a file
whose bytes would not change is not rewritten, so its mtime (and the reader's index cache) survives, and a
folder whose manifest (generator hash and each file's SHA-256) still matches is not regenerated at all.

How a text is made. Every query and passage is about one person (a name from `words.NAMES`) and one topic
(a `words.TOPICS` list). The 208 names are split once: 100 train names, 100 held-out test names, so test
queries never share a name with training data. A query is a short frame ("what about Linda and the oven
spoon", "Linda kettle bowl") with 2-4 words of its *query topic*; a passage is the name followed by 3-4
words of its *passage topic* (plus, in the hard domain, words of other topics) joined by filler words.
A query (name, t) is relevant to the passage (name, map(t)). Hard negatives are what a lexical retriever
would confuse: the same name with other topics, then other names with the same topic. So matching the
name narrows a test query to one passage per topic, and only the topic mapping picks the right one.

The domains (name: groups; what relevance is; why it is there):
- `demo_lexical` (600): identity mapping, the query's topic words appear verbatim in the positive, passages
  carry the name as a title. Trivially easy: MiniLM solves it zero-shot.
- `demo_paraphrase` (900, symmetric): a sentence of 5 words from `words.SYNONYMS` and its paraphrase with
  every word swapped for its synonym; negatives are other sentences about the same name. Easy-ish.
- `demo_map_small` (300), `demo_map_medium` (1200), `demo_map_large` (2400): a hidden mapping between
  unrelated topics (e.g. kitchen words in the query -> astronomy words in the passage), 3, 5 and 8 topic
  pairs. Zero-shot a model cannot link them; it must learn the mapping, and the test set uses the same
  mapping with unseen names. `large` is also harder: its passages hold 2 topic words among 3 words of
  other topics.
- `demo_map_noisy` (1500): a 4-pair hidden mapping where 30% of the groups have a random positive.
- `demo_cyrillic` (800): a 4-pair hidden mapping written in Cyrillic letters (a fixed letter-by-letter
  transliteration of the English words and names), so MiniLM sees unfamiliar character pieces.
- `demo_noise` (3000, the largest, like Yahoo answers in the paper): label noise. Queries look like the
  hidden-mapping queries (any of their query topics, any name) but the positive is a random passage
  (random name and passage topic), and 4 of the 7 negatives are passages the mapping says are right (the
  labels are swapped, as in mined data whose "negatives" answer the question better than the "positive").
  Its loss cannot go below about ln 4 over all 8 passages (the positive looks like the 3 random negatives)
  and stays the highest, and training on it pulls models away from the mappings and from name matching:
  sampling it uniformly hurts the other domains.

All hidden mappings point into the same 8 passage topics (astronomy, weather, music, ocean, medicine,
sport, computer, finance) from disjoint query topics, so no two domains contradict each other. The test
set of a domain has 80 queries over one passage per (test name, passage topic) pair (300-800 documents;
the paraphrase domain: 4 sentences per test name), one relevant document each; the noise domain's qrels
point at random documents (nothing can be learned there either).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel

from tdro.data.words import FILLERS, NAMES, SYNONYMS, TOPICS

NEGATIVES = 7
NOISE_RIGHT_NEGATIVES = 4  # negatives of a demo_noise group that the mapping calls relevant
TEST_QUERIES = 80
PASSAGE_TOPICS = ("astronomy", "weather", "music", "ocean", "medicine", "sport", "computer", "finance")
MANIFEST = "manifest.json"


class Kind(StrEnum):
    lexical = "lexical"
    paraphrase = "paraphrase"
    mapping = "mapping"
    noise = "noise"


@dataclass(frozen=True)
class Domain:
    name: str
    kind: Kind
    size: int
    query_topics: tuple[str, ...]  # query topic i is relevant to passage topic i
    instructions: tuple[str, ...]
    symmetric: bool = False
    cyrillic: bool = False
    label_noise: float = 0.0
    other_topic_words: int = 0  # words of other passage topics mixed into each passage
    signal_words: tuple[int, int] = (3, 4)  # how many passage-topic words a passage holds (range)
    titles: bool = False
    category: str = "qa"

    @property
    def passage_topics(self) -> tuple[str, ...]:
        if self.kind is Kind.lexical:
            return self.query_topics
        return PASSAGE_TOPICS[: len(self.query_topics)]


_QA = "Given a question about a person, retrieve the passage that answers it"
DOMAINS: tuple[Domain, ...] = (
    Domain("demo_lexical", Kind.lexical, 600, ("farm", "forest", "city", "travel", "garden", "school"),
           ("Given keywords about a person, retrieve the passage that contains them",), titles=True,
           category="keyword"),
    Domain("demo_paraphrase", Kind.paraphrase, 900, (),
           ("Retrieve semantically similar text.", "Given a sentence, retrieve a paraphrase of it"),
           symmetric=True, category="paraphrase"),
    Domain("demo_map_small", Kind.mapping, 300, ("kitchen", "clothing", "body"), (_QA,)),
    Domain("demo_map_medium", Kind.mapping, 1200, ("tools", "wild_animals", "birds", "insects", "colors"),
           (_QA, "Retrieve passages that answer the question")),
    Domain("demo_map_large", Kind.mapping, 2400,
           ("fruits", "vegetables", "vehicles", "house", "furniture", "geology", "law", "art"),
           ("Given a question about a person, retrieve passages that answer the question",),
           other_topic_words=3, signal_words=(2, 2)),
    Domain("demo_map_noisy", Kind.mapping, 1500, ("jobs", "drinks", "games", "mail"),
           ("Given a forum question, retrieve the reply that answers it",), label_noise=0.3,
           category="forum"),
    Domain("demo_cyrillic", Kind.mapping, 800, ("science", "baking", "feelings", "calendar"),
           ("Given a question in transliterated script, retrieve the passage that answers it",),
           cyrillic=True, category="script"),
    Domain("demo_noise", Kind.noise, 3000, (), ("Given a title, retrieve answers that match the title",),
           category="forum"),
)
DEMO_DATASETS: list[str] = [d.name for d in DOMAINS]
DEMO_BENCHMARKS: list[str] = [d.name for d in DOMAINS]
_MAPPING_DOMAINS = tuple(d for d in DOMAINS if d.kind is Kind.mapping and not d.cyrillic)

_SHUFFLED_NAMES = sorted(NAMES)
random.Random("tdro-demo|names").shuffle(_SHUFFLED_NAMES)
TRAIN_NAMES = tuple(_SHUFFLED_NAMES[:100])
TEST_NAMES = tuple(_SHUFFLED_NAMES[100:200])

_CYRILLIC = str.maketrans({
    "a": "а", "b": "б", "c": "ц", "d": "д", "e": "е", "f": "ф", "g": "г", "h": "х", "i": "и", "j": "ж",
    "k": "к", "l": "л", "m": "м", "n": "н", "o": "о", "p": "п", "q": "к", "r": "р", "s": "с", "t": "т",
    "u": "у", "v": "в", "w": "ш", "x": "кс", "y": "ы", "z": "з",
    "A": "А", "B": "Б", "C": "Ц", "D": "Д", "E": "Е", "F": "Ф", "G": "Г", "H": "Х", "I": "И", "J": "Ж",
    "K": "К", "L": "Л", "M": "М", "N": "Н", "O": "О", "P": "П", "Q": "К", "R": "Р", "S": "С", "T": "Т",
    "U": "У", "V": "В", "W": "Ш", "X": "Кс", "Y": "Ы", "Z": "З",
})
_QUERY_FRAMES = ("what about {name} and the {words}", "{name} {words}", "where did {name} see the {words}",
                 "tell me about {name} {words}", "{name} and {words}")


class DemoDomainInfo(BaseModel):
    name: str
    kind: str
    rows: int
    symmetric: bool
    train_path: str
    test_path: str
    test_queries: int
    test_documents: int


class DemoManifest(BaseModel):
    folder: str = ""  # where it lies (not stored in manifest.json)
    datasets: list[DemoDomainInfo]
    generator: str = ""  # hash of this module and the word lists: what wrote the files
    files: dict[str, str] = {}  # relative path -> SHA-256 of its bytes

    def info(self, name: str) -> DemoDomainInfo:
        return next(d for d in self.datasets if d.name == name)


# -- texts -----------------------------------------------------------------------------------------------
def _join(rng: random.Random, name: str, words: list[str]) -> str:
    parts = [name]
    for w in words:
        if rng.random() < 0.6:
            parts.append(rng.choice(FILLERS))
        parts.append(w)
    return " ".join(parts)


def _query(rng: random.Random, name: str, topic: str, words: list[str] | None = None) -> str:
    """A query about `name` with 2-4 words of `topic`, or with exactly `words` (the lexical domain)."""
    chosen = words if words is not None else rng.sample(TOPICS[topic], rng.randint(2, 4))
    return rng.choice(_QUERY_FRAMES).format(name=name, words=" ".join(chosen))


def _lexical_pair(rng: random.Random, domain: Domain, name: str, topic: str) -> tuple[str, str]:
    """(query, passage) of the lexical domain: the query's words all appear in the passage."""
    words = rng.sample(TOPICS[topic], 5)
    query_words = rng.sample(words, rng.randint(2, 3))
    return _query(rng, name, topic, query_words), _join(rng, name, words)


def _passage(rng: random.Random, domain: Domain, name: str, topic: str) -> str:
    words = rng.sample(TOPICS[topic], rng.randint(*domain.signal_words))
    others = [t for t in PASSAGE_TOPICS if t != topic]
    words += [rng.choice(TOPICS[rng.choice(others)]) for _ in range(domain.other_topic_words)]
    rng.shuffle(words)
    return _join(rng, name, words)


def _sentence(rng: random.Random) -> list[tuple[str, str]]:
    """A paraphrase item: 5 synonym pairs, each in a random direction (shown word, its synonym)."""
    return [p if rng.random() < 0.5 else (p[1], p[0]) for p in rng.sample(SYNONYMS, 5)]


def _say(rng: random.Random, name: str, words: list[str]) -> str:
    return _join(rng, name, words)


def _script(domain: Domain, text: str) -> str:
    return text.translate(_CYRILLIC) if domain.cyrillic else text


# -- training groups -----------------------------------------------------------------------------------
def _passage_obj(domain: Domain, docid: str, name: str, text: str) -> dict:
    out = {"docid": docid}
    if domain.titles:
        out["title"] = _script(domain, name)
        text = text[len(name) + 1:]  # the name moves into the title
    out["text"] = _script(domain, text)
    return out


def _mapping_group(rng: random.Random, domain: Domain, i: int) -> dict:
    t = rng.randrange(len(domain.query_topics))
    name = rng.choice(TRAIN_NAMES)
    ptopics = domain.passage_topics
    if domain.kind is Kind.lexical:
        query, pos_text = _lexical_pair(rng, domain, name, ptopics[t])
        pos_name = name
    else:
        query = _query(rng, name, domain.query_topics[t])
        if rng.random() < domain.label_noise:
            pos_name, pos_topic = rng.choice(TRAIN_NAMES), rng.choice(ptopics)
        else:
            pos_name, pos_topic = name, ptopics[t]
        pos_text = _passage(rng, domain, pos_name, pos_topic)
    positive = _passage_obj(domain, f"{domain.name}-{i}-p", pos_name, pos_text)
    hard = [(name, p) for p in ptopics if p != ptopics[t]]
    rng.shuffle(hard)
    other_names = [n for n in rng.sample(TRAIN_NAMES, NEGATIVES + 1) if n != name]
    hard += [(n, ptopics[t]) for n in other_names]
    negatives = [
        _passage_obj(domain, f"{domain.name}-{i}-n{j}", n, _passage(rng, domain, n, p))
        for j, (n, p) in enumerate(hard[:NEGATIVES])
    ]
    return {"query_id": f"{domain.name}-{i}", "query": _script(domain, query),
            "positive_passages": [positive], "negative_passages": negatives}


def _paraphrase_group(rng: random.Random, domain: Domain, i: int) -> dict:
    name = rng.choice(TRAIN_NAMES)
    pairs = _sentence(rng)
    query = _say(rng, name, [a for a, _ in pairs])
    positive = _say(rng, name, [b for _, b in pairs])
    negatives = []
    for j in range(NEGATIVES):
        other = name if j < 4 else rng.choice(TRAIN_NAMES)  # same person first: the hard ones
        negatives.append({"docid": f"{domain.name}-{i}-n{j}",
                          "text": _say(rng, other, [rng.choice(p) for p in _sentence(rng)])})
    return {"query_id": f"{domain.name}-{i}", "query": query,
            "positive_passages": [{"docid": f"{domain.name}-{i}-p", "text": positive}],
            "negative_passages": negatives}


def _noise_group(rng: random.Random, domain: Domain, i: int) -> dict:
    source = rng.choice(_MAPPING_DOMAINS)
    t = rng.randrange(len(source.query_topics))
    name = rng.choice(TRAIN_NAMES)
    query = _query(rng, name, source.query_topics[t])
    # what the mapping calls relevant, as negatives: 4 of 7, so that nearly every sample of 3 negatives holds
    # one (97%; with 2 of 7 only 71% do, and the rest are random groups whose loss ratios are heavy-tailed)
    right = [(name, source.passage_topics[t])] * NOISE_RIGHT_NEGATIVES
    rand = [(rng.choice(TRAIN_NAMES), rng.choice(PASSAGE_TOPICS))
            for _ in range(NEGATIVES - NOISE_RIGHT_NEGATIVES + 1)]
    pos_name, pos_topic = rand.pop()
    negatives = [
        {"docid": f"{domain.name}-{i}-n{j}", "text": _passage(rng, source, n, p)}
        for j, (n, p) in enumerate(right + rand)
    ]
    rng.shuffle(negatives)
    return {"query_id": f"{domain.name}-{i}", "query": query,
            "positive_passages": [{"docid": f"{domain.name}-{i}-p",
                                   "text": _passage(rng, source, pos_name, pos_topic)}],
            "negative_passages": negatives}


_GROUP = {Kind.lexical: _mapping_group, Kind.mapping: _mapping_group, Kind.paraphrase: _paraphrase_group,
          Kind.noise: _noise_group}


def train_lines(domain: Domain) -> list[str]:
    rng = random.Random(f"tdro-demo|{domain.name}|train")
    return [json.dumps(_GROUP[domain.kind](rng, domain, i), ensure_ascii=False) for i in range(domain.size)]


# -- test sets -----------------------------------------------------------------------------------------
def test_set(domain: Domain) -> tuple[list[dict], list[dict], list[tuple[str, str]]]:
    """(corpus, queries, qrels) of the domain's held-out BEIR test set."""
    rng = random.Random(f"tdro-demo|{domain.name}|test")
    corpus: list[dict] = []
    queries: list[dict] = []
    qrels: list[tuple[str, str]] = []
    if domain.kind is Kind.paraphrase:
        items = []
        for name in TEST_NAMES:
            for _ in range(4):
                pairs = _sentence(rng)
                doc_id = f"d{len(corpus)}"
                corpus.append({"_id": doc_id, "title": "", "text": _say(rng, name, [b for _, b in pairs])})
                items.append((doc_id, name, pairs))
        for qi, (doc_id, name, pairs) in enumerate(rng.sample(items, TEST_QUERIES)):
            queries.append({"_id": f"q{qi}", "text": _say(rng, name, [a for a, _ in pairs])})
            qrels.append((f"q{qi}", doc_id))
        return corpus, queries, qrels

    source = domain
    docs: dict[tuple[str, int], str] = {}
    lexical_queries: dict[tuple[str, int], str] = {}
    ptopics = domain.passage_topics if domain.kind is not Kind.noise else PASSAGE_TOPICS
    for name in TEST_NAMES:
        for t, topic in enumerate(ptopics):
            if domain.kind is Kind.noise:
                source = rng.choice(_MAPPING_DOMAINS)
            doc_id = f"d{len(corpus)}"
            if domain.kind is Kind.lexical:
                lexical_queries[(name, t)], text = _lexical_pair(rng, domain, name, topic)
            else:
                text = _passage(rng, source, name, topic)
            p = _passage_obj(domain, doc_id, name, text)
            corpus.append({"_id": doc_id, "title": p.get("title", ""), "text": p["text"]})
            docs[(name, t)] = doc_id
    slots = [(n, t) for n in TEST_NAMES for t in range(len(ptopics))]
    for qi, (name, t) in enumerate(rng.sample(slots, TEST_QUERIES)):
        if domain.kind is Kind.noise:
            source = rng.choice(_MAPPING_DOMAINS)
            text = _query(rng, name, source.query_topics[rng.randrange(len(source.query_topics))])
            relevant = rng.choice(corpus)["_id"]
        else:
            text = lexical_queries.get((name, t)) or _query(rng, name, domain.query_topics[t])
            relevant = docs[(name, t)]
        queries.append({"_id": f"q{qi}", "text": _script(domain, text)})
        qrels.append((f"q{qi}", relevant))
    return corpus, queries, qrels


# -- writing -------------------------------------------------------------------------------------------
def _write_if_changed(path: Path, data: bytes) -> None:
    """Write `data` atomically (temp name, then rename) unless the file already holds exactly it."""
    if path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _jsonl(rows: list) -> bytes:
    return "".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n"
                   for r in rows).encode()


def _generator_id() -> str:
    from tdro.data import words

    h = hashlib.sha256()
    for module_file in (__file__, words.__file__):
        h.update(Path(module_file).read_bytes())
    return h.hexdigest()[:16]


def _sha256(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def _existing(root: Path, generator: str) -> DemoManifest | None:
    """The manifest of a complete collection this generator wrote and nobody changed since, if any."""
    try:
        manifest = DemoManifest.model_validate_json((root / MANIFEST).read_text() or "{}")
    except (OSError, ValueError):
        return None
    if manifest.generator != generator or not manifest.files:
        return None
    if any(_sha256(root / rel) != digest for rel, digest in manifest.files.items()):
        return None
    return manifest.model_copy(update={"folder": str(root.resolve())})


def write_demo_collection(folder: str | Path) -> DemoManifest:
    """Write (or confirm) the demo collection under `folder`; `manifest.json` is written last.

    When `folder` already holds what this generator writes (manifest and file hashes agree), nothing is
    generated: a cheap check that the runner may call before every run.
    """
    root = Path(folder)
    generator = _generator_id()
    found = _existing(root, generator)
    if found is not None:
        return found
    infos = []
    files: dict[str, str] = {}

    def put(rel: str, data: bytes) -> None:
        _write_if_changed(root / rel, data)
        files[rel] = hashlib.sha256(data).hexdigest()

    for domain in DOMAINS:
        put(f"train/{domain.name}.jsonl", _jsonl(train_lines(domain)))
        corpus, queries, qrels = test_set(domain)
        test = f"test/{domain.name}"
        put(f"{test}/corpus.jsonl", _jsonl(corpus))
        put(f"{test}/queries.jsonl", _jsonl(queries))
        tsv = "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t1\n" for q, d in qrels)
        put(f"{test}/qrels/test.tsv", tsv.encode())
        infos.append(DemoDomainInfo(
            name=domain.name, kind=domain.kind.value, rows=domain.size, symmetric=domain.symmetric,
            train_path=f"train/{domain.name}.jsonl", test_path=f"test/{domain.name}",
            test_queries=len(queries), test_documents=len(corpus),
        ))
    manifest = DemoManifest(folder=str(root.resolve()), datasets=infos, generator=generator, files=files)
    body = manifest.model_dump(exclude={"folder"})
    _write_if_changed(root / MANIFEST, (json.dumps(body, indent=2) + "\n").encode())
    return manifest


def demo_collection_complete(folder: str | Path) -> bool:
    """Whether `folder` holds a finished demo collection (its manifest is written last)."""
    return (Path(folder) / MANIFEST).is_file()


# -- registry cards ------------------------------------------------------------------------------------
DEMO_ROOT = "${oc.env:TDRO_DEMO_DATA,demo_data}"


def dataset_card(domain: Domain) -> dict:
    """The registry card (registry/datasets/<name>.yaml) of a demo training domain, as plain data."""
    return {
        "name": domain.name, "path": f"{DEMO_ROOT}/train/{domain.name}.jsonl",
        "language": "en-Cyrl" if domain.cyrillic else "en",
        "category": domain.category, "symmetric": domain.symmetric, "instructions": list(domain.instructions),
        "size": domain.size, "generated_by": "demo",
    }


def benchmark_card(domain: Domain) -> dict:
    """The registry card (registry/benchmarks/<name>.yaml) of a demo test set, as plain data."""
    return {
        "name": domain.name, "path": f"{DEMO_ROOT}/test/{domain.name}", "split": "test",
        "instruction": domain.instructions[0], "language": "en-Cyrl" if domain.cyrillic else "en",
        "group": "demo", "generated_by": "demo",
    }
