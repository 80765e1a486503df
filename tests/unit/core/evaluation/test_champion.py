"""The champion: the registered version a candidate takes the place of, by one rule that
`agentctl eval` and apply share."""

from __future__ import annotations

from controller.core.evaluation.champion import Champion, champion
from tests.support.builders import D1, agent, model

TRAFFIC = {
    "versions": ["current", 1, 2],
    "aliases": {"stable": 1, "challenger": "current"},
    "serving": {"traffic": [{"alias": "stable", "percent": 30},
                            {"alias": "challenger", "percent": 70}]},
}  # fmt: skip


def test_nothing_registered_has_no_champion() -> None:
    assert champion(agent(**TRAFFIC).manifest, None) is None


def test_the_rollout_s_promote_alias_comes_first() -> None:
    spec = {
        "versions": ["current", 1],
        "aliases": {"stable": 1, "champion": "current"},
        "serving": {"traffic": [{"alias": "champion", "percent": 100}]},
        "rollout": {"canary": {"version": "current"}, "promoteAlias": "stable",
                    "steps": [{"weight": 50, "pause": "1m"}, {"weight": 100}]},
    }  # fmt: skip
    registered = model(aliases={"stable": 1, "champion": 2}, versions={1: D1, 2: D1})
    assert champion(agent(**spec).manifest, registered) == Champion(
        1, "the rollout's promote alias stable"
    )


def test_without_a_rollout_the_alias_with_the_most_traffic() -> None:
    registered = model(aliases={"stable": 1, "challenger": 2}, versions={1: D1, 2: D1})
    found = champion(agent(**TRAFFIC).manifest, registered)
    assert found == Champion(2, "alias challenger, 70 % of traffic")
    assert found is not None and found.label == "v2 (alias challenger, 70 % of traffic)"


def test_an_alias_not_set_yet_gives_way_to_the_next_share() -> None:
    registered = model(aliases={"stable": 1}, versions={1: D1})
    assert champion(agent(**TRAFFIC).manifest, registered) == Champion(
        1, "alias stable, 30 % of traffic"
    )


def test_a_traffic_entry_by_number_and_none_for_zero_percent() -> None:
    spec = {
        "versions": ["current", 3],
        "serving": {"traffic": [{"version": "current", "percent": 100},
                                {"version": 3, "percent": 0}]},
    }  # fmt: skip
    registered = model(versions={3: D1, 4: D1})
    assert champion(agent(**spec).manifest, registered) is None
    spec["serving"] = {"traffic": [{"version": "current", "percent": 60},
                                   {"version": 3, "percent": 40}]}  # fmt: skip
    assert champion(agent(**spec).manifest, registered) == Champion(3, "40 % of traffic")


def test_without_serving_the_first_declared_alias_that_is_set() -> None:
    spec = {"versions": ["current"], "aliases": {"prod": "current", "staging": "current"}}
    registered = model(aliases={"staging": 5}, versions={5: D1})
    assert champion(agent(**spec).manifest, registered) == Champion(5, "alias staging")
    registered = model(aliases={"prod": 4, "staging": 5}, versions={4: D1, 5: D1})
    assert champion(agent(**spec).manifest, registered) == Champion(4, "alias prod")


def test_an_alias_on_a_version_that_is_gone_is_no_champion() -> None:
    spec = {"versions": ["current"], "aliases": {"prod": "current"}}
    assert champion(agent(**spec).manifest, model(aliases={"prod": 9}, versions={1: D1})) is None
