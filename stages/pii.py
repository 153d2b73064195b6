"""The `pii` stage: e-mail addresses, IP addresses, phone numbers, payment card numbers and IBANs
replaced by placeholders. It drops nothing.

Each kind is a candidate pattern plus, where a pattern alone would also match ordinary text, a
check of the match: an IP address must parse and (by default) be public, a card number must
pass the Luhn check and start like a card of a known network, an IBAN must have its country's
length and a valid mod-97 checksum, a phone number must have 7 to 15 digits. Boundaries keep
version numbers (`v1.2.3.4`, `1.2.3.4.5`), dates, times and ordinary numbers out.

Vectorized where Arrow allows: one RE2 scan of the whole batch per kind finds the documents
that hold any candidate, and e-mail addresses (no check needed) are replaced and counted by
Arrow alone. Only documents with a candidate of a checked kind go through Python's `re`, whose
lookarounds and per-match checks RE2 cannot express.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Callable, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, field_validator

from refinery.pipeline.schema import replace_rows
from refinery.pipeline.stage import MapStage, StageParams, Verdict, set_column
from refinery.pipeline.stats import HistogramSpec

KINDS = ("email", "ip", "phone", "credit_card", "iban")
EXAMPLE_CONTEXT = 60

EMAIL = (
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,}"
)
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
# The checked kinds: a pattern for Python's `re` and the RE2 prefilter that finds the documents
# with a candidate; IP addresses have one of each per version. The lookarounds keep a match
# from being part of a longer token (a version, a longer number, a word; a sentence's closing
# period may follow); each pattern opens with a lookahead for its first character, which lets
# `re` skip ahead instead of trying the lookbehind at every position.
PATTERNS = {
    "ipv4": (
        r"(?=\d)(?<![\w.:])" + _OCTET + r"(?:\." + _OCTET + r"){3}(?!\w|\.\w)",
        r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}",
    ),
    "ipv6": (
        r"(?=[0-9A-Fa-f:])(?<![\w:])(?:(?:[0-9A-Fa-f]{1,4}:){1,7}:?(?::?[0-9A-Fa-f]{1,4}){1,7}|::(?:[0-9A-Fa-f]{1,4}:?){1,7})(?![\w:])",
        r"[0-9A-Fa-f]{1,4}::|::[0-9A-Fa-f]{1,4}|[0-9A-Fa-f]{1,4}:[0-9A-Fa-f]{1,4}:[0-9A-Fa-f]{1,4}",
    ),
    # international (+CC ...), North American (555) 123-4567 / 555-123-4567, national with a
    # trunk prefix 0 (030 1234567, 06 12 34 56 78)
    "phone": (
        r"(?=[+(\d])(?<![\w+.,/-])(?:\+\d{1,3}(?:[ .-]?\(\d{1,4}\)|[ .-]?\d{1,4})(?:[ .-]?\d{2,4}){1,5}"
        r"|\(\d{3}\)[ .-]?\d{3}[ .-]\d{4}|\d{3}[ .-]\d{3}[ .-]\d{4}"
        r"|0\d{1,4}[ /.-]?\d{2,8}(?:[ .-]\d{2,4}){0,3})(?!\w|[.,/-]\w)",
        r"\+\d|\(\d{3}\)|\d[ /.-]?\d{2,4}[ .-]\d{2,4}",
    ),
    "credit_card": (r"(?=\d)(?<![\w.,-])\d(?:[ -]?\d){12,18}(?!\w|[.,-]\w)", r"\d(?:[ -]?\d){12,18}"),
    "iban": (
        r"(?=[A-Z])(?<!\w)[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?!\w)",
        r"[A-Z]{2}\d{2} ?[A-Z0-9]{4}",
    ),
}
_COMPILED = {name: re.compile(pattern) for name, (pattern, _) in PATTERNS.items()}
# Numbers shaped like dates are not phone numbers (01.02.2023, 2023-01-02, 12/31/99), nor are
# digit groups that go on before or after the match (part of a longer code or table).
_DATE = re.compile(r"\d{1,4}[./-]\d{1,2}[./-]\d{1,4}")
_GROUP_BEFORE = re.compile(r"[A-Z0-9] $")
_GROUP_AFTER = re.compile(r" [A-Z0-9]")
# Words that, just before a dotted number, make it a version, not an address.
_VERSION_WORDS = re.compile(r"(?:version|release|build|v)\s*$", re.I)
# IBAN lengths by country (ISO 13616 registry, the countries of SEPA and a few more).
IBAN_LENGTHS = {
    "AD": 24,
    "AE": 23,
    "AT": 20,
    "BA": 20,
    "BE": 16,
    "BG": 22,
    "BH": 22,
    "BR": 29,
    "CH": 21,
    "CY": 28,
    "CZ": 24,
    "DE": 22,
    "DK": 18,
    "EE": 20,
    "ES": 24,
    "FI": 18,
    "FO": 18,
    "FR": 27,
    "GB": 22,
    "GI": 23,
    "GL": 18,
    "GR": 27,
    "HR": 21,
    "HU": 28,
    "IE": 22,
    "IL": 23,
    "IS": 26,
    "IT": 27,
    "KW": 30,
    "KZ": 20,
    "LI": 21,
    "LT": 20,
    "LU": 20,
    "LV": 21,
    "MC": 27,
    "MT": 31,
    "NL": 18,
    "NO": 15,
    "PL": 28,
    "PT": 25,
    "RO": 24,
    "RS": 22,
    "SA": 24,
    "SE": 24,
    "SI": 19,
    "SK": 24,
    "SM": 27,
    "TR": 26,
    "UA": 29,
}
# Card networks by leading digits, with the lengths their numbers have: Visa; Mastercard;
# American Express; then Discover, JCB, Diners Club, UnionPay and Maestro together.
_CARDS = [
    (re.compile(r"4"), (13, 16, 19)),
    (re.compile(r"5[1-5]|2(?:2[2-9]|[3-6]|7[01]|720)"), (16,)),
    (re.compile(r"3[47]"), (15,)),
    (re.compile(r"6(?:011|5|4[4-9]|22)|35(?:2[89]|[3-8])|3(?:0[0-5]|[689])|62|5[06-9]|6[37]"), tuple(range(14, 20))),
]


class PiiParams(StageParams):
    kinds: list[Literal["email", "ip", "phone", "credit_card", "iban"]] = list(KINDS)
    # `{kind}` is replaced by the kind's name.
    replacement: str = "<{kind}>"
    # Which IP addresses are replaced: public ones only (private, loopback, link-local and
    # documentation ranges are not personal data), or every valid address.
    ip_addresses: Literal["public", "all"] = "public"
    min_phone_digits: int = Field(default=7, ge=5, le=15)

    @field_validator("kinds")
    @classmethod
    def _some(cls, kinds: list[str]) -> list[str]:
        if not kinds:
            raise ValueError("name at least one kind")
        return list(dict.fromkeys(kinds))


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_ok(text: str) -> bool:
    iban = text.replace(" ", "")
    if IBAN_LENGTHS.get(iban[:2]) != len(iban):
        return False
    moved = iban[4:] + iban[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


class Pii(MapStage):
    kind = "pii"
    Params = PiiParams
    columns = {"pii_replacements": pa.int32()}
    histograms = {"pii_replacements": HistogramSpec(0, 20, 20)}

    def _checks(self) -> dict[str, Callable[[re.Match], bool]]:
        return {
            "ipv4": self._ip_ok,
            "ipv6": self._ip_ok,
            "phone": self._phone_ok,
            "credit_card": self._card_ok,
            "iban": lambda match: iban_ok(match.group()),
        }

    def _ip_ok(self, match: re.Match) -> bool:
        try:
            address = ipaddress.ip_address(match.group())
        except ValueError:
            return False
        if address.version == 4 and _VERSION_WORDS.search(match.string, max(0, match.start() - 12), match.start()):
            return False
        return self.params.ip_addresses == "all" or address.is_global

    def _phone_ok(self, match: re.Match) -> bool:
        text = match.group()
        digits = sum(c.isdigit() for c in text)
        return (
            self.params.min_phone_digits <= digits <= 15
            and not _DATE.fullmatch(text)
            and not _card_like(text)
            and not _in_group_run(match)
        )

    @staticmethod
    def _card_ok(match: re.Match) -> bool:
        digits = match.group().replace(" ", "").replace("-", "")
        lengths = next((lengths for prefix, lengths in _CARDS if prefix.match(digits)), ())
        return len(digits) in lengths and luhn_ok(digits) and not _in_group_run(match)

    def process(self, batch: pa.RecordBatch) -> Verdict:
        p: PiiParams = self.params
        texts = batch.column("text")
        before = texts
        n = batch.num_rows
        total = np.zeros(n, dtype=np.int64)
        counts: dict[str, int] = {}
        touched: dict[str, np.ndarray] = {}
        # Order: cards and IBANs before phones (a card number also looks like a phone number).
        for kind in sorted(p.kinds, key=("email", "credit_card", "iban", "ip", "phone").index):
            placeholder = p.replacement.format(kind=kind)
            if kind == "email":
                found = pc.count_substring_regex(texts, EMAIL).to_numpy(zero_copy_only=False).astype(np.int64)
                if found.any():
                    texts = pc.replace_substring_regex(texts, EMAIL, placeholder.replace("\\", "\\\\"))
            else:
                found = np.zeros(len(texts), dtype=np.int64)
                for check in ("ipv4", "ipv6") if kind == "ip" else (kind,):
                    texts, hits = self._replace_checked(texts, check, placeholder)
                    found += hits
            total += found
            if found.any():
                counts[f"pii_{kind}"] = int(found.sum())
                touched[kind] = found > 0
        batch = set_column(batch, "text", texts)
        batch = set_column(batch, "pii_replacements", pa.array(total.astype(np.int32)))
        verdict = Verdict(batch, counts=counts)
        for kind, rows in touched.items():
            picked = np.flatnonzero(rows)[:8]
            verdict.examples[f"pii_{kind}"] = (
                picked.tolist(),
                [
                    _before_after(b, a, p.replacement.format(kind=kind))
                    for b, a in zip(before.take(picked).to_pylist(), texts.take(picked).to_pylist())
                ],
            )
        return verdict

    def _replace_checked(self, texts: pa.Array, check: str, placeholder: str) -> tuple[pa.Array, np.ndarray]:
        """Replace the checked matches of one pattern in the documents its RE2 prefilter flags."""
        pattern, prefilter = _COMPILED[check], PATTERNS[check][1]
        ok = self._checks()[check]
        flagged = np.flatnonzero(
            pc.match_substring_regex(texts, prefilter).fill_null(False).to_numpy(zero_copy_only=False)
        )
        found = np.zeros(len(texts), dtype=np.int64)
        if not len(flagged):
            return texts, found
        changed = []
        for row, text in zip(flagged.tolist(), texts.take(pa.array(flagged)).to_pylist()):
            hits = 0

            def swap(match: re.Match) -> str:
                nonlocal hits
                if ok(match):
                    hits += 1
                    return placeholder
                return match.group()

            changed.append(pattern.sub(swap, text))
            found[row] = hits
        return replace_rows(texts, flagged, pa.array(changed, texts.type)), found


def _in_group_run(match: re.Match) -> bool:
    """Whether the match continues a run of digit or code groups (a longer code, a table row)."""
    return bool(
        _GROUP_BEFORE.search(match.string, max(0, match.start() - 2), match.start())
        or _GROUP_AFTER.match(match.string, match.end())
    )


def _card_like(text: str) -> bool:
    digits = re.sub(r"\D", "", text)
    return 13 <= len(digits) <= 19 and luhn_ok(digits)


def _before_after(before: str, after: str, placeholder: str) -> str:
    """The first replacement in context: `…before… ⟶ …after…` (the texts agree up to it)."""
    at = after.find(placeholder)
    start = max(0, at - EXAMPLE_CONTEXT)
    return f"{before[start : at + 2 * EXAMPLE_CONTEXT]} ⟶ {after[start : at + len(placeholder) + EXAMPLE_CONTEXT]}"
