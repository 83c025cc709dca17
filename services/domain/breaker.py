"""The flood breaker: a classifier that misfires must not send thousands of referrals. Pure.

A new model version flagging fifty times its usual rate, or a hash list loaded with a common
image, would send the police thousands of referrals an hour. Per source (its `system` and
`version`), the flags that made referral tasks in the last `window` are compared with what the
same system usually sends in a window, from the `baseline` period before it (all its versions:
a new version has no history of its own). Past `factor` times that (and at least `min_flags`,
so a quiet source's first few flags never trip it), the breaker opens: that source's referrals
are held as reviews (a person decides each one), and only a child in immediate danger (a P0
with `immediate_danger`) still goes out at once, marked. Nothing is dropped.

A breaker closes by a person's action (`csae breaker close`, or the admin API route: both say
who and why), or after `cool_down` when one is configured. A person's close accepts the rate of
that moment as usual for the baseline period, so a surge they judged genuine does not open it
again (ten times more does). Flags are counted by the minute they were detected, so a backlog
drained after an outage counts when it happened, as `csae policy replay` counts them.
"""

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from schemas.referral import Priority, ReferralTask
from services.domain.deadlines import Deadlines, first_due_at

Source = tuple[str, str]
"""A source of flags: (system, version)."""


def source_label(source: Source) -> str:
    """The source as one metric label value: `system/version`."""
    return f"{source[0]}/{source[1]}"


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    factor: float = 10.0
    """Open when a source sends more than this many times its system's usual rate."""
    min_flags: int = 500
    """...and at least this many flags in one window."""
    window: timedelta = timedelta(minutes=5)
    baseline: timedelta = timedelta(hours=24)
    """The usual rate is measured over this period before the window."""
    cool_down: timedelta | None = None
    """Close by itself this long after opening; None: only a person closes it."""


@dataclass(frozen=True, slots=True)
class Tripped:
    """Why a breaker opens: the flags in the window, and the usual number for one window."""

    flags: int
    usual: float

    def reason(self, settings: BreakerSettings) -> str:
        minutes = settings.window.total_seconds() / 60
        return (
            f"{self.flags} flags in {minutes:g} min; usually {self.usual:.1f} "
            f"(over {settings.factor:g} times the usual rate)"
        )


def trips(
    flags: int, baseline_flags: int, settings: BreakerSettings, *, accepted: int = 0
) -> Tripped | None:
    """Whether `flags` in the window trip the breaker, against `baseline_flags` in the baseline
    period: the usual number for one window is the baseline's, scaled to the window, or the
    number in a window a person `accepted` when they closed the breaker, when that is more."""
    usual = max(baseline_flags * (settings.window / settings.baseline), float(accepted))
    if flags >= settings.min_flags and flags > settings.factor * usual:
        return Tripped(flags, usual)
    return None


def cooled(opened_at: datetime, now: datetime, settings: BreakerSettings) -> bool:
    """Whether a breaker open since `opened_at` closes by itself now."""
    return settings.cool_down is not None and now >= opened_at + settings.cool_down


def would_open(
    flags: Iterable[tuple[Source, datetime]], settings: BreakerSettings
) -> list[tuple[Source, datetime, Tripped]]:
    """Where the breaker would have opened over flags (for `csae policy replay`): each source
    once, at the flag that tripped it, in time order. The baseline is the system's flags in the
    baseline period before the window, as the worker counts them."""
    in_window: dict[Source, deque[datetime]] = {}
    system_window: dict[str, deque[datetime]] = {}
    system_since: dict[str, deque[datetime]] = {}
    opened: list[tuple[Source, datetime, Tripped]] = []
    tripped_already: set[Source] = set()
    for source, at in sorted(flags, key=lambda item: item[1]):
        start = at - settings.window
        mine = in_window.setdefault(source, deque())
        recent = system_window.setdefault(source[0], deque())
        since = system_since.setdefault(source[0], deque())
        for times, oldest in ((mine, start), (recent, start)):
            times.append(at)
            while times[0] <= oldest:
                times.popleft()
        since.append(at)
        while since[0] < start - settings.baseline:
            since.popleft()
        if source in tripped_already:
            continue
        tripped = trips(len(mine), len(since) - len(recent), settings)
        if tripped is not None:
            tripped_already.add(source)
            opened.append((source, at, tripped))
    return opened


def source_of(task: ReferralTask) -> Source:
    return task.flag.source.system, task.flag.source.version


def goes_out_anyway(task: ReferralTask) -> bool:
    """A child in immediate danger: sent at once even while its source's breaker is open."""
    return task.priority is Priority.P0 and any(s.immediate_danger for s in task.flag.signals)


def held(
    task: ReferralTask, holding: frozenset[Source], deadlines: Mapping[Priority, Deadlines]
) -> ReferralTask:
    """The task as it is applied while the breakers of `holding` are open: a referral from a
    held source becomes a review (due within the review deadline), unless it goes out anyway."""
    if task.decision != "refer" or source_of(task) not in holding or goes_out_anyway(task):
        return task
    due = first_due_at(task.detected_at, task.priority, "review", deadlines)
    return task.model_copy(update={"decision": "review", "due_at": due, "held": "flood_breaker"})
