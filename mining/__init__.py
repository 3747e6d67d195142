"""Hard-negative mining: BM25, dense FAISS, hybrid, positive-aware filters, exports."""
