"""The crash tests' verdicts are only as good as their checker: it must catch each fault."""

from __future__ import annotations

from tests.crash.harness import Effect, check_effects, plan


def effects(pairs: list[tuple[str, int]]) -> list[Effect]:
    return [Effect(i + 1, k, s, f"id-{k}-{s}", 1, 0) for i, (k, s) in enumerate(pairs)]


PUBLISHED = plan(6, 2)  # a: 0,1,2  b: 0,1,2 interleaved


def test_a_clean_run_has_no_finding() -> None:
    found = check_effects(PUBLISHED, effects(PUBLISHED), dedup=True)
    assert (found.lost, found.duplicated, found.disordered, found.unknown) == ([], 0, {}, [])


def test_a_missing_effect_is_lost() -> None:
    found = check_effects(PUBLISHED, effects(PUBLISHED[:-1]), dedup=True)
    assert found.lost == [PUBLISHED[-1]]


def test_a_replayed_suffix_is_a_duplicate_but_in_order_without_dedup() -> None:
    a = [("k0000", 0), ("k0000", 1), ("k0000", 2), ("k0000", 1), ("k0000", 2)]
    b = [("k0001", 0), ("k0001", 1), ("k0001", 2)]
    found = check_effects(PUBLISHED, effects(a + b), dedup=False)
    assert (found.duplicated, found.extra_effects, found.disordered) == (2, 2, {})
    with_dedup = check_effects(PUBLISHED, effects(a + b), dedup=True)
    assert set(with_dedup.disordered) == {"k0000"}  # with dedup a replay is a fault


def test_a_reordering_or_a_replay_that_skips_is_disordered() -> None:
    b = [("k0001", 0), ("k0001", 1), ("k0001", 2)]
    swapped = [("k0000", 0), ("k0000", 2), ("k0000", 1)]
    skipping = [("k0000", 0), ("k0000", 1), ("k0000", 2), ("k0000", 0), ("k0000", 2)]
    late_first = [("k0000", 1), ("k0000", 0), ("k0000", 2)]
    for pairs in (swapped, skipping, late_first):
        found = check_effects(PUBLISHED, effects(pairs + b), dedup=False)
        assert set(found.disordered) == {"k0000"}, pairs


def test_an_effect_nobody_published_is_reported() -> None:
    found = check_effects(PUBLISHED, effects([*PUBLISHED, ("k0009", 0)]), dedup=True)
    assert found.unknown == [("k0009", 0)]
