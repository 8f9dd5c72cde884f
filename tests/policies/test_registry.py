"""The registry and the one protocol every registered policy follows."""

from __future__ import annotations

import inspect

import pytest

import fdrouter.policies as policies
from fdrouter.policies import (
    RemoteMetrics,
    RoutingFacts,
    available_policies,
    make_policy,
    policy_options,
    register_policy,
)
from fdrouter.policies.base import FACTS

from .candidates import Cand


def _facts() -> RoutingFacts:
    return RoutingFacts(prompt_tokens=12, prompt_text="hello " * 8, session_key="s-1", now=100.0)


def _candidates() -> list[Cand]:
    return [
        Cand("http://a:1", in_flight=3, in_flight_tokens=30, remote=RemoteMetrics(2, 1, scraped_at=99.0)),
        Cand("http://b:1", in_flight=1, in_flight_tokens=50),
        Cand("http://c:1", in_flight=2, in_flight_tokens=10, remote=RemoteMetrics(0, 0, scraped_at=10.0)),
    ]


def test_the_built_in_policies_are_all_registered():
    assert set(available_policies()) >= {
        "random", "round_robin", "request_num", "process_tokens", "power_of_two",
        "fd_metrics_score", "remote_metrics", "cache_aware", "session_affinity",
    }


@pytest.mark.parametrize("name", available_policies())
class TestEveryPolicyFollowsTheProtocol:
    def test_it_has_its_registry_name_and_needs_only_known_facts(self, name):
        policy = make_policy(name)
        assert policy.name == name
        assert isinstance(policy.needs, frozenset)
        assert policy.needs <= FACTS

    def test_choose_returns_one_of_the_candidates(self, name):
        policy = make_policy(name)
        candidates = _candidates()
        for _ in range(20):
            choice = policy.choose(candidates, _facts())
            assert any(choice is c for c in candidates)

    def test_choose_works_with_a_single_candidate(self, name):
        only = Cand("http://only:1", in_flight=7)
        assert make_policy(name).choose([only], _facts()) is only

    def test_choose_works_with_empty_facts(self, name):
        candidates = _candidates()
        assert make_policy(name).choose(candidates, RoutingFacts()) in candidates

    def test_choose_is_synchronous(self, name):
        policy = make_policy(name)
        assert not inspect.iscoroutinefunction(policy.choose)
        assert not inspect.isawaitable(policy.choose(_candidates(), _facts()))

    def test_its_options_are_keyword_only_with_defaults(self, name):
        params = [p for p in inspect.signature(type(make_policy(name))).parameters.values()]
        for p in params:
            assert p.kind is inspect.Parameter.KEYWORD_ONLY, p.name
            assert p.default is not inspect.Parameter.empty, p.name
        assert policy_options(name) == {p.name: p.default for p in params}

    def test_it_has_a_docstring(self, name):
        assert (type(make_policy(name)).__doc__ or "").strip()


def test_policy_options_lists_the_constructor_keywords_and_defaults():
    assert policy_options("cache_aware") == {
        "cache_threshold": 0.3,
        "balance_abs_threshold": 64,
        "balance_rel_threshold": 1.5,
        "eviction_interval_secs": 120.0,
        "max_tree_size": 2**26,
    }
    assert policy_options("request_num") == {}


def test_make_policy_passes_options_to_the_constructor():
    policy = make_policy("session_affinity", session_header="X-User", load_factor=2)
    assert policy.session_header == "x-user"
    assert policy.load_factor == 2.0


def test_make_policy_rejects_an_unknown_option_naming_it():
    with pytest.raises(ValueError, match="cache_treshold") as info:
        make_policy("cache_aware", cache_treshold=0.5)
    assert "cache_threshold" in str(info.value)  # and says what is accepted


def test_make_policy_rejects_a_bad_option_value_naming_it():
    with pytest.raises(ValueError, match="cache_threshold"):
        make_policy("cache_aware", cache_threshold=1.5)


def test_make_policy_rejects_an_unknown_policy_listing_the_known_ones():
    with pytest.raises(ValueError, match="request_num"):
        make_policy("no_such_policy")


@pytest.fixture
def clean_registry(monkeypatch):
    """The registry as it is now, restored after the test (entry points reloaded lazily)."""
    monkeypatch.setattr(policies, "_REGISTRY", dict(policies._REGISTRY))
    monkeypatch.setattr(policies, "_entry_points_loaded", True)


class FirstCandidate:
    """Always the first candidate."""

    name = "first_candidate"
    needs: frozenset[str] = frozenset()

    def __init__(self, *, label: str = "x") -> None:
        self.label = label

    def choose(self, candidates, facts):
        return candidates[0]


def test_register_policy_makes_a_new_class_available_to_make_policy(clean_registry):
    register_policy(FirstCandidate)
    assert "first_candidate" in available_policies()
    policy = make_policy("first_candidate", label="y")
    assert isinstance(policy, FirstCandidate) and policy.label == "y"
    assert policy_options("first_candidate") == {"label": "x"}


def test_a_registered_class_without_the_protocol_defaults_gets_them_mixed_in(clean_registry):
    assert not hasattr(FirstCandidate, "forget")
    assert register_policy(FirstCandidate) is FirstCandidate  # the decorator leaves the class alone
    policy = make_policy("first_candidate")
    policy.forget("http://10.0.0.1:8000")  # the router calls it on every deregistration
    assert policy.session_header == "x-session-id"
    assert not hasattr(FirstCandidate, "forget")


def test_every_built_in_policy_has_the_whole_protocol():
    for name in available_policies():
        policy = make_policy(name)
        assert isinstance(policy.session_header, str) and policy.session_header
        assert callable(policy.forget) and callable(policy.choose)


def test_register_policy_rejects_a_class_without_a_name_or_with_unknown_needs(clean_registry):
    class Nameless:
        needs: frozenset[str] = frozenset()

        def choose(self, candidates, facts):
            return candidates[0]

    class NeedsTheWeather(FirstCandidate):
        name = "weather"
        needs = frozenset({"weather"})

    with pytest.raises(TypeError, match="name"):
        register_policy(Nameless)
    with pytest.raises(TypeError, match="weather"):
        register_policy(NeedsTheWeather)


class _FakeEntryPoint:
    def __init__(self, name: str, target):
        self.name = name
        self.value = f"plugin:{name}"
        self._target = target

    def load(self):
        if isinstance(self._target, Exception):
            raise self._target
        return self._target


def test_a_policy_published_as_an_entry_point_is_found_by_make_policy(clean_registry, monkeypatch):
    class PluginPolicy(FirstCandidate):
        name = "plugin_policy"

    groups = []

    def fake_entry_points(*, group):
        groups.append(group)
        return [_FakeEntryPoint("plugin_policy", PluginPolicy)]

    monkeypatch.setattr(policies, "entry_points", fake_entry_points)
    monkeypatch.setattr(policies, "_entry_points_loaded", False)
    assert isinstance(make_policy("plugin_policy"), PluginPolicy)
    assert groups == ["fdrouter.policies"]
    available_policies()
    assert groups == ["fdrouter.policies"]  # loaded once


def test_a_broken_entry_point_is_skipped_with_a_warning(clean_registry, monkeypatch, caplog):
    monkeypatch.setattr(
        policies, "entry_points", lambda *, group: [_FakeEntryPoint("broken", ImportError("no module"))]
    )
    monkeypatch.setattr(policies, "_entry_points_loaded", False)
    assert "broken" not in available_policies()
    assert "broken" in caplog.text and "no module" in caplog.text


def test_an_entry_point_does_not_replace_a_built_in_policy(clean_registry, monkeypatch):
    class Impostor(FirstCandidate):
        name = "request_num"

    monkeypatch.setattr(policies, "entry_points", lambda *, group: [_FakeEntryPoint("request_num", Impostor)])
    monkeypatch.setattr(policies, "_entry_points_loaded", False)
    assert not isinstance(make_policy("request_num"), Impostor)
