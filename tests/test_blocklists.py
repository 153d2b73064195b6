"""UT1 domain blocklist (host and parent domains) and per-language word lists."""

from __future__ import annotations

from pathlib import Path

import pytest

from refinery.classifiers.blocklist import DomainBlocklist, WordBlocklist, url_host

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
    hits, rate = words.hits("What a bullshit day. Classic class assignment.", "en")
    assert hits == 1 and rate == pytest.approx(1 / 7)
    assert words.hits("Fellow citizens, the assessment passes.", "en") == (0, 0.0)
    hits, rate = words.hits("这个他妈的东西", "zh")
    assert hits == 1 and rate == pytest.approx(3 / 7)
    assert words.hits("anything", "xx") == (0, 0.0)


def test_url_host():
    assert url_host("HTTP://Example.COM.:8080/a") == "example.com"
    assert url_host("example.org/path") == "example.org"
