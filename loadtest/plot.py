"""PNG of a verified load test: throughput (acknowledged and stored payloads/s) and p50/p99
end-to-end latency over time. matplotlib's Agg backend: no display needed."""

from __future__ import annotations

from pathlib import Path

from loadtest.report import Report


def plot_report(report: Report, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [point["t"] for point in report.series]
    figure, (throughput, latency) = plt.subplots(2, 1, sharex=True, figsize=(10, 6.5), constrained_layout=True)
    throughput.plot(t, [p["acknowledged_per_s"] for p in report.series], label="acknowledged (202)", linewidth=1.2)
    throughput.plot(t, [p["stored_per_s"] for p in report.series], label="stored in S3", linewidth=1.2)
    throughput.set_ylabel("payloads / s")
    throughput.set_title(
        f"{report.payloads_acknowledged:,} payloads acknowledged, {report.lost:,} lost, "
        f"{report.duplicated:,} duplicated ({report.sent_rps:,} req/s sent, achieved)"
    )
    throughput.legend(loc="upper right")
    throughput.grid(alpha=0.3)

    def seconds(key: str) -> list[float | None]:
        return [None if p[key] is None else p[key] / 1000 for p in report.series]

    latency.plot(t, seconds("p50_ms"), label="p50", linewidth=1.2, marker=".")
    latency.plot(t, seconds("p99_ms"), label="p99", linewidth=1.2, marker=".")
    latency.set_ylabel("receivedAt -> stored (s)")
    latency.set_xlabel("seconds since the first request (latency binned by receivedAt; +-0.5 s resolution)")
    latency.legend(loc="upper right")
    latency.grid(alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
