"""Hard-negative mining: mining methods (BM25, dense FAISS, hybrid, or a registered one), positive-aware
filters, exports.

Entry points: `mining.stage.MineConfig` / `run_mine(store, config, source)` (the `pipe mine` stage),
`mining.stage.warm_cache` (sharded encoding), `mining.bm25.bm25_negatives_for_pairs` (`pipe compose
--hard-k`), `mining.methods.METHODS` (the methods by name; one module each in `mining.methods`).
Modules: candidates (ranked lists, merges), corpus (candidate texts, exclusions), selection (pure
filters and sampling), bm25, dense (encode + FAISS), cache (embedding cache), hybrid (RRF), groups
(same-group candidates), crossencoder, diagnostics, export, executors (Ray).
"""
