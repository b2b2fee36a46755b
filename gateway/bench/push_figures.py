"""The push's figures, pure: phases, the steady run's memory, costs per process, the rows.

``push`` measures; this module holds what it measured and turns it into table rows. The
processes of a push, in the order the rows give them:

    gateway (all roles)   the bench's own process: intake, orchestrator, relay, connectors …
    simulators            the four departments, a process of their own (``simulators``)
    load generator        the HTTP client, a process per phase (``loadgen``)
    RabbitMQ              the broker, when it runs on this host (``processes``)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from gateway.bench.loadgen import LoadResult
from gateway.bench.report import Row
from gateway.bench.stats import hop_efficiency, middle_rate, percentile, rate

SECTION = "internal push (newborn; every gateway role in one process, the simulators in another)"
TASKS_PER_NEWBORN = 5  # a newborn application's tasks, one per department request
GATEWAY = "gateway (all roles)"
SIMULATORS = "simulators"
LOAD_GENERATOR = "load generator"
BROKER = "RabbitMQ"
BODY_TOLERANCE = 0.25  # the gateway's mean body may stray this far from the raw baseline's
FEW_SAMPLES = 100  # latency samples below which a p99 is no better than the maximum


@dataclass
class Phase:
    submitted: int = 0
    completed: int = 0
    seconds: float = 0.0  # first 202 (or the drain's start) → last completion
    latency_ms: list[float] = field(default_factory=list)
    load: LoadResult | None = None
    middle_per_second: float | None = None  # over the middle 80 % of completions (the burst)

    @property
    def per_second(self) -> float:
        return rate(self.completed, self.seconds)

    @property
    def complete(self) -> bool:
        """Every accepted application completed (a timed-out one would drop out of p99)."""
        return self.submitted > 0 and self.completed == self.submitted

    @property
    def incomplete(self) -> str:
        return f"INCOMPLETE {self.completed}/{self.submitted}"

    def p(self, q: float) -> float | None:
        return percentile(self.latency_ms, q) if self.latency_ms else None

    def samples(self) -> str:
        """``n=…`` and, under ``FEW_SAMPLES``, the maximum: a p99 of few samples is their max."""
        n = len(self.latency_ms)
        if n >= FEW_SAMPLES or not n:
            return f"n={n}"
        return f"n={n}, few samples: max {max(self.latency_ms):.0f} ms"


@dataclass(frozen=True, slots=True)
class Level:
    share: float  # of the burst rate
    offered: float  # applications/s
    phase: Phase


@dataclass
class Steady:
    """A long open-loop run at one level with every process's RSS sampled through it."""

    share: float  # of the burst rate
    offered: float  # applications/s
    phase: Phase
    window_seconds: float  # growth: the mean of the last window over the mean of the first
    sample_seconds: float
    samples: dict[str, list[tuple[float, int]]] = field(default_factory=dict)  # (s, kB)


@dataclass(frozen=True, slots=True)
class ProcessCost:
    """One process over the whole push: CPU seconds and peak resident memory."""

    name: str
    cpu_seconds: float | None  # None: not measured (the note says why)
    peak_rss_kb: int | None
    note: str = ""


@dataclass
class PushResult:
    store: str = "sqlite"
    burst: Phase | None = None
    levels: list[Level] = field(default_factory=list)
    steady: Steady | None = None
    backlog: Phase | None = None
    published: dict[str, int] = field(default_factory=dict)  # by exchange, whole run
    department_published: dict[str, int] = field(default_factory=dict)  # by reply queue
    mean_body_bytes: float | None = None  # of the messages the gateway published
    raw_body_bytes: int | None = None  # the raw baseline's body size, to compare with
    broker_received: int | None = None  # the broker's own count, every client (None: unread)
    applications: int = 0  # 202s over the whole run
    processes: list[ProcessCost] = field(default_factory=list)
    rss_kb: dict[str, list[int]] = field(default_factory=dict)  # process → after each phase
    poll_seconds: float = 0.0  # hukou polled this often (its decisions come with the receipt)
    scan_seconds: float = 0.0  # hospital folders' fallback scan (inotify wakes them sooner)
    skipped: str | None = None
    portal_id: str = ""

    @property
    def burst_rate(self) -> float | None:
        """The maximum rate: the burst's middle 80 % of completions (its whole span when too
        few to cut); None when the burst did not complete."""
        b = self.burst
        if b is None or not b.complete:
            return None
        return b.middle_per_second if b.middle_per_second is not None else b.per_second

    def hop_efficiency(self, raw_hop_per_second: float) -> float | None:
        burst = self.burst_rate
        return None if burst is None else hop_efficiency(burst, raw_hop_per_second)

    @property
    def drain_ratio(self) -> float | None:
        burst = self.burst_rate
        if self.backlog is None or not self.backlog.complete or not burst:
            return None
        return self.backlog.per_second / burst

    def failures(self) -> list[str]:
        """A skipped push and each phase that did not complete: the run fails for them."""
        where = f"push ({self.store})"
        if self.skipped:
            return [f"{where}: skipped — {self.skipped}"]
        phases = [("burst", self.burst)]
        phases += [(f"{lv.share:.0%} load", lv.phase) for lv in self.levels]
        phases += [("steady", self.steady.phase if self.steady else None)]
        phases += [("backlog drain", self.backlog)]
        return [
            f"{where}: {name} {phase.incomplete} completed (timed out)"
            for name, phase in phases
            if phase is not None and not phase.complete
        ]

    def latency_path(self) -> str:
        """What carries each department's answer back (the polling left is a fallback)."""
        return (
            "hukou: receipt and query at once (poll_on_receipt; polled every "
            f"{self.poll_seconds:g} s otherwise); provincial: callback; hospital: inotify "
            f"wake-up of the result folder and of the simulator's in-tray, a {self.scan_seconds:g} "
            "s fallback scan; cdc: queue reply"
        )

    def cost(self, name: str) -> ProcessCost | None:
        return next((p for p in self.processes if p.name == name), None)

    def rows(self) -> list[Row]:
        section = f"{SECTION}, {self.store}"
        if self.skipped or self.burst is None:
            return [Row(section, "completed", None, "apps/s", f"not measured: {self.skipped}")]
        b = self.burst
        rows = [
            Row(section, f"burst of {b.submitted}: completed", self.burst_rate, "apps/s",
                f"{b.incomplete}: no rate" if not b.complete else
                f"middle 80 % of completions (first and last 10 % dropped); "
                f"{b.completed}/{b.submitted} in {b.seconds:.1f} s, {b.per_second:.1f}/s overall"),
            Row(section, "burst: latency p50", _pick(b, b.p(50)), "ms",
                f"{b.incomplete}: no percentiles" if not b.complete else
                f"p95 {_ms(b.p(95))}, p99 {_ms(b.p(99))}; {b.samples()} (queueing included)"),
        ]  # fmt: skip
        for level in self.levels:
            s = level.phase
            target = "; target p99 ≤ 100 ms" if level.share == 0.5 else ""
            rows += [
                Row(section, f"{level.share:.0%} load ({level.offered:.1f}/s offered): p99",
                    _pick(s, s.p(99)), "ms", f"{_latency(s)}; {_completed(s)}{target}"),
            ]  # fmt: skip
        if self.levels or self.steady:
            rows.append(Row(section, "on the latency path", None, "", self.latency_path()))
        if self.steady is not None:
            rows += steady_rows(section, self.steady)
        if self.backlog is not None:
            k = self.backlog
            tasks = k.submitted * TASKS_PER_NEWBORN
            note = (
                f"{k.completed}/{k.submitted} in {k.seconds:.1f} s from every role's restart "
                f"to the last completion; ÷ burst rate (its middle 80 %) = "
                f"{_ratio(self.drain_ratio)} (target ≥ 0.8)"
                if k.complete
                else f"{k.incomplete}: no drain rate"
            )
            name = f"backlog of {k.submitted:,} newborns ({tasks:,} tasks): drained"
            rows.append(Row(section, name, _pick(k, k.per_second), "apps/s", note))
        rows += self._cost_rows(section)
        return rows

    def _cost_rows(self, section: str) -> list[Row]:
        apps = max(self.applications, 1)
        rows = publish_rows(
            section, self.published, self.department_published, self.broker_received, apps
        )
        if self.mean_body_bytes is not None:
            rows.append(body_row(section, self.mean_body_bytes, self.raw_body_bytes))
        for p in self.processes:
            cpu = None if p.cpu_seconds is None else p.cpu_seconds / apps * 1e3
            note = p.note or f"{apps} applications"
            rows.append(Row(section, f"CPU per application: {p.name}", cpu, "ms", note))
        for p in self.processes:
            note = p.note
            after = self.rss_kb.get(p.name)
            if after:
                note = ("RSS after each phase: " + ", ".join(f"{kb / 1024:.0f}" for kb in after)
                        + " MB; target ≤ 200 MB and flat")  # fmt: skip
            rows.append(Row(section, f"peak RSS: {p.name}", _mb(p.peak_rss_kb), "MB", note))
        return rows


def publish_rows(
    section: str,
    published: Mapping[str, int],
    department: Mapping[str, int],
    broker_received: int | None,
    apps: int,
) -> list[Row]:
    """Messages published per application: the gateway's (its broker client's confirmed
    publishes, by exchange), the department side's (the first deliveries the gateway took
    from the departments' reply queues) and the broker's own count (every client's)."""
    gateway = sum(published.values()) / apps
    dept = sum(department.values()) / apps
    by_exchange = ", ".join(f"{k} {v / apps:.1f}" for k, v in sorted(published.items()))
    by_queue = ", ".join(f"{k} {v / apps:.1f}" for k, v in sorted(department.items()))
    broker = None if broker_received is None else broker_received / apps
    if broker is None:
        note = "not measured: rabbitmqctl could not read the broker's counter (not on this host?)"
    else:
        note = (f"RabbitMQ's own count (messages_received_total via rabbitmqctl), broker-wide: "
                f"{broker - gateway - dept:+,.1f} beyond the gateway's and the departments' "
                "is other clients' publishes on this broker meanwhile")  # fmt: skip
    return [
        Row(section, "gateway publishes per application", gateway, "msg",
            f"confirmed, by exchange: {by_exchange}; (default) is the cdc connector's "
            "requests"),
        Row(section, "department-side publishes per application", dept, "msg",
            f"the departments' queue replies, counted as the gateway first takes them: "
            f"{by_queue or 'none'}"),
        Row(section, "all publishes per application (gateway + department side)",
            gateway + dept, "msg", "the push's own traffic through the broker"),
        Row(section, "broker: messages received per application", broker, "msg", note),
    ]  # fmt: skip


def body_row(section: str, mean: float, raw: int | None) -> Row:
    """The gateway's mean message body against the raw baseline's (issue 6: the same size);
    more than ``BODY_TOLERANCE`` apart, the note says to update ``raw.RAW_BODY_BYTES``."""
    note = "of every message the gateway published (count-weighted)"
    if raw:
        off = mean / raw - 1
        note += f"; the raw baseline's bodies: {raw:,} B ({off:+.0%})"
        if abs(off) > BODY_TOLERANCE:
            note += f": over {BODY_TOLERANCE:.0%} apart, update raw.RAW_BODY_BYTES"
    return Row(section, "gateway message body, mean", mean, "B", note)


def steady_rows(section: str, steady: Steady) -> list[Row]:
    """The steady run's latency, then one row per sampled process: RSS growth and peak."""
    s = steady.phase
    seconds = s.load.window_seconds if s.load else 0.0
    span = f"{seconds / 60:g} min" if seconds >= 120 else f"{seconds:g} s"
    rows = [
        Row(section, f"steady {steady.share:.0%} load for {span}: p99", _pick(s, s.p(99)),
            "ms", f"{_latency(s)}; {_completed(s)} ({steady.offered:.1f}/s offered)"),
    ]  # fmt: skip
    window = steady.window_seconds
    for name, samples in steady.samples.items():
        means = growth_means(samples, window)
        if means is None:
            rows.append(Row(section, f"steady: RSS growth, {name}", None, "MB",
                            f"not measured: {len(samples)} sample(s)"))  # fmt: skip
            continue
        first, last = means
        peak = max(kb for _, kb in samples)
        rows.append(
            Row(section, f"steady: RSS growth, {name}", (last - first) / 1024, "MB",
                f"mean of the first {window:g} s {first / 1024:.0f} MB → of the last "
                f"{last / 1024:.0f} MB; peak {peak / 1024:.0f} MB; {len(samples)} samples "
                f"every {steady.sample_seconds:g} s; target flat")
        )  # fmt: skip
    return rows


def growth_means(samples: list[tuple[float, int]], window: float) -> tuple[float, float] | None:
    """Mean RSS (kB) over the first ``window`` seconds and over the last; None with fewer
    than two samples (a leak shows as the second well above the first)."""
    if len(samples) < 2:
        return None
    start, end = samples[0][0], samples[-1][0]
    first = [kb for t, kb in samples if t <= start + window]
    last = [kb for t, kb in samples if t >= end - window]
    return sum(first) / len(first), sum(last) / len(last)


def phase_of(load: LoadResult, completed: Mapping[str, float]) -> Phase:
    """What one load did: 202s matched with their completions (wall-clock seconds); the rate
    over the middle 80 % of the completions too (the burst's figure)."""
    done = [(t, completed[a]) for a, t in load.accepted if a in completed]
    phase = Phase(submitted=len(load.accepted), completed=len(done), load=load)
    if done:
        first = min(t for _, t in load.accepted)
        phase.seconds = max(c for _, c in done) - first
        phase.latency_ms = [(c - t) * 1000 for t, c in done]
        phase.middle_per_second = middle_rate([c for _, c in done])
    return phase


def drain_of(ids: list[str], completed: Mapping[str, float], started: float) -> Phase:
    """A backlog's drain: applications completed since ``started`` (wall clock: the moment
    every role is running again, when draining can begin)."""
    done = [completed[a] for a in ids if a in completed]
    phase = Phase(submitted=len(ids), completed=len(done))
    if done:
        phase.seconds = max(done) - started
    return phase


def _pick(phase: Phase, value: float | None) -> float | None:
    """A phase's figure only when every application completed (timeouts would hide)."""
    return value if phase.complete else None


def _latency(s: Phase) -> str:
    if not s.complete:
        return f"{s.incomplete}: no percentiles"
    return f"p50 {_ms(s.p(50))}, p95 {_ms(s.p(95))}; {s.samples()}"


def _completed(s: Phase) -> str:
    window = s.load.window_seconds if s.load else 0.0
    return f"{s.completed}/{s.submitted} completed, {rate(s.completed, window):.1f}/s"


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f} ms"


def _mb(kb: int | None) -> float | None:
    return None if kb is None else kb / 1024


def _ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"
