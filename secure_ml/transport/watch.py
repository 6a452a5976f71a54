"""The dealer's watch: a lost party ends the dealer even while it idles.

The dealer waits for party 0's next request for as long as the run may last
(the parties compute without it in between), so its own waits cannot tell a
quiet party 0 from a hung or unplugged one. Across hosts nobody else tells
it: a party that hangs or is cut off keeps its connection open. So while the
dealer is in the run, a thread checks the run's store every
``WATCH_INTERVAL_S``:

- a lost-party notice (``notices.py``) from any process: a survivor lost that
  party, so the run is over; the dealer stops, naming it;
- whether the store answers at all. It lives in party 0's process; silent
  for longer than the collective timeout, party 0 is taken as lost (stopped,
  hung or cut off), the same bound the parties apply to each other.

The dealer's main thread is blocked inside gloo and cannot be interrupted,
so the watch reports the loss itself (``on_lost``: the party's usual failure
report) and that ends the process. It reads only the store's notice keys,
never a value.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from secure_ml.errors import PeerLost
from secure_ml.transport import notices
from secure_ml.transport.naming import describe

WATCH_INTERVAL_S = 1.0


@contextmanager
def watching(
    *, rank: int, names: Sequence[str], limit_s: float, on_lost: Callable[[PeerLost], None]
) -> Iterator[None]:
    """Run the watch while the block runs (see the module docstring)."""
    stop = threading.Event()
    thread = threading.Thread(
        target=_watch,
        args=(rank, tuple(names), limit_s, on_lost, stop),
        name="secure-ml-watch",
        daemon=True,
    )
    thread.start()
    try:
        yield
    finally:
        stop.set()


def _watch(
    rank: int,
    names: tuple[str, ...],
    limit_s: float,
    on_lost: Callable[[PeerLost], None],
    stop: threading.Event,
) -> None:
    silent_since: float | None = None
    while not stop.wait(WATCH_INTERVAL_S):
        lost = None
        if notices.store_answers():
            silent_since = None
            lost = _noticed(rank, names)
        else:
            silent_since = silent_since or time.monotonic()
            if time.monotonic() - silent_since > limit_s:
                lost = PeerLost(
                    f"lost {describe(0, names)}: the run's store, which it hosts, has not "
                    f"answered for {limit_s:g}s ([launch] collective_timeout): it stopped, "
                    "hung or was cut off",
                    peer=0,
                )
        if lost is not None and not stop.is_set():
            on_lost(lost)
            return


def _noticed(rank: int, names: tuple[str, ...]) -> PeerLost | None:
    for leaver in range(len(names)):
        first = notices.read(leaver) if leaver != rank else None
        if first is not None and first != rank:
            return PeerLost(
                f"lost {describe(first, names)}: {describe(leaver, names)} stopped after losing it",
                peer=leaver,
                lost_first=first,
            )
    return None
