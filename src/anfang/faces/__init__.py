"""人像布控 face watchlists: dlib embeddings, a persisted HNSW index, watchlists in the store, embedding workers."""
