"""What a scan's stream carries besides record batches: when units are planned and when they end.

The unit of work (and of a scan directory's resume) is one (account, region). The scheduler sends
these through the same memory stream as the batches, so their order is the order things happened:
``UnitsPlanned`` before any batch of its account, and a unit's ``UnitEnded`` after the last batch of
that unit. ``account`` is None in a single-account scan.

::

    async for item in stream.events():
        if isinstance(item, UnitEnded):
            ...                                 # commit the unit's part: it is whole (or not, see complete)
        elif isinstance(item, UnitsPlanned):
            ...                                 # every region found, and those this scan will list
        else:
            ...                                 # a batch: the records of one page
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from scanner.engine.stats import Failure

__all__ = ["Batch", "ScanEvent", "ScanItem", "UnitEnded", "UnitsPlanned"]

#: What flows to the consumer: the records of one page.
Batch = list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class UnitsPlanned:
    """The regions of an account: all of them (``regions``) and the ones this scan lists (``scanning``).

    ``scanning`` is smaller when the scan was given a unit filter (a resume, a shard).
    """

    account: str | None
    regions: tuple[str, ...]
    scanning: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class UnitEnded:
    """The listing of one (account, region) ended; every batch of it came before this event.

    ``complete``: every service of the region was listed and proven whole; otherwise ``failures``
    says why (possibly empty when the region's services could not be listed at all). ``records``:
    the records of the unit sent through the stream. A unit cut short by a stop (Ctrl-C, a closed
    stream, fail-fast) gets no ``UnitEnded``.
    """

    account: str | None
    region: str
    complete: bool
    failures: tuple[Failure, ...]
    records: int


ScanEvent = UnitsPlanned | UnitEnded
#: Everything the stream carries: batches, and the events of units.
ScanItem = Batch | ScanEvent
