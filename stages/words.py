"""Word splitting and character classes for the rule filters.

The published Gopher/C4/FineWeb rules count "words" as a tokenizer sees them: punctuation is
its own token ("end." is two words), hyphenated compounds and English contractions are split
("well-known" → well - known, "don't" → don 't), while URLs, e-mail addresses, numbers with
separators (3.5, 1,000, 24/7, Covid-19), initials (U.S.) and common abbreviations (Dr.) stay
whole, as in spaCy's English tokenizer that datatrove's filters use. One compiled
regular expression does that in C, which is what makes the rules cheap.

Chinese and Japanese have no spaces: there every Han or kana character is a word, so the
word-based rules see a meaningful count instead of one "word" per line.
"""
from __future__ import annotations

import regex

_ALL_CHARS = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c < 0xE000)
# Unicode Sentence_Terminal: the characters that end a sentence in any script.
TERMINAL_PUNCTUATION = frozenset(regex.findall(r"\p{Sentence_Terminal}", _ALL_CHARS))
del _ALL_CHARS

_CJK = r"\p{Han}\p{Hiragana}\p{Katakana}"
_CONTRACTION = r"(?i:s|t|re|ll|ve|d|m)\b"
# Common abbreviations that keep their period (a tokenizer's exception list, abridged).
_ABBREVIATIONS = "Mr|Mrs|Ms|Dr|St|Jr|Sr|Mt|Prof|Gen|Gov|Sen|Rep|Rev|Inc|Ltd|Co|Corp|vs|etc|Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec"
_TAIL = r"""
| (?:https?://|www\.)\S+?(?=[.,;:!?)\]}}"'»”’]*(?:\s|\Z))
| [\w.+-]+@[\w-]+(?:\.[\w-]+)+
| (?:\p{{L}}\.)+(?=[\s,;:!?)"'»”’]|\Z)
| \b(?:{abbr})\.
| \b(?:[iI](?=m\b)|[cC]an(?=not\b)|gon(?=na\b)|got(?=ta\b)|wan(?=na\b))
| ['’]{contraction}
| {w}+(?:(?:\.|['’](?!{contraction})|[-–—/+,:](?=\p{{N}})|(?<=\p{{N}})[-–—/+,:])(?={w}){w}+)*(?:[-/](?=\s|\Z))?
| \.{{2,}}
| -{{2,}}
| [^\s]
"""
_WORD_CHARS = r"[\p{L}\p{M}\p{N}_]"
_WORD_CHARS_NO_CJK = r"[[\p{L}\p{M}\p{N}_]--[" + _CJK + "]]"
TOKEN = regex.compile(r"(?!)" + _TAIL.format(w=_WORD_CHARS, abbr=_ABBREVIATIONS, contraction=_CONTRACTION),
                      regex.VERBOSE | regex.V1)
TOKEN_CJK = regex.compile(r"[" + _CJK + "]" + _TAIL.format(w=_WORD_CHARS_NO_CJK, abbr=_ABBREVIATIONS, contraction=_CONTRACTION),
                          regex.VERBOSE | regex.V1)
CJK_CHAR = regex.compile(r"[" + _CJK + "]")
LETTER = regex.compile(r"\p{L}")
# A token is a "symbol" when it has no letter, mark or digit (datatrove: all chars punctuation).
HAS_WORD_CHAR = regex.compile(r"[\p{L}\p{M}\p{N}]")
CJK_LANGS = frozenset({"zh", "ja", "wuu", "yue", "gan"})
# Share of Han/kana among letters above which a document without a language is treated as CJK.
CJK_SCRIPT_SHARE = 0.3


def is_cjk(text: str, lang: str | None) -> bool:
    """Whether words are characters: by the language when known, else by the script."""
    if lang:
        return lang in CJK_LANGS
    letters = len(LETTER.findall(text, endpos=20_000))
    return letters > 0 and len(CJK_CHAR.findall(text, endpos=20_000)) >= CJK_SCRIPT_SHARE * letters


def split_words(text: str, cjk: bool = False) -> list[str]:
    """Words and punctuation tokens of `text` (Han and kana one per character when `cjk`)."""
    return (TOKEN_CJK if cjk else TOKEN).findall(text)
