"""Training data: JSONL format, indexed readers, mixture sampling, examples, collation, demo collection.

A training dataset is a JSONL file (or a folder of them) with one query group a line (`query`,
`positive_passages`, `negative_passages`, passages `{docid?, title?, text}`), validated line by line when
its byte-offset index is built (once, cached). `MixtureSampler` decides which (dataset, row) pairs each
optimizer step uses, deterministically from counters so that processes and resumed runs agree;
`build_example` turns a row into a query and its passages with prompts; `TrainCollator` tokenises with
the model's lengths, padding side and EOS rule; `TrainingStream` ties them together and is all a
training stage needs. `demo` writes the generated multi-domain demo collection. Work plane: torch and
transformers are imported only by the collator and the stream.
"""
