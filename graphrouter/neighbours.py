"""Nearest stored queries by cosine similarity: exact for small stores and batches, an HNSW index for large stores.

Embeddings are L2-normalised, so cosine is the inner product. Below ``exact_below`` stored queries (and for batches
of queries, as the experiments route) a dense product is both exact and fast. Above it, a single request would pay
O(N) for the product, so :class:`NeighbourIndex` answers from a faiss HNSW graph (``M=32``, ``efSearch=128``):
its cost grows like log N, and on the stored queries its recall@10 is above 0.95 (checked by the tests). The index
is built on first use, single-threaded (deterministic), and saved with a checkpoint once built.
"""

from __future__ import annotations

import numpy as np

EXACT_BELOW = 20_000


def exact_knn(queries: np.ndarray, base: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (into ``base``) and cosine similarities of the k nearest rows, best first."""
    sims = queries @ base.T
    k = min(k, base.shape[0])
    top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    top_sims = np.take_along_axis(sims, top, 1)
    order = np.argsort(-top_sims, axis=1)
    return np.take_along_axis(top, order, 1), np.take_along_axis(top_sims, order, 1)


class NeighbourIndex:
    """The k nearest of a fixed set of L2-normalised rows (float32)."""

    def __init__(self, base: np.ndarray, exact_below: int = EXACT_BELOW, m: int = 32, ef_search: int = 128) -> None:
        self.base = np.ascontiguousarray(base, dtype=np.float32)
        self.exact_below, self.m, self.ef_search = exact_below, m, ef_search
        self._hnsw = None

    def __len__(self) -> int:
        return len(self.base)

    @property
    def approximate(self) -> bool:
        return len(self.base) >= self.exact_below

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(indices, similarities), each (n, min(k, N)), best first."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if not self.approximate:
            return exact_knn(queries, self.base, k)
        index = self._index()
        k = min(k, len(self.base))
        index.hnsw.efSearch = max(self.ef_search, k)
        sims, nb = index.search(queries, k)
        return nb.astype(np.int64), sims

    def _index(self):  # type: ignore[no-untyped-def]
        if self._hnsw is None:
            import faiss

            threads = faiss.omp_get_max_threads()
            faiss.omp_set_num_threads(1)  # a deterministic graph (and no surprise load on a shared machine)
            try:
                index = faiss.IndexHNSWFlat(self.base.shape[1], self.m, faiss.METRIC_INNER_PRODUCT)
                index.hnsw.efConstruction = 80
                index.add(self.base)
            finally:
                faiss.omp_set_num_threads(threads)
            self._hnsw = index
        return self._hnsw

    def __getstate__(self) -> dict:  # a built graph is saved with a checkpoint: a service starts ready
        import faiss

        return {**self.__dict__, "_hnsw": None if self._hnsw is None else faiss.serialize_index(self._hnsw)}

    def __setstate__(self, state: dict) -> None:
        if state.get("_hnsw") is not None:
            import faiss

            state["_hnsw"] = faiss.deserialize_index(state["_hnsw"])
        self.__dict__.update(state)
