"""How the embedded engine analyses memory text for its BM25 index (the same rules as a Qdrant server's)."""

from __future__ import annotations

from typing import Any

# English function words the keyword index ignores, on top of the engine's English list: question
# words carry no topic ("when did ..."), and contractions leave these stems behind.
EXTRA_STOP_WORDS = frozenset(
    [
        "when",
        "where",
        "which",
        "while",
        "who",
        "whom",
        "whose",
        "why",
        "what",
        "how",
        "did",
        "does",
        "doing",
        "done",
        "don",
        "doesn",
        "didn",
        "isn",
        "wasn",
        "aren",
        "weren",
        "hasn",
        "haven",
        "hadn",
        "won",
        "wouldn",
        "shouldn",
        "couldn",
        "t",
        "s",
        "ll",
        "re",
        "ve",
        "d",
        "m",
    ]
)


def analysis() -> dict[str, Any]:
    """How memory text is analysed into words, wherever BM25 runs: the embedded engine's text index and
    the sparse vectors computed for a Qdrant server (`qdrant/keywords.py`) take these same settings."""
    from qdrant_edge import Language, SnowballLanguage, SnowballParams, StopwordsSet, TokenizerType

    return {
        "tokenizer": TokenizerType.Multilingual,
        "lowercase": True,
        "stemmer": SnowballParams(SnowballLanguage.English),
        "stopwords": StopwordsSet(languages={Language.English}, custom=set(EXTRA_STOP_WORDS)),
    }


def text_index_params() -> Any:
    from qdrant_edge import TextIndexParams

    return TextIndexParams(**analysis(), scoring=True)
