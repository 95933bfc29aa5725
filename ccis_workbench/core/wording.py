"""Small wording helpers shared by both faces: counts with the right plural ("1 override", "2 overrides")."""

from __future__ import annotations


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """`n noun`, with *plural* (default: noun + "s") unless n is 1."""
    return f"{n} {noun if n == 1 else (plural or noun + 's')}"
