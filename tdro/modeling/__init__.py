"""Retriever modeling: encoder (HF model + pooling + normalisation) and contrastive losses."""
