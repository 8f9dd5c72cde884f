"""The router's index of which instance caches which block, fed by the instances' KV events.

Sans-IO and synchronous: the subscriber applies events, the ``kv_events`` policy asks for the
longest cached prefix. Like Dynamo's KV indexer and llm-d's ``kvblock.Index`` it maps a block
key to the instances holding it; keys are chained over the whole prefix
(``hashing.text_block_keys``), so a flat map suffices and no tree is needed.

Layout, for memory and speed: each instance gets a small integer slot, and a block's holders
are one int used as a bitmask of slots, so intersecting with the candidates is one ``&``.
Each slot also keeps its own keys in store order, to clear or cap an instance without
scanning the whole index. About 250 bytes per (block, instance) pair in CPython.

Bounds (both evict least recently used first, so an evicted entry costs at worst a missed
hit, never a wrong one):

- ``max_blocks``: keys in the whole index. Recency is the last store or the last match (matches
  are counted once the index is over half full), so a hot shared prefix that its instance
  never re-publishes is not the first to go. (llm-d's
  in-memory index bounds keys the same way, ``size`` 1e8, and holders per key, 10.)
- ``max_blocks_per_instance``: keys of one instance, in store order: an instance announcing
  more blocks than any real cache holds cannot crowd out the others.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterable, Sequence

DEFAULT_MAX_BLOCKS = 1 << 21
"""2M keys, ~0.5 GB at worst: 10 instances of 3M tokens each in 16-token blocks need 1.9M."""
DEFAULT_MAX_BLOCKS_PER_INSTANCE = 1 << 20
"""1M blocks: 16M tokens at 16 tokens a block, beyond what one instance's GPUs cache today."""


class KvIndex:
    """Block key -> instances holding it, with per-instance and global bounds (see the module doc)."""

    def __init__(self, *, max_blocks: int = DEFAULT_MAX_BLOCKS,
                 max_blocks_per_instance: int = DEFAULT_MAX_BLOCKS_PER_INSTANCE) -> None:
        if max_blocks < 1 or max_blocks_per_instance < 1:
            raise ValueError("max_blocks and max_blocks_per_instance must be >= 1")
        self.max_blocks = max_blocks
        self.max_blocks_per_instance = max_blocks_per_instance
        self._holders: OrderedDict[int, int] = OrderedDict()  # key -> slot bitmask, least recent first
        self._slots: dict[str, int] = {}
        self._urls: list[str | None] = []  # slot -> url
        self._own: list[OrderedDict[int, None]] = []  # slot -> its keys, oldest store first
        self._free: list[int] = []
        self._guess: dict[int, int] = {}  # key -> slot bitmask of speculative holders (see speculate)
        self._until: dict[int, float] = {}  # key -> when its latest guess (of any instance) ends
        self._guesses: deque[tuple[float, Sequence[int]]] = deque()  # (expiry, keys), oldest first
        self.evicted = 0
        """(block, instance) pairs dropped by either bound since start."""

    # -- what the subscriber applies ------------------------------------------------------------

    def store(self, url: str, keys: Iterable[int]) -> None:
        """``url`` now caches these blocks (BlockStored); this confirms (ends) its guesses of them."""
        slot = self._slot(url)
        bit = 1 << slot
        holders, own = self._holders, self._own[slot]
        guess = self._guess
        for key in keys:
            if guess and key in guess:
                self._unguess(key, bit)  # confirmed: from now on the events decide
            mask = holders.pop(key, 0)
            holders[key] = mask | bit  # (re)inserted last: most recently used
            if key in own:
                own.move_to_end(key)
            else:
                own[key] = None
        while len(own) > self.max_blocks_per_instance:
            key = own.popitem(last=False)[0]
            self._unset(key, bit)
            self.evicted += 1
        while len(holders) > self.max_blocks:
            key, mask = holders.popitem(last=False)
            while mask:
                low = mask & -mask
                del self._own[low.bit_length() - 1][key]
                mask ^= low
                self.evicted += 1

    def remove(self, url: str, keys: Iterable[int]) -> None:
        """``url`` evicted these blocks (BlockRemoved); unknown ones are ignored."""
        slot = self._slots.get(url)
        if slot is None:
            return
        bit, own = 1 << slot, self._own[slot]
        for key in keys:
            if own.pop(key, 0) is None:  # it was there (the stored value is None)
                self._unset(key, bit)

    def clear(self, url: str) -> None:
        """``url`` holds nothing now (AllBlocksCleared, a restart, a resync); it keeps its slot."""
        slot = self._slots.get(url)
        if slot is None:
            return
        bit, own = 1 << slot, self._own[slot]
        for key in own:
            self._unset(key, bit)
        own.clear()
        for key in [k for k, mask in self._guess.items() if mask & bit]:
            self._unguess(key, bit)

    def drop(self, url: str) -> None:
        """Forget ``url`` entirely (deregistered); its slot is reused."""
        slot = self._slots.get(url)
        if slot is None:
            return
        self.clear(url)
        del self._slots[url]
        self._urls[slot] = None
        self._free.append(slot)

    # -- what the policy does ---------------------------------------------------------------

    def speculate(self, url: str, keys: Sequence[int], until: float) -> None:
        """Count ``url`` as holding ``keys`` until ``until`` (the caller's clock), events or not.

        The router just sent it a prompt with these blocks: they will be cached there once it is
        admitted, but its events take a while to come back, and meanwhile the next request with
        the same prefix must not be sent elsewhere (llm-d's "speculative" index entries do the
        same). A BlockStored of a guessed block from ``url`` confirms it, ending the guess: from
        then on the events decide. A BlockRemoved does not end it: it may be older than the
        guess (events are late), and the request about to be admitted stores the block again.
        A clear or a new epoch of ``url`` ends its guesses. Blocks the events already report are
        guessed too: a removal may be on its way that the request sent now undoes (skipping them
        cost 2 to 12 points of hit rate in the simulator with 0.5 s of event delay). Guesses
        count against ``max_blocks`` too: beyond it the oldest end early.
        """
        if not keys:
            return
        bit, guess, ends = 1 << self._slot(url), self._guess, self._until
        for key in keys:
            guess[key] = guess.get(key, 0) | bit
            ends[key] = until
        self._guesses.append((until, keys))
        while len(guess) > self.max_blocks and self._guesses:
            self._end_oldest_guess(None)

    def expire(self, now: float) -> None:
        """End the guesses whose time is up (``speculate``); cheap when none is."""
        guesses = self._guesses
        while guesses and guesses[0][0] <= now:
            self._end_oldest_guess(now)

    def _end_oldest_guess(self, now: float | None) -> None:
        # A block's guesses end together, when its latest one does: a guess may outlive its time
        # by less than pending_secs when another instance was guessed for the block later.
        # Cheaper than bookkeeping per (block, instance) on every request.
        _, keys = self._guesses.popleft()
        guess, ends = self._guess, self._until
        for key in keys:
            if now is None or ends.get(key, 0.0) <= now:
                guess.pop(key, None)
                ends.pop(key, None)

    def match(self, keys: Sequence[int], urls: Iterable[str]) -> tuple[int, list[str]]:
        """The longest run of leading ``keys`` one of ``urls`` holds: (blocks, the urls holding all of them).

        Held means reported by events, or guessed (``speculate``) and not expired. (0, []) when
        none holds the first block. The matched keys count as recently used (once the index is
        over half full; before that nothing will be evicted soon, and the bookkeeping is skipped).
        """
        slots = self._slots
        wanted = 0
        for url in urls:
            slot = slots.get(url)
            if slot is not None:
                wanted |= 1 << slot
        if not wanted or not keys:
            return 0, []
        get, guessed = self._holders.get, self._guess.get
        alive, depth = wanted, 0
        for key in keys:
            mask = (get(key, 0) | guessed(key, 0)) & alive
            if not mask:
                break
            alive, depth = mask, depth + 1
        if not depth:
            return 0, []
        holders = self._holders
        if 2 * len(holders) > self.max_blocks:  # an eviction may come: keep the recency order right
            for key in keys[:depth]:
                if key in holders:
                    holders.move_to_end(key)
        return depth, self._urls_of(alive)

    # -- inspection -----------------------------------------------------------------------------

    def __len__(self) -> int:
        """Distinct block keys held by any instance."""
        return len(self._holders)

    def blocks_of(self, url: str) -> set[int]:
        """The keys ``url`` holds (a copy)."""
        slot = self._slots.get(url)
        return set() if slot is None else set(self._own[slot])

    def size_of(self, url: str) -> int:
        """How many blocks ``url`` reports holding (0 if unknown)."""
        slot = self._slots.get(url)
        return 0 if slot is None else len(self._own[slot])

    def holders(self, key: int) -> list[str]:
        """Instances holding ``key``."""
        return self._urls_of(self._holders.get(key, 0))

    def instances(self) -> list[str]:
        """Instances the index has a slot for (some may hold nothing now)."""
        return list(self._slots)

    # -- internals --------------------------------------------------------------------------------

    def _slot(self, url: str) -> int:
        slot = self._slots.get(url)
        if slot is None:
            if self._free:
                slot = self._free.pop()
                self._urls[slot] = url
            else:
                slot = len(self._urls)
                self._urls.append(url)
                self._own.append(OrderedDict())
            self._slots[url] = slot
        return slot

    def _unset(self, key: int, bit: int) -> None:
        mask = self._holders.get(key, 0) & ~bit
        if mask:
            self._holders[key] = mask  # assignment to an existing key keeps its place
        else:
            self._holders.pop(key, None)

    def _unguess(self, key: int, bit: int) -> None:
        mask = self._guess.get(key, 0) & ~bit
        if mask:
            self._guess[key] = mask
        else:
            self._guess.pop(key, None)
            self._until.pop(key, None)

    def _urls_of(self, mask: int) -> list[str]:
        out = []
        urls = self._urls
        while mask:
            low = mask & -mask
            url = urls[low.bit_length() - 1]
            if url is not None:
                out.append(url)
            mask ^= low
        return out


__all__ = ["DEFAULT_MAX_BLOCKS", "DEFAULT_MAX_BLOCKS_PER_INSTANCE", "KvIndex"]
