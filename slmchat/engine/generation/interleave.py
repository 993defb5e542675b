"""Two (or more) streamed replies at once on one thread: token by token in turn, or one
stream after the other.

The side-by-side view runs both replies in one worker thread. On a CPU both sides use
all the cores for each token, so interleaving costs no speed beyond switching weights in
memory (measured in benchmarks/bench_compare.py); what it buys is that both columns
start within one token of each other instead of the right one waiting for the whole
left reply.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Literal, TypeVar

T = TypeVar("T")
Schedule = Literal["interleaved", "sequential"]


def interleave(streams: Mapping[str, Iterator[T]],
               schedule: Schedule = "interleaved") -> Iterator[tuple[str, T]]:
    """Yield ``(name, item)`` from every stream until all are exhausted.

    ``interleaved``: one item from each live stream in turn (a stream that ends drops
    out, the others go on); ``sequential``: each stream to its end, in order."""
    if schedule == "sequential":
        for name, stream in streams.items():
            for item in stream:
                yield name, item
        return
    live = dict(streams)
    while live:
        for name in list(live):
            try:
                item = next(live[name])
            except StopIteration:
                del live[name]
                continue
            yield name, item
