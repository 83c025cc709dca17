"""`csae`: the command line of the pipeline."""

import argparse
import asyncio
import gc
import os
import secrets
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

from pydantic import ValidationError

from services.pipeline import logs
from services.pipeline.settings import Settings


def _for_throughput() -> None:
    """A consumer makes many short-lived objects per batch and few reference cycles: keep what
    its start made out of every collection, and collect the youngest objects less often (about
    a fifth more messages per second in `make bench`; memory grows by little)."""
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


def _router(settings: Settings, args: argparse.Namespace) -> int:
    from services.router.service import run

    _for_throughput()
    asyncio.run(run(settings))
    return 0


def _worker(settings: Settings, args: argparse.Namespace) -> int:
    from services.referral.worker import run

    _for_throughput()
    asyncio.run(run(settings))
    return 0


def _api(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from services.referral.api import create_app

    options: dict[str, Any] = {
        "host": args.host or settings.api_host,
        "port": args.port or settings.api_port,
        "log_level": settings.log_level.lower(),
        "access_log": False,  # access lines would carry identifiers from the path
    }
    if settings.api_workers == 1:
        uvicorn.run(create_app(settings), **options)
        return 0
    if settings.api_cursor_secret is None:
        # One cursor key for every worker (each reads it from the environment it inherits), so
        # a cursor from one works on the next; still new at each start, as for one process.
        os.environ["CSAE_API_CURSOR_SECRET"] = secrets.token_urlsafe(32)
    uvicorn.run(
        "services.referral.api:app_from_environment",
        factory=True,
        workers=settings.api_workers,
        **options,
    )
    return 0


def _db_upgrade(settings: Settings, args: argparse.Namespace) -> int:
    from services.referral.database import upgrade

    upgrade(settings.database_url, args.revision)
    print(f"database at revision {args.revision}", file=sys.stderr)
    return 0


def _keys_file(settings: Settings, args: argparse.Namespace) -> Path | None:
    path: Path | None = args.file or settings.api_keys_file
    if path is None:
        print("csae: set CSAE_API_KEYS_FILE or pass --file", file=sys.stderr)
    return path


def _duration(text: str) -> timedelta:
    """`90d`, `12h`, `30m`, `45s`, or an ISO 8601 duration such as `P90D`."""
    import re

    from pydantic import TypeAdapter

    matched = re.fullmatch(r"(\d{1,6})([dhms])", text)
    if matched is not None:
        unit = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}[matched.group(2)]
        return timedelta(**{unit: int(matched.group(1))})
    try:
        return TypeAdapter(timedelta).validate_python(text)
    except ValidationError:
        raise argparse.ArgumentTypeError("a duration such as 90d, 12h or P90D") from None


def _moment(text: str) -> datetime:
    """An ISO 8601 date (midnight UTC) or time (UTC when it names no timezone)."""
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError("an ISO 8601 date or time, e.g. 2027-01-31") from None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _expiry(args: argparse.Namespace, now: datetime) -> datetime | None:
    if args.expires_in is not None:
        return now + args.expires_in  # type: ignore[no-any-return]
    return args.expires  # type: ignore[no-any-return]


def _shown(at: datetime | None) -> str:
    return "-" if at is None else at.astimezone(UTC).isoformat(timespec="seconds")


def _keys_list(settings: Settings, args: argparse.Namespace) -> int:
    from services.referral.keys import read_keys

    path = _keys_file(settings, args)
    if path is None:
        return 2
    now = datetime.now(UTC)
    used = asyncio.run(_last_uses(settings))
    print(
        f"{'id':12}  {'role':12}  {'state':8}  {'created':25}  {'expires':25}  "
        f"{'revoked':25}  {'last used':25}  holder"
    )
    for key in read_keys(path):
        state = "valid" if key.valid_at(now) else "refused"
        last = "?" if used is None else _shown(used.get(key.key_id))
        print(
            f"{key.key_id:12}  {key.role.value:12}  {state:8}  {_shown(key.created):25}  "
            f"{_shown(key.expires):25}  {_shown(key.revoked):25}  {last:25}  {key.holder or '-'}"
        )
    return 0


async def _last_uses(settings: Settings) -> dict[str, datetime] | None:
    """Each key's last use as the API processes flushed it; None (shown `?`) when the
    database does not answer within a few seconds: the list itself is from the file."""
    from services.referral.database import one_session
    from services.referral.key_uses import last_uses

    async def read() -> dict[str, datetime]:
        async with one_session(settings.database_url) as session:
            return await last_uses(session=session)

    try:
        return await asyncio.wait_for(read(), timeout=5)
    except Exception as exc:  # an unreachable database hides one column, not the list
        print(f"csae: last use unknown ({type(exc).__name__})", file=sys.stderr)
        return None


def _keys_change(settings: Settings, args: argparse.Namespace) -> int:
    """`keys create`, `revoke` and `rotate`: a new key is printed once, on stdout."""
    from services.referral.keys import KeyFileError, Role, create_key, revoke_key, rotate_key

    path = _keys_file(settings, args)
    if path is None:
        return 2
    now = datetime.now(UTC)
    try:
        if args.action == "create":
            expires = _expiry(args, now)
            print(create_key(path, Role(args.role), holder=args.holder, expires=expires, now=now))
            return 0
        if args.action == "revoke":
            ended = revoke_key(path, args.id, at=now)
        else:
            key, ended = rotate_key(
                path, args.id, now=now, grace=args.grace, expires=_expiry(args, now)
            )
            print(key)
    except KeyFileError as exc:
        print(f"csae: {exc}", file=sys.stderr)
        return 2
    print(f"key {ended.key_id} refused from {_shown(ended.revoked)}", file=sys.stderr)
    return 0


def _topics(settings: Settings, args: argparse.Namespace) -> int:
    from services.pipeline.kafka import ensure_topics

    asyncio.run(ensure_topics(settings))
    return 0


def _publish(settings: Settings, args: argparse.Namespace) -> int:
    from services.pipeline.publish import publish_file

    count = asyncio.run(publish_file(settings, args.file, fresh=args.fresh))
    print(f"published {count} message(s) to {settings.topic_flags}", file=sys.stderr)
    return 0


def _schemas_export(settings: Settings, args: argparse.Namespace) -> int:
    from schemas.export import export, stale

    if args.check:
        outdated = stale(args.dir)
        for name in outdated:
            print(f"stale: {args.dir / name} (run: csae schemas export)", file=sys.stderr)
        return 1 if outdated else 0
    for path in export(args.dir):
        print(path)
    return 0


def _policy_check(settings: Settings, args: argparse.Namespace) -> int:
    from services.domain.policy import PolicyError, load_policy

    try:
        policy = load_policy(args.file)
    except PolicyError as exc:
        print(exc, file=sys.stderr)
        return 1
    modes = [rule.mode for rule in policy.rules] + [e.mode for e in policy.escalations]
    shadow = modes.count("shadow")
    print(
        f"{args.file}: valid, version {policy.version}: {len(policy.rules)} rule(s), "
        f"{len(policy.escalations)} escalation(s), {shadow} in shadow mode"
    )
    return 0


def _policy_replay(settings: Settings, args: argparse.Namespace) -> int:
    from services.domain.policy import PolicyError, load_policy
    from services.pipeline.startup import force_directory, organisations
    from services.router.replay import Replay

    try:
        current = load_policy(settings.policy_file)
        candidate = load_policy(args.policy) if args.policy else None
        with args.file.open("rb") as lines:
            total = sum(1 for line in lines if line.strip())
    except PolicyError as exc:
        print(exc, file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"csae: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 2
    replay = Replay(
        current,
        candidate,
        force_directory(settings),
        settings.home_force_id,
        max_bytes=settings.max_flag_bytes,
        breaker=settings.breaker(),
        organisations=organisations(settings),
    )
    progress = _Progress(total) if sys.stderr.isatty() else None
    with args.file.open("rb") as lines:
        for line in lines:
            if line.strip():
                replay.add(line)
                if progress:
                    progress.step()
    if progress:
        progress.done()
    print("\n".join(replay.report()))
    return 0


class _Progress:
    """A progress bar on the terminal (stderr), redrawn at most a hundred times."""

    def __init__(self, total: int) -> None:
        self.total, self.count, self.every = total, 0, max(total // 100, 1)

    def step(self) -> None:
        self.count += 1
        if self.count % self.every == 0 or self.count == self.total:
            filled = 30 * self.count // max(self.total, 1)
            bar = "#" * filled + "." * (30 - filled)
            print(f"\rreplaying [{bar}] {self.count}/{self.total}", end="", file=sys.stderr)

    def done(self) -> None:
        print(file=sys.stderr)


def _parked_list(settings: Settings, args: argparse.Namespace) -> int:
    from services.referral.parked import unresolved

    rows = asyncio.run(unresolved(settings))
    print(f"{'parked at':<26} {'topic':<24} {'partition':>9} {'offset':>10}  error (tries)  flag")
    for m in rows:
        print(
            f"{m.parked_at.isoformat():<26} {m.topic:<24} {m.partition:>9} {m.offset:>10}  "
            f"{m.error_type} ({m.tries})  {m.flag_id or '-'}"
        )
    print(f"{len(rows)} parked message(s) not resolved")
    return 0


def _breaker_list(settings: Settings, args: argparse.Namespace) -> int:
    from services.referral.breakers import run_listed

    rows = asyncio.run(run_listed(settings.database_url))
    for b in rows:
        state = (
            "OPEN" if b.closed_at is None else f"closed {b.closed_at.isoformat()} by {b.closed_by}"
        )
        print(f"{b.system}/{b.version}  opened {b.opened_at.isoformat()}  {state}")
        print(f"    why: {b.reason}")
        if b.close_note:
            print(f"    closed because: {b.close_note}")
    print(f"{sum(b.closed_at is None for b in rows)} open; {len(rows)} listed (latest 100)")
    return 0


def _breaker_close(settings: Settings, args: argparse.Namespace) -> int:
    from services.domain.breaker import BreakerSettings
    from services.referral.breakers import run_close

    closed = asyncio.run(
        run_close(
            settings.database_url,
            (args.system, args.version),
            by=f"cli:{args.by}",
            note=args.note,
            settings=settings.breaker() or BreakerSettings(),
        )
    )
    if closed is None:
        print(f"no open breaker for {args.system}/{args.version}", file=sys.stderr)
        return 1
    print(
        f"closed the breaker of {args.system}/{args.version}: its new referrals go out again; "
        "those it held wait in review for a person (their case history says so)"
    )
    return 0


def _retention_run(settings: Settings, args: argparse.Namespace) -> int:
    from services.referral import retention
    from services.referral.database import one_session

    async def once() -> list[retention.Done] | None:
        async with one_session(settings.database_url) as session, session.begin() as transaction:
            done = await retention.run(
                session=session,
                now=datetime.now(UTC),
                periods=retention.Periods(*settings.retention()),
            )
            if args.dry_run:
                await transaction.rollback()
            return done

    done = asyncio.run(once())
    if done is None:
        print("another retention run holds the lock; try again later", file=sys.stderr)
        return 1
    verb = "would delete or redact" if args.dry_run else "deleted or redacted"
    for d in done:
        print(f"{d.kind:<10} before {d.cutoff.isoformat()}: {verb} {d.rows}")
    return 0


def _audit_verify(settings: Settings, args: argparse.Namespace) -> int:
    from services.referral import audit
    from services.referral.database import one_session

    async def once() -> audit.Verified:
        async with one_session(settings.database_url) as session:
            return await audit.verify_stored(session=session)

    done = asyncio.run(once())
    if done.broken is not None:
        print(
            f"audit chain broken at {done.broken}; {done.entries} entries before it verified",
            file=sys.stderr,
        )
        return 1
    # The head, to compare with a copy kept elsewhere: removing the newest entries leaves no gap.
    print(f"{done.entries} audit entries verified; head {done.head_seq} {done.head_hash}")
    return 0


def _audit_export(settings: Settings, args: argparse.Namespace) -> int:
    import json

    from services.referral import audit
    from services.referral.database import one_session

    async def once() -> int:
        lines = 0
        async with one_session(settings.database_url) as session:
            async for entry in audit.export(session=session, since=args.since):
                sys.stdout.write(json.dumps(entry, separators=(",", ":")) + "\n")
                lines += 1
        return lines

    lines = asyncio.run(once())
    print(f"{lines} audit entries exported", file=sys.stderr)
    return 0


def _case_hold(settings: Settings, args: argparse.Namespace) -> int:
    from services.referral import retention
    from services.referral.database import one_session

    async def once() -> bool:
        async with one_session(settings.database_url) as session, session.begin():
            note = None if args.release else args.note
            return await retention.hold(session=session, case_id=args.case_id, note=note)

    if not args.release and not args.note:
        print("a legal hold needs --note (why, and on whose authority)", file=sys.stderr)
        return 2
    if not asyncio.run(once()):
        print(f"no case {args.case_id}", file=sys.stderr)
        return 1
    print(f"case {args.case_id}: {'released' if args.release else 'on legal hold'}")
    return 0


def _parked_replay(settings: Settings, args: argparse.Namespace) -> int:
    from services.referral.parked import replay

    results = asyncio.run(replay(settings))
    for r in results:
        m = r.message
        said = f"{r.outcome} ({r.error})" if r.error else r.outcome
        late = ", ".join(f"{priority} {stage}" for priority, stage in r.breaches)
        print(
            f"{m.topic} {m.partition}:{m.offset}  {said}"
            + (f"; SLA breached: {late}" if late else "")
        )
    stored = sum(r.outcome == "stored" for r in results)
    print(f"{stored} of {len(results)} parked message(s) stored")
    return 0 if stored == len(results) else 1


def _demo(settings: Settings, args: argparse.Namespace) -> int:
    from services.demo import run_demo

    return asyncio.run(run_demo(settings, args.file, wait_seconds=args.timeout))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="csae", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    sub.add_parser("router", help="route moderation flags to referral tasks").set_defaults(
        handler=_router
    )

    referral = sub.add_parser("referral", help="the referral service")
    rsub = referral.add_subparsers(dest="part", required=True)
    rsub.add_parser("worker", help="turn tasks into cases and packets").set_defaults(
        handler=_worker
    )
    api = rsub.add_parser("api", help="serve the case API")
    api.add_argument("--host")
    api.add_argument("--port", type=int)
    api.set_defaults(handler=_api)

    db = sub.add_parser("db", help="database migrations")
    dsub = db.add_subparsers(dest="action", required=True)
    up = dsub.add_parser("upgrade", help="apply migrations")
    up.add_argument("revision", nargs="?", default="head")
    up.set_defaults(handler=_db_upgrade)

    keys = sub.add_parser("keys", help="API keys")
    ksub = keys.add_subparsers(dest="action", required=True)
    keys_file = argparse.ArgumentParser(add_help=False)
    keys_file.add_argument("--file", type=Path, help="keys file (default CSAE_API_KEYS_FILE)")
    expiry = argparse.ArgumentParser(add_help=False)
    when = expiry.add_mutually_exclusive_group()
    when.add_argument("--expires-in", type=_duration, help="e.g. 90d, 12h, P90D")
    when.add_argument("--expires", type=_moment, help="ISO 8601 date or time (UTC if none)")
    create = ksub.add_parser(
        "create", parents=[keys_file, expiry], help="create a key; prints it once"
    )
    create.add_argument("--role", required=True, choices=["viewer", "investigator", "admin"])
    create.add_argument("--holder", help="who holds the key (a label shown by `keys list`)")
    create.set_defaults(handler=_keys_change)
    listed = ksub.add_parser("list", parents=[keys_file], help="the keys, by id (hash prefix)")
    listed.set_defaults(handler=_keys_list)
    revoke = ksub.add_parser("revoke", parents=[keys_file], help="refuse a key from now on")
    revoke.add_argument("id", help="the key's id, as `keys list` shows it")
    revoke.set_defaults(handler=_keys_change)
    rotate = ksub.add_parser(
        "rotate",
        parents=[keys_file, expiry],
        help="a new key for the same role and holder (printed once); the old one revoked",
    )
    rotate.add_argument("id", help="the old key's id, as `keys list` shows it")
    rotate.add_argument(
        "--grace", type=_duration, default=timedelta(0), help="keep the old key this long (0)"
    )
    rotate.set_defaults(handler=_keys_change)

    topics = sub.add_parser("topics", help="Kafka topics")
    tsub = topics.add_subparsers(dest="action", required=True)
    tsub.add_parser("create", help="create missing topics").set_defaults(handler=_topics)

    publish = sub.add_parser("publish", help="publish flags from a JSON Lines file")
    publish.add_argument("file", type=Path)
    publish.add_argument(
        "--fresh", action="store_true", help="give each flag a new flag_id and current timestamps"
    )
    publish.set_defaults(handler=_publish)

    schemas = sub.add_parser("schemas", help="JSON Schema of the contracts")
    ssub = schemas.add_subparsers(dest="action", required=True)
    export = ssub.add_parser("export", help="write schemas/json/")
    export.add_argument("--dir", type=Path, default=Path("schemas/json"))
    export.add_argument("--check", action="store_true", help="fail when the files are stale")
    export.set_defaults(handler=_schemas_export)

    policy = sub.add_parser("policy", help="the reporting policy")
    psub = policy.add_subparsers(dest="action", required=True)
    check = psub.add_parser("check", help="validate a policy file")
    check.add_argument("file", type=Path)
    check.set_defaults(handler=_policy_check)
    replay = psub.add_parser(
        "replay",
        help="run flags through the current policy (CSAE_POLICY_FILE or the bundled one) and, "
        "with --policy, a candidate; print counts and the flags whose decision changes",
    )
    replay.add_argument("file", type=Path, help="flags, one JSON document a line")
    replay.add_argument("--policy", type=Path, help="a candidate policy file to compare")
    replay.set_defaults(handler=_policy_replay)

    parked = sub.add_parser("parked", help="messages the worker could not store")
    parksub = parked.add_subparsers(dest="action", required=True)
    parksub.add_parser("list", help="list the parked messages not resolved").set_defaults(
        handler=_parked_list
    )
    parksub.add_parser(
        "replay", help="store them again from Kafka, once their cause is fixed"
    ).set_defaults(handler=_parked_replay)

    breaker = sub.add_parser("breaker", help="flood breakers: a source sending far past its rate")
    breakersub = breaker.add_subparsers(dest="action", required=True)
    breakersub.add_parser("list", help="the latest breakers, open and closed").set_defaults(
        handler=_breaker_list
    )
    close = breakersub.add_parser(
        "close", help="close a source's breaker: its referrals go out again (say who and why)"
    )
    close.add_argument("system")
    close.add_argument("version")
    close.add_argument("--by", required=True, help="who closes it (kept with the breaker)")
    close.add_argument("--note", required=True, help="why (kept with the breaker)")
    close.set_defaults(handler=_breaker_close)

    keep = sub.add_parser("retention", help="delete and redact what is past its period")
    keepsub = keep.add_subparsers(dest="action", required=True)
    once = keepsub.add_parser("run", help="once, now (the worker also runs it every hour)")
    once.add_argument("--dry-run", action="store_true", help="count, delete nothing")
    once.set_defaults(handler=_retention_run)

    trail = sub.add_parser("audit", help="the tamper-evident audit trail")
    trailsub = trail.add_subparsers(dest="action", required=True)
    trailsub.add_parser(
        "verify", help="walk the hash chain; name the first entry altered, removed or reordered"
    ).set_defaults(handler=_audit_verify)
    out = trailsub.add_parser("export", help="write the entries as JSON lines (for a SIEM)")
    out.add_argument(
        "--since", type=_moment, required=True, help="ISO 8601 date or time (UTC if none given)"
    )
    out.set_defaults(handler=_audit_export)

    cases = sub.add_parser("cases", help="a case's legal hold")
    casesub = cases.add_subparsers(dest="action", required=True)
    hold = casesub.add_parser("hold", help="stop retention for a case (or --release it)")
    hold.add_argument("case_id", type=UUID)
    hold.add_argument("--note", help="why, and on whose authority (kept with the case)")
    hold.add_argument("--release", action="store_true", help="release the hold")
    hold.set_defaults(handler=_case_hold)

    demo = sub.add_parser("demo", help="publish the sample flags and show the cases they make")
    demo.add_argument("file", type=Path)
    demo.add_argument("--timeout", type=float, default=60.0)
    demo.set_defaults(handler=_demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        for error in exc.errors(include_input=False):
            name = "CSAE_" + "_".join(str(part) for part in error["loc"]).upper()
            print(f"csae: invalid configuration: {name}: {error['msg']}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level)
    try:
        code: int = args.handler(settings, args)
    except KeyboardInterrupt:
        code = 130
    return code


if __name__ == "__main__":
    sys.exit(main())
