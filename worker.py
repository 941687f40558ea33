"""``python worker.py [--burst]``: an RQ worker for the portal's background jobs (exports), beside ``run.py``.

The app is built once from the environment (REDIS_URL is required), and every job runs inside its context.
"""

import sys

from redis import Redis
from rq import Worker

from app import create_app
from app.services.jobs import QUEUE, fail_abandoned
from app.services.licensing import recover_orders
from app.services.tenants import recover_stuck
from security import scoping

app = create_app()


def main(argv: list[str]) -> int:
    if not app.config["REDIS_URL"]:
        print("The worker needs REDIS_URL (without it, jobs run in the web process).", file=sys.stderr)
        return 2
    with app.app_context():
        fail_abandoned()  # jobs a killed worker was running: failed, ready for Retry
        with scoping.bypass("worker start: interrupted tenants"):
            recover_stuck()  # tenants a killed process was creating: settled by asking Microsoft
            recover_orders()  # orders a killed process was placing: sent again with the same request id
        worker = Worker([QUEUE], connection=Redis.from_url(app.config["REDIS_URL"]))
        worker.work(burst="--burst" in argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
