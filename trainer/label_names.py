"""Class names that are one class spelt two ways.

A catalogue put together from several sources files one movement as `Pop_Art` here and `Pop Art`
or `pop-art` there. The model then learns two classes it cannot tell apart, and every painting
under the rarer spelling reads as mislabelled. Such names are found, not merged: which spelling is
right, and whether two names really are one class, is the curator's call (rename in the data).

Pure functions over lists of names.
"""
from __future__ import annotations

import unicodedata


def spelling_key(name: str) -> str:
    """`name` without case, accents, spaces or punctuation: "Naïve Art (Primitivism)" and
    "Naive_Art_Primitivism" both give "naiveartprimitivism"."""
    plain = unicodedata.normalize("NFKD", str(name))
    return "".join(ch for ch in plain.casefold() if ch.isalnum() and not unicodedata.combining(ch))


def spelling_variants(names: list[str]) -> list[list[int]]:
    """Groups (each a list of indices into `names`, in order) of two or more names with the same
    `spelling_key`; names whose key is empty are never grouped. [] when every name is its own."""
    groups: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        key = spelling_key(name)
        if key:
            groups.setdefault(key, []).append(i)
    return [g for g in groups.values() if len(g) > 1]


def spelling_variants_line(task: str, names: list[str], counts: list[int]) -> str:
    """One sentence naming each group of `spelling_variants` with its paintings (counts, aligned with
    names), or "" when there are none."""
    groups = spelling_variants(names)
    if not groups:
        return ""
    said = "; ".join(" and ".join(f"'{names[i]}' ({counts[i]:,})" for i in g) for g in groups)
    return (f"{task} classes that differ only in case, spaces, punctuation or accents: {said}. One class "
            "spelt two ways is learnt as two the model cannot tell apart, and the rarer spelling's "
            "paintings read as mislabelled; rename one in the data to merge them.")
