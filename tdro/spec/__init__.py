"""Typed experiment specs, registry cards and the resolved stage files handed to launched jobs.

Control plane: imports no torch, transformers or faiss.
"""
