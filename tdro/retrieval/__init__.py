"""Retrieval evaluation (work plane): BEIR loading, model resolution, encoding, embedding cache, faiss
search and pytrec_eval metrics, tied together by `tdro.retrieval.evaluator`.

Modules import torch, transformers and faiss lazily where they can, so `tdro eval --help` stays fast.
"""
