"""`csae`: the command line of the pipeline."""

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from services.pipeline import logs
from services.pipeline.settings import Settings


def _router(settings: Settings, args: argparse.Namespace) -> int:
    from services.router.service import run

    asyncio.run(run(settings))
    return 0


def _worker(settings: Settings, args: argparse.Namespace) -> int:
    from services.referral.worker import run

    asyncio.run(run(settings))
    return 0


def _api(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from services.referral.api import create_app

    uvicorn.run(
        create_app(settings),
        host=args.host or settings.api_host,
        port=args.port or settings.api_port,
        log_level=settings.log_level.lower(),
        access_log=False,  # access lines would carry identifiers from the path
    )
    return 0


def _db_upgrade(settings: Settings, args: argparse.Namespace) -> int:
    from services.referral.database import upgrade

    upgrade(settings.database_url, args.revision)
    print(f"database at revision {args.revision}", file=sys.stderr)
    return 0


def _keys_create(settings: Settings, args: argparse.Namespace) -> int:
    from services.referral.keys import Role, create_key

    path = args.file or settings.api_keys_file
    if path is None:
        print("csae: set CSAE_API_KEYS_FILE or pass --file", file=sys.stderr)
        return 2
    print(create_key(path, Role(args.role)))
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
    create = ksub.add_parser("create", help="create a key; prints it once")
    create.add_argument("--role", required=True, choices=["viewer", "investigator", "admin"])
    create.add_argument("--file", type=Path, help="keys file (default CSAE_API_KEYS_FILE)")
    create.set_defaults(handler=_keys_create)

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
