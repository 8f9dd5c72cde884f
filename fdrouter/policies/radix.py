"""A character-level radix tree shared by every instance ("tenant"), for cache-aware routing.

It approximates what each instance holds in its prefix (KV) cache from what the router
sent it, as SGLang's router does (``sgl-router/src/tree.rs``): one tree for all tenants;
each node stores an edge label and, per tenant that sent a prompt through it, when that
tenant last used it. Invariant: a node's tenants include its children's tenants, and a
tenant's time on a node is at least its time on any descendant (an insert stamps the whole
path). Removing a tenant therefore always starts at its deepest nodes ("tenant leaves").

Memory is bounded globally: ``max_size`` counts the characters stored in the whole tree,
whatever the number of tenants. SGLang and SMG capped each tenant instead, so the bound
grew with the number of workers and ran out of memory.

Speed: edges are compared with string slicing (one C-level memcmp per edge) and the
common prefix of a mismatching edge is found by bisection over slices, never a
character-by-character Python loop.

Keys are strings or tuples of block ids (``RoutingFacts.prompt_blocks``): the tree only
slices, compares and indexes them, so a tuple of ints works as a string of "characters"
does; sizes then count blocks. Both kinds may share one tree: a str's elements never equal
an int, so they never match each other.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from typing import TypeAlias

# When the tree outgrows max_size, evict down to this fraction of it: each eviction pass
# walks the whole tree to find tenant leaves, so leaving some headroom amortises that walk
# over many inserts instead of paying it on every insert at the bound.
EVICT_TO_FRACTION = 0.9

Key: TypeAlias = str | tuple[int, ...]
"""A prompt as text, or as a tuple of block ids."""


class _Node:
    __slots__ = ("text", "children", "tenants", "parent")

    def __init__(self, text: Key, parent: _Node | None) -> None:
        self.text = text
        self.children: dict[str | int, _Node] = {}  # first element of the child's text -> child
        self.tenants: dict[str, float] = {}  # tenant -> last time it used this prefix
        self.parent = parent


def common_prefix_len(a: Key, b: Key) -> int:
    """Length of the longest common prefix of ``a`` and ``b``, by bisection over slices."""
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n  # a[:lo] == b[:lo] and a[:hi] != b[:hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid
    return lo


class RadixTree:
    """Which tenants sent which prefixes, and when; bounded to ``max_size`` characters in total."""

    def __init__(self, *, max_size: int) -> None:
        if max_size <= 0:
            raise ValueError(f"max_size must be > 0, got {max_size}")
        self.max_size = max_size
        self._root = _Node("", None)
        self._size = 0  # characters stored in edge labels
        self._nodes = 0  # nodes other than the root
        self._clock = float("-inf")  # latest time seen: stamps never go backwards

    def size(self) -> int:
        """Characters stored in the whole tree (what ``max_size`` bounds)."""
        return self._size

    def node_count(self) -> int:
        """Nodes in the tree, not counting the root."""
        return self._nodes

    def tenants(self) -> set[str]:
        """Every tenant that holds at least one prefix."""
        out: set[str] = set()
        for child in self._root.children.values():
            out.update(child.tenants)
        return out

    def match(self, text: Key, tenants: Iterable[str] | None = None) -> tuple[int, set[str]]:
        """The longest prefix of ``text`` held by any of ``tenants`` (all if None).

        Returns the matched length in characters and the tenants that hold that whole
        prefix (empty when nothing matched). Tenants outside ``tenants`` are ignored, not
        removed: they may only be unhealthy for a while.
        """
        allowed = None if tenants is None else (tenants if isinstance(tenants, (set, frozenset)) else set(tenants))
        node = self._root
        pos = 0
        n = len(text)
        while pos < n:
            child = node.children.get(text[pos])
            if child is None or (allowed is not None and allowed.isdisjoint(child.tenants)):
                break
            edge = child.text
            segment = text[pos:pos + len(edge)]
            node = child
            if segment == edge:
                pos += len(edge)
            else:
                pos += common_prefix_len(segment, edge)
                break
        if node is self._root:
            return 0, set()
        if allowed is None:
            return pos, set(node.tenants)
        return pos, set(allowed.intersection(node.tenants))

    def insert(self, text: Key, tenant: str, now: float) -> None:
        """Record that ``tenant`` was sent ``text`` at time ``now``, then enforce ``max_size``."""
        if not text:
            return
        if now > self._clock:
            self._clock = now
        stamp = self._clock
        node = self._root
        pos = 0
        n = len(text)
        while pos < n:
            first = text[pos]
            child = node.children.get(first)
            if child is None:
                leaf = _Node(text[pos:], node)
                leaf.tenants[tenant] = stamp
                node.children[first] = leaf
                self._size += n - pos
                self._nodes += 1
                break
            edge = child.text
            length = len(edge)
            segment = text[pos:pos + length]
            if segment != edge:
                # Split the edge where text leaves it: the upper part keeps every tenant.
                length = common_prefix_len(segment, edge)
                upper = _Node(edge[:length], node)
                upper.tenants = dict(child.tenants)
                child.text = edge[length:]
                child.parent = upper
                upper.children[child.text[0]] = child
                node.children[first] = upper
                self._nodes += 1
                child = upper
            child.tenants[tenant] = stamp
            pos += length
            node = child
        if self._size > self.max_size:
            self.evict_to(int(self.max_size * EVICT_TO_FRACTION))

    def evict_to(self, target: int) -> None:
        """Drop least-recently-used tenant leaves until at most ``target`` characters remain.

        Heap key (time, -depth): a tenant's entry on a node is never older than on its
        descendants and sits higher, so every descendant entry pops first and a node is a
        tenant leaf by the time its own entry pops. A parent is pushed each time one of its
        children loses the tenant; the later duplicates find the tenant gone and are skipped.
        """
        heap: list[tuple[float, int, int, _Node, str]] = []
        seq = 0
        stack: list[tuple[_Node, int]] = [(child, 1) for child in self._root.children.values()]
        while stack:
            node, depth = stack.pop()
            if node.children:
                held_below: set[str] = set()
                for child in node.children.values():
                    held_below.update(child.tenants)
                    stack.append((child, depth + 1))
            else:
                held_below = set()
            for tenant, stamp in node.tenants.items():
                if tenant not in held_below:
                    heap.append((stamp, -depth, seq, node, tenant))
                    seq += 1
        heapq.heapify(heap)
        while self._size > target and heap:
            _, neg_depth, _, node, tenant = heapq.heappop(heap)
            if node.tenants.pop(tenant, None) is None:
                continue  # a duplicate: already evicted
            parent = node.parent
            assert parent is not None  # the root holds no tenants, so it is never popped here
            if not node.tenants:
                self._detach(node)
            if parent is not self._root and tenant in parent.tenants:
                heapq.heappush(heap, (parent.tenants[tenant], neg_depth + 1, seq, parent, tenant))
                seq += 1

    def evict_older_than(self, cutoff: float) -> None:
        """Drop every tenant entry last used before ``cutoff``, and nodes left with no tenant."""
        stack = list(self._root.children.values())
        while stack:
            node = stack.pop()
            stamps = node.tenants
            if min(stamps.values()) >= cutoff:  # the common case: nothing expires here
                stack.extend(node.children.values())
            elif max(stamps.values()) < cutoff:
                self._detach(node)  # its descendants are older still, so empty too
            else:
                for tenant in [t for t, stamp in stamps.items() if stamp < cutoff]:
                    del stamps[tenant]
                stack.extend(node.children.values())

    def remove_tenant(self, tenant: str) -> None:
        """Forget everything ``tenant`` held (for an instance that is gone for good)."""
        stack = [child for child in self._root.children.values() if tenant in child.tenants]
        while stack:
            node = stack.pop()
            del node.tenants[tenant]
            if node.tenants:
                stack.extend(child for child in node.children.values() if tenant in child.tenants)
            else:
                self._detach(node)

    def _detach(self, node: _Node) -> None:
        """Remove ``node`` and its subtree from the tree, keeping size and node counts."""
        parent = node.parent
        assert parent is not None
        del parent.children[node.text[0]]
        node.parent = None
        stack = [node]
        while stack:
            n = stack.pop()
            self._size -= len(n.text)
            self._nodes -= 1
            stack.extend(n.children.values())


__all__ = ["EVICT_TO_FRACTION", "Key", "RadixTree", "common_prefix_len"]
