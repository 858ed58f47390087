"""tdro: task-level DRO experiment manager for dense retrievers."""

__version__ = "0.1.0"
