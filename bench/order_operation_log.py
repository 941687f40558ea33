"""What the provider operation log costs an order, run by hand (never by ``make test``)::

    .venv/bin/python -m bench.order_operation_log                   # fresh temporary SQLite file, 200 orders each way
    .venv/bin/python -m bench.order_operation_log --runs 300 --database-url postgresql://postgres@127.0.0.1/portal_bench

Issue 12's goal: the operation log adds under 5 ms (median) to an order. Each round places one order through
``ordering.order`` (operation written and committed with its form key before the sandbox is asked, its outcome
recorded after) and one without it (the same sandbox call and the same subscription rows, committed once), interleaved
so drift hits both alike; the difference of the medians is the log's cost. With ``--database-url`` pointing at
PostgreSQL its ``public`` schema is dropped and recreated: give the benchmark a database of its own.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid

PASSWORD = "bench-order-operation-log"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()
    from app.csp import get_provider
    from app.csp.base import CartLineItem, new_correlation_id
    from app.extensions import db
    from app.models.accounts import Account
    from app.models.catalog import Product
    from app.services import licensing, ordering, pricing, subscriptions
    from bench._app import demo_app
    from security import scoping

    app, url = demo_app("bench-orders-", args.database_url, PASSWORD)
    with app.app_context(), scoping.bypass("bench"):
        customer_id = db.session.query(Account.id).filter_by(name="Contoso NZ").scalar()
        product_id = db.session.query(Product.id).filter_by(name="Exchange Online (Plan 1)").scalar()

    def with_log() -> float:
        with app.app_context(), scoping.use_scope(scoping.Scope(scoping.CUSTOMER_SCOPE, customer_id)):
            customer, product = db.session.get(Account, customer_id), db.session.get(Product, product_id)
            started = time.perf_counter()
            ordering.order(customer, product.availabilities[0], 1, key=uuid.uuid4().hex)
            db.session.commit()
            elapsed = time.perf_counter() - started
            db.session.remove()
            return elapsed * 1000

    def without_log() -> float:
        with app.app_context(), scoping.use_scope(scoping.Scope(scoping.CUSTOMER_SCOPE, customer_id)):
            customer, product = db.session.get(Account, customer_id), db.session.get(Product, product_id)
            started = time.perf_counter()
            offer = product.availabilities[0]
            price = pricing.quote(customer, offer)
            tenant, cid = customer.tenant.tenant_guid, new_correlation_id()
            line = CartLineItem(product.sku, 1, offer.term, offer.billing_frequency)
            cart = get_provider().create_cart(tenant, [line], correlation_id=cid)
            (bought,) = get_provider().checkout_cart(tenant, cart.cart_id, correlation_id=cid)
            sub = subscriptions.new_subscription(
                customer,
                offer,
                1,
                unit_price=price.sell,
                unit_cost=price.buy,
                ms_unit_cost=price.ms_cost,
                provider_subscription_id=bought.subscription_id,
                renew_on=bought.renew_on,
            )
            licensing.record_usage(sub)
            licensing.record_event("subscription.ordered", account_id=customer.id, target=sub, summary="bench")
            db.session.commit()
            elapsed = time.perf_counter() - started
            db.session.remove()
            return elapsed * 1000

    with_log(), without_log()  # warm-up
    logged, bare = [], []
    for _ in range(args.runs):
        logged.append(with_log())
        bare.append(without_log())
    print(f"database: {url.split(':')[0]}, orders each way: {args.runs}, cpus: {os.cpu_count()}")
    for name, values in (("with the operation log", logged), ("without it", bare)):
        values.sort()
        p95 = values[int(0.95 * (len(values) - 1))]
        print(f"{name:24} p50 {statistics.median(values):6.2f} ms   p95 {p95:6.2f} ms")
    print(f"added by the log (p50): {statistics.median(logged) - statistics.median(bare):.2f} ms")


if __name__ == "__main__":
    main()
