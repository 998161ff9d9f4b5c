"""Teller's FAQ knowledge base and FAISS retrieval (see the knowledge-base issue)."""
