"""Generated personal data and look-alikes for testing the `pii` stage: valid e-mail addresses,
public and private IP addresses, phone numbers in international and national formats, card
numbers that pass the Luhn check, IBANs with valid checksums, and text that must stay
untouched (version numbers, dates, times, ordinary numbers, ISBNs, invalid card numbers).
Used by the tests and by bench/pii.py; nothing here is real data."""

from __future__ import annotations

import random

from refinery.stages.pii import IBAN_LENGTHS


def _luhn_complete(digits: str) -> str:
    for last in "0123456789":
        total = 0
        for i, ch in enumerate(reversed(digits + last)):
            d = int(ch)
            if i % 2:
                d = d * 2 - 9 if d > 4 else d * 2
            total += d
        if total % 10 == 0:
            return digits + last
    raise AssertionError("unreachable")


def _iban(rng: random.Random) -> str:
    country = rng.choice(["DE", "FR", "GB", "NL", "ES", "IT", "BE", "CH"])
    length = IBAN_LENGTHS[country]
    bban = "".join(rng.choice("0123456789") for _ in range(length - 4))
    if country in ("GB", "NL"):
        bban = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(4)) + bban[4:]
    number = int("".join(str(int(c, 36)) for c in bban + country + "00"))
    iban = f"{country}{98 - number % 97:02d}{bban}"
    return " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))


def pii_item(kind: str, rng: random.Random) -> str:
    """One generated item of a kind, written as people write it."""
    if kind == "email":
        user = rng.choice(["anna", "j.smith", "mike_90", "li.wei", "contact", "m.dupont+news"])
        domain = rng.choice(["mail-host.net", "example-corp.co.uk", "uni-x.edu", "posteo.de", "web.fr"])
        return f"{user}{rng.randint(1, 99)}@{domain}"
    if kind == "ip":
        if rng.random() < 0.3:
            groups = [f"{rng.randint(0x2001, 0x2C0F):x}"] + [f"{rng.randint(0, 0xFFFF):x}" for _ in range(7)]
            return ":".join(groups)
        while True:
            first = rng.choice([23, 45, 66, 81, 93, 104, 151, 185, 203, 212])
            address = f"{first}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
            if not address.startswith("203.0.113."):
                return address
    if kind == "phone":
        form = rng.randrange(5)
        d = lambda n: "".join(rng.choice("0123456789") for _ in range(n))  # noqa: E731
        return [
            f"+44 20 {d(4)} {d(4)}",
            f"+49 30 {d(7)}",
            f"({rng.randint(201, 989)}) {rng.randint(200, 999)}-{d(4)}",
            f"0{rng.randint(1, 9)} {d(2)} {d(2)} {d(2)} {d(2)}",
            f"+1-{rng.randint(201, 989)}-{rng.randint(200, 999)}-{d(4)}",
        ][form]
    if kind == "credit_card":
        prefix, length = rng.choice([("4", 16), ("51", 16), ("55", 16), ("37", 15), ("6011", 16)])
        number = _luhn_complete(prefix + "".join(rng.choice("0123456789") for _ in range(length - len(prefix) - 1)))
        if length == 15:
            return f"{number[:4]} {number[4:10]} {number[10:]}"
        return " ".join(number[i : i + 4] for i in range(0, 16, 4)) if rng.random() < 0.7 else number
    if kind == "iban":
        return _iban(rng)
    raise ValueError(kind)


def look_alike(rng: random.Random) -> str:
    """Text with numbers that is not personal data."""
    d = rng.randint
    return rng.choice(
        [
            f"version {d(1, 9)}.{d(0, 20)}.{d(0, 99)}",
            f"v{d(1, 9)}.{d(0, 9)}.{d(0, 9)}.{d(0, 99)}",
            f"on {d(2000, 2030)}-{d(1, 12):02d}-{d(1, 28):02d}",
            f"{d(1, 28):02d}.{d(1, 12):02d}.{d(1990, 2030)}",
            f"{d(1, 12)}/{d(1, 28)}/{d(90, 99)}",
            f"at {d(0, 23):02d}:{d(0, 59):02d}:{d(0, 59):02d}",
            f"{d(1, 999)},{d(100, 999)},{d(100, 999)} people",
            f"{d(1, 99)} {d(100, 999)} {d(100, 999)} euros",
            f"ISBN 978-{d(0, 9)}-{d(10, 99)}-{d(100000, 999999)}-{d(0, 9)}",
            f"{d(1, 9)}.{d(10000, 99999)}",
            f"router 192.168.{d(0, 255)}.{d(1, 254)}",
            f"host 10.{d(0, 255)}.{d(0, 255)}.{d(1, 254)}",
            "card 4111 1111 1111 1112",
            f"order no. {d(10**9, 10**10 - 1)}",
            f"{d(1, 9)}.{d(0, 9)}.{d(0, 9)}.{d(0, 9)}.{d(0, 9)}",
        ]
    )
