"""The shared character-level radix tree behind cache_aware."""

from __future__ import annotations

import random
import string

import pytest

from fdrouter.policies.radix import EVICT_TO_FRACTION, RadixTree, common_prefix_len


def stored_chars(tree: RadixTree) -> int:
    """Characters in the tree, counted the slow way."""
    total, stack = 0, list(tree._root.children.values())
    while stack:
        node = stack.pop()
        total += len(node.text)
        stack.extend(node.children.values())
    return total


def check_invariants(tree: RadixTree) -> None:
    """Counts match; no empty node; a child's tenants are its parent's, with times no newer."""
    nodes, stack = 0, [(child, tree._root) for child in tree._root.children.values()]
    while stack:
        node, parent = stack.pop()
        nodes += 1
        assert node.parent is parent and node.text and parent.children[node.text[0]] is node
        assert node.tenants
        if parent is not tree._root:
            for tenant, stamp in node.tenants.items():
                assert parent.tenants[tenant] >= stamp
        stack.extend((child, node) for child in node.children.values())
    assert nodes == tree.node_count()
    assert stored_chars(tree) == tree.size()


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [("", "", 0), ("abc", "", 0), ("abc", "abd", 2), ("abc", "abc", 3), ("abcdef", "abc", 3), ("x" * 999 + "y", "x" * 1000, 999)],
)
def test_common_prefix_len_finds_the_shared_start(a, b, expected):
    assert common_prefix_len(a, b) == expected
    assert common_prefix_len(b, a) == expected


def test_common_prefix_len_agrees_with_a_plain_loop_on_random_strings():
    rng = random.Random(0)
    for _ in range(500):
        shared = "".join(rng.choices("ab", k=rng.randrange(0, 50)))
        a = shared + "".join(rng.choices("ab", k=rng.randrange(0, 20)))
        b = shared + "".join(rng.choices("ab", k=rng.randrange(0, 20)))
        expected = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
        assert common_prefix_len(a, b) == expected


def test_an_inserted_prompt_matches_itself_and_its_prefixes():
    tree = RadixTree(max_size=1000)
    tree.insert("hello world", "A", now=1.0)
    assert tree.match("hello world") == (11, {"A"})
    assert tree.match("hello") == (5, {"A"})
    assert tree.match("hello world, again") == (11, {"A"})
    assert tree.match("goodbye") == (0, set())
    assert tree.size() == 11 and tree.node_count() == 1


def test_a_diverging_prompt_splits_the_edge():
    tree = RadixTree(max_size=1000)
    tree.insert("hello world", "A", now=1.0)
    tree.insert("hello there", "B", now=2.0)
    # "hello " shared by A and B, then "world" (A) and "there" (B).
    assert tree.node_count() == 3
    assert tree.size() == len("hello ") + len("world") + len("there")
    assert tree.match("hello world") == (11, {"A"})
    assert tree.match("hello there") == (11, {"B"})
    assert tree.match("hello you") == (6, {"A", "B"})
    check_invariants(tree)


def test_a_prompt_ending_inside_an_edge_splits_it_there():
    tree = RadixTree(max_size=1000)
    tree.insert("abcdef", "A", now=1.0)
    tree.insert("abc", "B", now=2.0)
    assert tree.node_count() == 2
    assert tree.match("abcdef") == (6, {"A"})
    assert tree.match("abcxyz") == (3, {"A", "B"})
    check_invariants(tree)


def test_the_longest_match_is_per_tenant_among_the_allowed_ones():
    tree = RadixTree(max_size=1000)
    tree.insert("system prompt: be brief. user: hi", "A", now=1.0)
    tree.insert("system prompt: be brief", "B", now=2.0)
    text = "system prompt: be brief. user: hi there"
    assert tree.match(text) == (33, {"A"})
    assert tree.match(text, {"B"}) == (23, {"B"})
    assert tree.match(text, {"B", "C"}) == (23, {"B"})
    assert tree.match(text, {"C"}) == (0, set())


def test_tenants_left_out_of_a_match_are_kept_in_the_tree():
    tree = RadixTree(max_size=1000)
    tree.insert("shared prefix", "A", now=1.0)
    assert tree.match("shared prefix", {"B"}) == (0, set())
    assert tree.match("shared prefix") == (13, {"A"})


def test_reinserting_refreshes_the_time_along_the_whole_path():
    tree = RadixTree(max_size=1000)
    tree.insert("abcdef", "A", now=1.0)
    tree.insert("abcxyz", "A", now=5.0)
    tree.insert("abcdef", "A", now=9.0)
    upper = tree._root.children["a"]
    assert upper.tenants["A"] == 9.0
    assert upper.children["x"].tenants["A"] == 5.0
    check_invariants(tree)


def test_time_going_backwards_is_treated_as_now():
    tree = RadixTree(max_size=1000)
    tree.insert("abc", "A", now=10.0)
    tree.insert("abd", "A", now=3.0)
    check_invariants(tree)


def test_evict_older_than_drops_old_entries_and_empty_nodes():
    tree = RadixTree(max_size=1000)
    tree.insert("common old", "A", now=1.0)
    tree.insert("common new", "B", now=10.0)
    tree.evict_older_than(5.0)
    assert tree.match("common old") == (7, {"B"})
    assert tree.tenants() == {"B"}
    assert tree.size() == len("common new")
    check_invariants(tree)


def test_remove_tenant_forgets_only_that_tenant():
    tree = RadixTree(max_size=1000)
    tree.insert("abc one", "A", now=1.0)
    tree.insert("abc two", "B", now=1.0)
    tree.remove_tenant("A")
    assert tree.tenants() == {"B"}
    assert tree.match("abc one") == (4, {"B"})
    check_invariants(tree)


def test_the_size_bound_evicts_the_least_recently_used_first():
    tree = RadixTree(max_size=30)
    tree.insert("a" * 10, "A", now=1.0)
    tree.insert("b" * 10, "B", now=2.0)
    tree.insert("a" * 10, "A", now=3.0)  # A's prompt is now the most recent
    tree.insert("c" * 15, "C", now=4.0)  # 35 > 30: B goes, the oldest
    assert tree.size() <= 30
    assert tree.tenants() == {"A", "C"}
    check_invariants(tree)


def test_the_size_bound_trims_a_shared_path_from_the_leaves_up():
    tree = RadixTree(max_size=100)
    tree.insert("prefix-" + "x" * 30, "A", now=1.0)
    tree.insert("prefix-" + "y" * 30, "A", now=2.0)
    tree.insert("z" * 40, "B", now=3.0)  # 107 > 100: A's older leaf (the x's) goes, 77 left
    assert tree.size() == 77
    assert tree.match("prefix-" + "y" * 30) == (37, {"A"})
    assert tree.match("prefix-" + "x" * 30) == (7, {"A"})
    check_invariants(tree)


def test_the_size_bound_evicts_down_to_a_low_water_mark():
    tree = RadixTree(max_size=100)
    for i, ch in enumerate("abcdefghijk"):
        tree.insert(ch * 10, ch, now=float(i))
    # The 11th insert reached 110: evicted down to EVICT_TO_FRACTION * 100, oldest first.
    assert tree.size() <= int(100 * EVICT_TO_FRACTION)
    assert tree.tenants() == set("cdefghijk")


def test_the_size_bound_holds_after_inserting_far_more_than_it():
    rng = random.Random(1)
    bound = 5_000
    tree = RadixTree(max_size=bound)
    heads = ["".join(rng.choices(string.ascii_lowercase, k=80)) for _ in range(10)]
    inserted = 0
    for i in range(2_000):
        text = rng.choice(heads) + "".join(rng.choices(string.ascii_lowercase, k=rng.randrange(1, 300)))
        tree.insert(text, f"T{rng.randrange(8)}", now=float(i))
        inserted += len(text)
        assert tree.size() <= bound
    assert inserted > 50 * bound
    assert tree.size() > bound // 2  # it evicts what it must, not everything
    check_invariants(tree)


def test_a_prompt_longer_than_the_bound_is_not_kept():
    tree = RadixTree(max_size=10)
    tree.insert("x" * 50, "A", now=1.0)
    assert tree.size() == 0 and tree.node_count() == 0


def test_random_operations_keep_the_tree_consistent():
    rng = random.Random(2)
    tree = RadixTree(max_size=3_000)
    for i in range(3_000):
        text = "".join(rng.choices("abc", k=rng.randrange(1, 40)))
        op = rng.random()
        if op < 0.8:
            tree.insert(text, rng.choice("ABCD"), now=float(i))
        elif op < 0.95:
            matched, holders = tree.match(text, set(rng.sample("ABCD", 2)))
            assert (matched == 0) == (not holders)
        elif op < 0.99:
            tree.evict_older_than(i - 500.0)
        else:
            tree.remove_tenant(rng.choice("ABCD"))
    check_invariants(tree)
