"""What ``ScanStream.events()`` yields: record batches, and the events of units of work.

For a consumer that commits work as it goes (a scan directory, a database loader): the unit of
work, and of a resume, is one (account, region). The items come in the order things happened:
``UnitsPlanned`` before any batch of its account, a unit's ``UnitEnded`` after its last batch.
``account`` is None in a single-account scan. ``UnitEnded.failures`` holds
``scanner.summary.Failure`` values, the same ones the final summary lists.

::

    from scanner.events import UnitEnded, UnitsPlanned

    async for item in stream.events():
        if isinstance(item, UnitEnded):
            ...                    # the (account, region) is over: whole if item.complete
        elif isinstance(item, UnitsPlanned):
            ...                    # an account's regions: all found, and those this scan lists
        else:
            ...                    # a Batch: the records of one page, plain dicts

The types are defined where the scan produces them (``scanner.engine``); this module is where a
user imports them from.
"""

from __future__ import annotations

from scanner.engine.events import Batch, ScanEvent, ScanItem, UnitEnded, UnitsPlanned

__all__ = ["Batch", "ScanEvent", "ScanItem", "UnitEnded", "UnitsPlanned"]
