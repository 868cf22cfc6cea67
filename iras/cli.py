"""The `iras` command.

iras run [--host H] [--port P]   web + worker + beat in one process (embedded default)
iras worker [celery args...]     a Celery worker (production: one per queue kind)
iras beat [celery args...]       Celery beat (approval timeouts, stuck sweeper)
iras flower [flower args...]     Flower, the Celery monitoring UI
iras db upgrade                  apply migrations
iras alerts dead-letters         rejected webhook bodies; `iras alerts replay --id N | --all`
iras tokens create --role R --name N | list | revoke ID|NAME   API/console tokens
iras eval [DIR] [--analyst ...]  score the analyst on incident scenarios (default: the bundled ones)
iras demo [--port P] [--exit]    the service with bundled incidents replayed through it
"""

from __future__ import annotations

import argparse
import sys


def _celery(argv: list[str]) -> int:
    from iras.celery_app import celery_app

    celery_app.start(argv=argv)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="iras", description="IRAS incident-response pipeline")
    sub = parser.add_subparsers(dest="command", required=True)

    run_p = sub.add_parser("run", help="web + worker + beat in one process")
    run_p.add_argument("--host", default="127.0.0.1")
    run_p.add_argument("--port", type=int, default=8080)

    for name in ("worker", "beat", "flower"):
        sub.add_parser(name, help=f"celery {name} (extra arguments pass through)", add_help=False)

    from iras.deadletter import add_alerts_arguments

    add_alerts_arguments(
        sub.add_parser("alerts", help="dead letters: list and replay rejected webhook bodies")
    )

    from iras.auth import add_tokens_arguments

    add_tokens_arguments(sub.add_parser("tokens", help="API and console tokens: create, list, revoke"))

    db_p = sub.add_parser("db", help="database commands")
    db_p.add_argument("action", choices=["upgrade"])

    eval_p = sub.add_parser("eval", help="score the analyst on incident scenarios")
    try:
        from iras.eval import add_eval_arguments

        add_eval_arguments(eval_p)
    except ImportError:  # pragma: no cover
        pass
    eval_p.add_argument(
        "--direct",
        action="store_true",
        help="call the analyst in-process instead of replaying through webhook + Celery + database",
    )

    from iras.demo import add_demo_arguments

    add_demo_arguments(
        sub.add_parser("demo", help="start the service and replay bundled incidents with their evidence")
    )

    if argv and argv[0] in ("worker", "beat", "flower"):
        from iras.logging_setup import configure_logging

        configure_logging()
        import iras.tasks  # noqa: F401

        extra = argv[1:]
        if argv[0] == "worker" and not any(a.startswith("-Q") or a.startswith("--queues") for a in extra):
            extra = ["-Q", "analysis,ops", *extra]
        return _celery([argv[0], *extra])

    args = parser.parse_args(argv)
    if args.command == "run":
        from iras.embedded import run

        run(args.host, args.port)
        return 0
    if args.command == "db":
        from iras.migrate import upgrade

        upgrade()
        print("database is at the latest migration")
        return 0
    if args.command == "tokens":
        from iras.auth import main_tokens

        return main_tokens(args)
    if args.command == "alerts":
        from iras.deadletter import main_alerts

        return main_alerts(args)
    if args.command == "demo":
        from iras.demo import main_demo

        return main_demo(args)
    if args.command == "eval":
        from iras.eval import main_eval

        if args.direct:
            return main_eval(args)
        from iras.eval_pipeline import pipeline_runner

        with pipeline_runner(args.analyst) as runner:
            return main_eval(args, runner)
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
