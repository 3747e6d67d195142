"""pipe: fine-tune text-embedding models on your own glossary, with every stage a versioned artifact."""

__version__ = "0.1.0"
