"""Deterministic synthetic memories and queries for the load benchmark.

Sentences are drawn from templates over a few hundred words, so that vectors spread out and a
search has real work to do (identical texts would make every query trivially cheap). The same seed
and user give the same sentences in the same order, whatever the batch sizes.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


NAMES = _words(
    "Alice Bruno Chen Dana Elif Farid Greta Hiro Ines Jonas Kemal Lena Mateo Nadia Omar Priya Quinn Rosa Sven Tara "
    "Umar Vera Wen Ximena Yusuf Zoe Arjun Bea Carlos Dmitri Emma Fatima Goran Hana Ivan Julia Kofi Lucia Malik Nora "
    "Oskar Paula Rahul Sara Tomas Uma Viktor Wanda Yara Zheng"
)
THINGS = _words(
    "coffee tea jazz opera chess tennis sushi ramen tacos pizza hiking cycling sailing surfing yoga pilates "
    "painting pottery knitting gardening photography poetry novels podcasts documentaries anime football "
    "basketball volleyball climbing skiing snowboarding baking barbecue curry dumplings croissants espresso "
    "lemonade kombucha wine cider chocolate cheesecake pancakes oatmeal salmon tofu mushrooms avocados mangoes "
    "strawberries peanuts almonds shellfish gluten lactose violin piano guitar drums cello saxophone harmonica "
    "Python Rust JavaScript Kotlin spreadsheets robotics astronomy geology history philosophy economics "
    "linguistics chemistry origami calligraphy karaoke bowling archery fencing rowing marathons triathlons "
    "crosswords sudoku puzzles boardgames videogames vinyl cassettes comics manga sneakers watches perfume "
    "candles houseplants succulents bonsai aquariums birdwatching stargazing camping kayaking fishing"
)
PLACES = _words(
    "Lisbon Berlin Tokyo Nairobi Lima Oslo Seoul Cairo Dublin Hanoi Quito Prague Vienna Mumbai Denver Austin "
    "Toronto Melbourne Reykjavik Marrakesh Istanbul Krakow Porto Naples Kyoto Bangkok Santiago Havana Tbilisi "
    "the-park the-library the-gym the-beach the-office the-market the-museum the-cafe the-mountains the-lake "
    "the-river the-stadium the-theatre the-garden the-harbour the-bakery the-university the-hospital "
    "the-airport the-station"
)
ADJECTIVES = _words(
    "relaxing exciting boring expensive cheap delicious overrated underrated noisy peaceful tiring healthy "
    "spicy sweet bitter creative difficult easy nostalgic inspiring crowded cozy elegant rustic modern"
)
TIMES = _words(
    "last-week yesterday every-morning on-weekends in-summer in-winter after-work before-breakfast "
    "twice-a-month on-holidays next-spring last-autumn at-night on-mondays on-fridays"
)
VERBS = _words("enjoys practises plays shares discusses studies collects teaches avoids recommends cooks orders")
JOBS = _words(
    "nurse teacher engineer chef pilot lawyer designer farmer librarian plumber dentist journalist "
    "architect accountant firefighter pharmacist carpenter musician translator electrician"
)
PETS = _words("dog cat parrot rabbit hamster turtle goldfish ferret")
CATEGORIES = ("preferences", "habits", "facts", "plans", "health", "work")

_Pick = Callable[[tuple[str, ...]], str]

MEMORY_TEMPLATES: tuple[Callable[[_Pick], str], ...] = (
    lambda p: f"{p(NAMES)} likes {p(THINGS)} in {p(PLACES)}",
    lambda p: f"{p(NAMES)} went to {p(PLACES)} {p(TIMES)} to buy {p(THINGS)}",
    lambda p: f"{p(NAMES)} thinks {p(THINGS)} is {p(ADJECTIVES)}",
    lambda p: f"Every weekend {p(NAMES)} {p(VERBS)} {p(THINGS)} with {p(NAMES)}",
    lambda p: f"{p(NAMES)} is allergic to {p(THINGS)} and avoids {p(THINGS)}",
    lambda p: f"{p(NAMES)} wants to visit {p(PLACES)} {p(TIMES)}",
    lambda p: f"{p(NAMES)} has a {p(ADJECTIVES)} {p(PETS)} that loves {p(THINGS)}",
    lambda p: f"{p(NAMES)} works as a {p(JOBS)} near {p(PLACES)}",
    lambda p: f"{p(NAMES)} learned {p(THINGS)} at {p(PLACES)} {p(TIMES)}",
    lambda p: f"The {p(ADJECTIVES)} {p(THINGS)} at {p(PLACES)} reminded {p(NAMES)} of {p(THINGS)}",
)
QUERY_TEMPLATES: tuple[Callable[[_Pick], str], ...] = (
    lambda p: f"What does {p(NAMES)} like in {p(PLACES)}?",
    lambda p: f"Where did {p(NAMES)} buy {p(THINGS)}?",
    lambda p: f"What is {p(NAMES)} allergic to?",
    lambda p: f"Who {p(VERBS)} {p(THINGS)} with {p(NAMES)}?",
    lambda p: f"{p(THINGS)} {p(PLACES)}",
    lambda p: f"When does {p(NAMES)} want to visit {p(PLACES)}?",
    lambda p: f"What job does {p(NAMES)} have?",
    lambda p: f"Which pet does {p(NAMES)} have?",
    lambda p: f"Is {p(THINGS)} {p(ADJECTIVES)}?",
)


class TextStream:
    """An endless, reproducible stream of texts for one (seed, stream name)."""

    def __init__(self, seed: int, name: str, templates: tuple[Callable[[_Pick], str], ...]) -> None:
        # A string seed is hashed deterministically (not with the per-process str hash).
        self._rng = random.Random(f"{seed}:{name}")
        self._templates = templates

    def _pick(self, words: tuple[str, ...]) -> str:
        return self._rng.choice(words).replace("-", " ")

    def next(self) -> str:
        return self._rng.choice(self._templates)(self._pick)

    def take(self, n: int) -> list[str]:
        return [self.next() for _ in range(n)]


def memory_stream(seed: int, user_id: str) -> TextStream:
    return TextStream(seed, f"memories:{user_id}", MEMORY_TEMPLATES)


def query_stream(seed: int, name: str = "queries") -> TextStream:
    return TextStream(seed, name, QUERY_TEMPLATES)


def memory_items(stream: TextStream, n: int, start_index: int) -> list[dict[str, Any]]:
    """`n` batch-add items; the category is derived from the index so it is reproducible too."""
    return [
        {"content": stream.next(), "metadata": {"category": CATEGORIES[(start_index + i) % len(CATEGORIES)]}}
        for i in range(n)
    ]
