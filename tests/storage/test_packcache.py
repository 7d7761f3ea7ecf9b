"""The whole-pack cache: bounded in bytes, least recently used first out, and never serving what
was computed before its owner's refs moved."""

from __future__ import annotations

from storage.packcache import CachedPack, PackCache


def entry(size: int, objects: int = 1) -> CachedPack:
    return CachedPack((b"x" * size,), objects, 0, objects, 0)


def test_hit_after_put_and_miss_for_another_request() -> None:
    cache = PackCache(1000)
    key = cache.key(1, ("wants", "haves"))
    assert cache.get(key) is None
    assert cache.put(key, entry(100))
    assert cache.get(key) == entry(100)
    assert cache.get(cache.key(1, ("other",))) is None
    assert cache.get(cache.key(2, ("wants", "haves"))) is None  # another repository
    assert (cache.hits, cache.misses) == (1, 3)


def test_bounded_in_bytes_least_recently_used_goes_first() -> None:
    cache = PackCache(1000)  # entries up to 250 bytes
    keys = [cache.key(1, i) for i in range(5)]
    for k in keys[:4]:
        assert cache.put(k, entry(250))
    assert cache.size == 1000
    assert cache.get(keys[0]) is not None  # now the most recently used
    assert cache.put(keys[4], entry(250))
    assert cache.size <= 1000
    assert cache.get(keys[1]) is None  # the least recently used was dropped
    assert all(cache.get(k) is not None for k in (keys[0], keys[2], keys[3], keys[4]))


def test_an_entry_over_a_quarter_of_the_budget_is_not_kept() -> None:
    cache = PackCache(1000)
    assert not cache.put(cache.key(1, "big"), entry(251))
    assert cache.size == 0 and len(cache) == 0


def test_invalidate_drops_the_owners_entries_only() -> None:
    cache = PackCache(1000)
    mine, theirs = cache.key(1, "r"), cache.key(2, "r")
    cache.put(mine, entry(10))
    cache.put(theirs, entry(10))
    cache.invalidate(1)
    assert cache.get(cache.key(1, "r")) is None
    assert cache.get(mine) is None
    assert cache.get(theirs) is not None
    assert cache.size == 10


def test_a_pack_computed_before_a_ref_update_is_not_stored_after_it() -> None:
    cache = PackCache(1000)
    stale = cache.key(1, "r")  # taken when the request started
    cache.invalidate(1)  # a ref moved while it was being computed
    assert not cache.put(stale, entry(10))
    assert cache.get(cache.key(1, "r")) is None


def test_zero_budget_keeps_nothing() -> None:
    cache = PackCache(0)
    assert not cache.put(cache.key(1, "r"), entry(1))
