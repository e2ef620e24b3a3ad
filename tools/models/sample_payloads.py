"""Telemetry-like payloads for the models and the bench: what a fleet of sensors would POST.

The benches pad their payloads with "x", which gzip shrinks more than 50-fold: fine for timing, useless
for pricing storage. These are the readings of a seeded fleet of devices instead: each request is one
device's consecutive readings (random walks of temperature, humidity, pressure, CO2, battery, signal and
position, counters, a status word from a small vocabulary, and a tail of raw accelerometer samples), serialized
as compact JSON of the target size. Compression ratios measured on them (bench S1) are those of sensor
telemetry, not of padding: the numbers are as random as real readings are, the keys repeat as they do.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass

VERSION = "2.4.1"  # the collection's "version": the device firmware's protocol version
STATUSES = ("ok", "ok", "ok", "ok", "ok", "ok", "degraded", "charging", "ok", "ok")  # mostly ok


@dataclass
class _Device:
    """One sensor's state; every reading moves it a small random step."""

    number: int
    token: str
    temperature: float
    humidity: float
    pressure: float
    co2: float
    battery: float
    rssi: float
    lat: float
    lon: float
    seq: int = 0
    uptime: int = 0

    def step(self, rng: random.Random) -> None:
        self.seq += 1
        self.uptime += 1
        self.temperature += rng.gauss(0, 0.05)
        self.humidity = min(100.0, max(0.0, self.humidity + rng.gauss(0, 0.2)))
        self.pressure += rng.gauss(0, 0.1)
        self.co2 = max(380.0, self.co2 + rng.gauss(0, 4))
        self.battery = max(3.0, self.battery - abs(rng.gauss(0, 0.0005)))
        self.rssi = min(-40.0, max(-120.0, self.rssi + rng.gauss(0, 1.5)))


def _reading(device: _Device, epoch_ms: int, rng: random.Random, payload_bytes: int) -> str:
    document: dict[str, object] = {
        "deviceId": f"dev-{device.number:06d}",
        "ts": epoch_ms,
        "seq": device.seq,
        "fw": VERSION,
        "model": "TH-200",
        "status": STATUSES[rng.randrange(len(STATUSES))],
        "uptime": device.uptime,
        "battery": {"voltage": round(device.battery, 3), "percent": round((device.battery - 3.0) / 1.2 * 100)},
        "signal": {"rssi": round(device.rssi), "snr": round(rng.gauss(9, 2), 1), "network": "lte-m"},
        "location": {
            "lat": round(device.lat, 5),
            "lon": round(device.lon, 5),
            "accuracy": round(rng.uniform(3, 15), 1),
        },
        "sensors": {
            "temperature": round(device.temperature, 2),
            "humidity": round(device.humidity, 2),
            "pressure": round(device.pressure, 1),
            "co2": round(device.co2),
            "pm25": round(abs(rng.gauss(8, 3)), 1),
            "voc": round(abs(rng.gauss(0.4, 0.1)), 3),
        },
        "samples": [],
    }
    base = len(json.dumps(document, separators=(",", ":")))
    samples: list[float] = []
    size = base
    while True:  # the recent raw accelerometer samples (x, y, z in g) fill the payload up to its size
        sample = round(rng.gauss((0.0, 0.0, -1.0)[len(samples) % 3], 0.02), 3)
        size += len(json.dumps(sample)) + (1 if samples else 0)
        if size > payload_bytes:
            break
        samples.append(sample)
    document["samples"] = samples
    return json.dumps(document, separators=(",", ":"))


def telemetry_requests(
    requests: int, payloads: int, payload_bytes: int, *, devices: int = 1000, seed: int = 7
) -> Iterator[tuple[str, list[str]]]:
    """(token, payloads) for each of ``requests`` requests: one device's ``payloads`` consecutive
    readings each, a second apart, from a fleet of ``devices``, in a seeded order. A payload is compact
    JSON of at most ``payload_bytes`` (about that many once the sample tail fills it)."""
    rng = random.Random(seed)
    fleet = [
        _Device(
            number=n,
            token=f"{rng.getrandbits(128):032x}",
            temperature=rng.uniform(15, 30),
            humidity=rng.uniform(20, 70),
            pressure=rng.uniform(990, 1030),
            co2=rng.uniform(400, 900),
            battery=rng.uniform(3.5, 4.2),
            rssi=rng.uniform(-100, -60),
            lat=rng.uniform(-60, 60),
            lon=rng.uniform(-180, 180),
        )
        for n in range(devices)
    ]
    epoch_ms = 1_764_115_200_000
    for _ in range(requests):
        device = fleet[rng.randrange(devices)]
        readings = []
        for _ in range(payloads):
            device.step(rng)
            epoch_ms += rng.randrange(1, 20)
            readings.append(_reading(device, epoch_ms, rng, payload_bytes))
        yield device.token, readings
