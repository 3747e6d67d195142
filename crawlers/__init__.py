"""Glossary sources, one module per source, registered by name."""
