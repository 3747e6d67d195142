"""Training and evaluation of embedding models (sentence-transformers)."""
