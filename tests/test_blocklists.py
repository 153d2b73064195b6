"""UT1 domain blocklist (host and parent domains) and per-language word lists."""

from __future__ import annotations

from pathlib import Path

import pytest

from refinery.classifiers.blocklist import NO_HITS, DomainBlocklist, Hits, WordBlocklist, url_host
from refinery.stages.classify import WordSpec

ROOT = Path(__file__).parents[1]


def test_domain_matches_host_and_parents_only():
    lists = DomainBlocklist(ROOT / "blocklists" / "ut1")
    assert set(lists.categories) == {"agressif", "mixed_adult"}
    assert lists.category("https://www.Stormfront.org:443/forum") == "agressif"
    assert lists.category("http://a.b.kkk.com/x") == "agressif"
    assert lists.category("http://notkkk.com/") is None
    assert lists.category("http://216.40.195.47/page") == "agressif"
    assert lists.category("chatroulette.com/room") == "mixed_adult"
    for bad in (None, "", "http://[broken", "mailto:"):
        assert lists.category(bad) is None


def test_domain_categories_are_checked():
    only = DomainBlocklist(ROOT / "blocklists" / "ut1", ["mixed_adult"])
    assert only.category("http://kkk.com") is None
    with pytest.raises(ValueError, match="no category"):
        DomainBlocklist(ROOT / "blocklists" / "ut1", ["nope"])


def test_words_whole_word_for_spaced_and_substring_for_cjk():
    words = WordBlocklist(ROOT / "conf" / "rules" / "badwords", ["en", "zh"])
    found = words.hits("What a bullshit day, bullshit. Classic class assignment.", "en")
    assert found == Hits(count=2, distinct=1, rate=pytest.approx(2 / 8))
    assert words.hits("Fellow citizens, the assessment passes.", "en") == NO_HITS
    found = words.hits("这个他妈的东西", "zh")
    assert (found.count, found.distinct, found.rate) == (1, 1, pytest.approx(3 / 7))
    assert words.hits("anything", "xx") == NO_HITS


def test_one_listed_word_in_context_is_not_enough():
    """Clean prose uses a listed word or two where they belong: the default needs three different
    ones above the hit rate, C4's rule (min_distinct 1, max_count 0) any one."""
    words = WordBlocklist(ROOT / "conf" / "rules" / "badwords", ["en"])
    speech = (  # State of the Union, 1984 (public domain)
        "Parents need to know their children will not be victims of child pornography and abduction. This year"
        " we will intensify our drive against these and other horrible crimes like sexual abuse and family violence."
    )
    court = "Assange was accused of rape by a woman and sexual assault by another one after a conference."
    explicit = "Hot sex tonight: horny singles, xxx videos, porn for free."
    default, c4 = WordSpec(), WordSpec(min_distinct=1, max_count=0, max_rate=None)
    for clean in (speech, court):
        found = words.hits(clean, "en")
        assert found.count and not default.fails(found) and c4.fails(found)
    found = words.hits(explicit, "en")
    assert found.distinct >= 3 and default.fails(found) and c4.fails(found)


def test_url_host():
    assert url_host("HTTP://Example.COM.:8080/a") == "example.com"
    assert url_host("example.org/path") == "example.org"
