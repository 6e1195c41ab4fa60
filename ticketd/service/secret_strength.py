"""How guessable a secret is: an estimate of its entropy that sees through patterns.

A session secret or service key that is long enough can still be weak: a short
pattern repeated (``abcdefgh`` four times), a run of sequential characters
(``abcdef…``, ``0123…``, ``9876…``, a keyboard row ``qwerty…``), one character or
a few digits over and over. Counting distinct characters or measuring length does
not see these. :func:`estimated_bits` walks the secret and charges every
character ``log2`` of the size of the character classes the secret uses (lower,
upper, digits, other), except a character that continues a pattern — the same
step as the previous pair (a sequence or a repeat) in ASCII or along a keyboard
row, or the same as the character one period back, where the previous one
matched too — which costs one bit. The service refuses secrets under
:data:`MIN_SECRET_BITS`.

This errs towards refusing what a human typed; what ``secrets.token_urlsafe(32)``
or ``openssl rand -hex 32`` prints passes by a wide margin.
"""

from __future__ import annotations

import itertools
import math
import string

__all__ = ["MIN_SECRET_BITS", "estimated_bits", "weakness"]

MIN_SECRET_BITS = 112
"""NIST SP 800-57's minimum security strength; the estimate is conservative."""
_CLASSES = (string.ascii_lowercase, string.ascii_uppercase, string.digits)
_OTHER_CLASS_SIZE = 33  # printable ASCII punctuation and space
_KEYBOARD_ROWS = ("1234567890-=", "qwertyuiop[]", "asdfghjkl;'", "zxcvbnm,./")
_MAX_PERIOD = 32


def _alphabet_bits(secret: str) -> float:
    size = sum(len(chars) for chars in _CLASSES if any(c in chars for c in secret))
    if any(not any(c in chars for chars in _CLASSES) for c in secret):
        size += _OTHER_CLASS_SIZE
    return math.log2(max(size, 2))


def _steps(secret: str) -> list[set[tuple[str, int]]]:
    """For each adjacent pair, the steps it takes: in ASCII and along keyboard rows."""
    lowered = secret.lower()
    steps: list[set[tuple[str, int]]] = []
    for a, b in itertools.pairwise(lowered):
        found = {("ascii", ord(b) - ord(a))}
        for row in _KEYBOARD_ROWS:
            if a in row and b in row and abs(row.index(b) - row.index(a)) == 1:
                found.add((row, row.index(b) - row.index(a)))
        steps.append(found)
    return steps


def _continues_period(secret: str, i: int) -> bool:
    """Whether character ``i`` follows from the ones a period ``p`` back: a repeat whose
    neighbour repeated too, the third of a repeat, or the fourth of a progression
    (``1…2…3…4``, interleaved counters)."""
    code = [ord(c) for c in secret]
    for p in range(1, min(_MAX_PERIOD, i) + 1):
        if code[i] == code[i - p] and (
            (i - 1 - p >= 0 and code[i - 1] == code[i - 1 - p])
            or (i - 2 * p >= 0 and code[i - p] == code[i - 2 * p])
        ):
            return True
        if i - 3 * p >= 0:
            step = code[i] - code[i - p]
            if abs(step) <= 2 and step == code[i - p] - code[i - 2 * p] == (
                code[i - 2 * p] - code[i - 3 * p]
            ):
                return True
    return False


def estimated_bits(secret: str) -> float:
    """A conservative estimate of the secret's entropy in bits (see the module docstring)."""
    per_char = _alphabet_bits(secret)
    steps = _steps(secret)
    bits = 0.0
    for i in range(len(secret)):
        sequence = i >= 2 and any(
            step in steps[i - 2] and abs(step[1]) <= 2 for step in steps[i - 1]
        )
        predictable = sequence or _continues_period(secret, i)
        bits += 1.0 if predictable else per_char
    return bits


def weakness(secret: str) -> str | None:
    """Why ``secret`` is too guessable to sign with, or ``None`` if it is not."""
    if len(set(secret)) < 8:
        return "has too few distinct characters"
    if estimated_bits(secret) < MIN_SECRET_BITS:
        return (
            "is too predictable (a repeated pattern, a sequential or keyboard run, "
            "or too few kinds of characters); generate a random one"
        )
    return None
