"""Seeded cyclic de Bruijn sequences.

A cyclic de Bruijn sequence B(k, n) over ``k`` symbols has length ``k**n`` and
contains every possible run of ``n`` consecutive symbols exactly once (reading
cyclically). So any ``n`` consecutive symbols identify their position.

The classic constructions (FKM / "prefer largest") give one fixed sequence per
(k, n); relabelling its symbols would keep the long structured runs of that
construction (``a a a b a a c ...``), which makes two codebooks look alike. Here
the sequence is an Eulerian circuit of the de Bruijn graph (nodes are the
``n-1``-tuples, each edge appends one symbol) walked with Hierholzer's algorithm,
visiting each node's out-edges in a seeded random order. Every seed gives a
valid, different sequence.
"""

from __future__ import annotations

import numpy as np

__all__ = ["seeded_de_bruijn", "window_codes"]


def seeded_de_bruijn(alphabet_size: int, order: int, rng: np.random.Generator) -> np.ndarray:
    """Return a cyclic de Bruijn sequence B(alphabet_size, order) as uint8/uint16.

    Invariant: ``len(result) == alphabet_size ** order`` and the cyclic windows
    ``result[i], result[i+1], ..., result[i+order-1]`` (indices mod length) are
    pairwise distinct.
    """
    if alphabet_size < 2 or order < 2:
        raise ValueError("need alphabet_size >= 2 and order >= 2")
    k = alphabet_size
    n_nodes = k ** (order - 1)
    # Out-edge order per node: a random permutation of the k symbols.
    edge_order = rng.permuted(np.tile(np.arange(k, dtype=np.int64), (n_nodes, 1)), axis=1).tolist()
    next_edge = [0] * n_nodes
    start = int(rng.integers(n_nodes))
    stack = [start]
    circuit: list[int] = []
    while stack:
        node = stack[-1]
        i = next_edge[node]
        if i < k:
            next_edge[node] = i + 1
            symbol = edge_order[node][i]
            stack.append((node % (n_nodes // k)) * k + symbol if order > 2 else symbol)
        else:
            circuit.append(stack.pop())
    circuit.reverse()
    # circuit holds len = k**order + 1 nodes; the symbol appended by each edge is
    # the last symbol of the node it enters.
    dtype = np.uint8 if k <= 256 else np.uint16
    return (np.asarray(circuit[1:], dtype=np.int64) % k).astype(dtype)


def window_codes(sequence: np.ndarray, alphabet_size: int, order: int) -> np.ndarray:
    """Integer code of the cyclic window starting at each position.

    ``code[i] = sum_j sequence[i+j] * alphabet_size**(order-1-j)`` (indices mod len).
    """
    seq = sequence.astype(np.int64)
    code = np.zeros_like(seq)
    for j in range(order):
        code = code * alphabet_size + np.roll(seq, -j)
    return code
