"""``python worker.py [--burst]``: an RQ worker for the portal's background jobs (exports), beside ``run.py``.

The app is built once from the environment (REDIS_URL is required), and every job runs inside its context.
"""

import sys

from redis import Redis
from rq import Worker

from app import create_app
from app.services import maintenance
from app.services.jobs import QUEUE, fail_abandoned
from app.services.outbox import send_due
from app.services.recovery import recover_all
from security import scoping

app = create_app()


def main(argv: list[str]) -> int:
    if not app.config["REDIS_URL"]:
        print("The worker needs REDIS_URL (without it, jobs run in the web process).", file=sys.stderr)
        return 2
    with app.app_context():
        fail_abandoned()  # jobs a killed worker was running: failed, ready for Retry
        with scoping.bypass("worker start: interrupted provider operations"):
            recover_all()  # what a killed process was asking Microsoft (tenants, orders, every change): settled
        send_due()  # mail queued while no worker ran (and retries now due)
        # Then the same, and the daily reconciliation with Microsoft, every MAINTENANCE_INTERVAL_SECONDS.
        maintenance.start(app)
        worker = Worker([QUEUE], connection=Redis.from_url(app.config["REDIS_URL"]))
        worker.work(burst="--burst" in argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
