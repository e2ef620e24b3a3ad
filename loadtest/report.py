"""What loadtest.verify found: the report it prints, writes as JSON (--json) and loadtest.plot draws (--plot).
A value type of its own so the two read it without knowing each other."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Report:
    requests_acknowledged: int
    requests_not_acknowledged: int
    payloads_acknowledged: int
    payloads_stored: int
    lost: int
    duplicated: int  # ids stored in more than one object
    extra_copies: int  # copies beyond the first
    objects: int  # objects holding at least one acknowledged payload of this run
    objects_listed: int  # every object in the run's partitions (earlier runs included)
    other_payloads: int
    latency_ms: dict[str, float | None]
    # Requests the load generator SENT per second (acknowledged or not): the achieved arrival rate.
    # It is below the asked (offered) --rps when the generator missed pacing slots.
    sent_rps: float
    acknowledged_payloads_per_s: float
    series: list[dict[str, Any]]
    lost_sample: list[str]
    duplicated_sample: dict[str, list[str]]  # id -> the keys holding it
    # Distinct deviceIds of the acknowledged payloads read (DEVICE_AUTH=on; payload mode past --latency-sample: of
    # the sample), and how many payloads read carried none.
    device_ids: int = 0
    payloads_without_device_id: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)
