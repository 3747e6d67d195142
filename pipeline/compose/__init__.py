"""The compose stage: read glossary tables, clean, group definitions per term, split by term, write
pairs and corpus. Imports only the core (pipe_embed.pipeline.core)."""
