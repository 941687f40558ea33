"""Ordering through the customer portal's pages, as a person does it: Add a subscription ▸ Review order ▸ Place order
(views/customer/ordering.py). Tests that need an order placed use these steps."""

from __future__ import annotations

import re

from tests.conftest import csrf_token


def review_url(customer_id: int) -> str:
    return f"/portal/{customer_id}/services/microsoft-csp/orders/review"


def place_url(customer_id: int) -> str:
    return f"/portal/{customer_id}/services/microsoft-csp/orders"


def review(client, customer_id: int, availability, quantity, coterm=""):
    """GET the Review order page of ``quantity`` licences of ``availability`` (an Availability or its product's
    form values as a dict)."""
    if isinstance(availability, dict):
        args = dict(availability)
    else:
        args = {
            "product": availability.product.product_title,
            "sku": str(availability.product_id),
            "term": availability.term,
            "billing_frequency": availability.billing_frequency,
        }
    return client.get(review_url(customer_id), query_string={**args, "quantity": str(quantity), "coterm": coterm})


def hidden_fields(page: str) -> dict[str, str]:
    """The Place order form's hidden fields (its key, availability, quantity, co-terming and reviewed price)."""
    form = page[page.index('data-test="review-order"') :]
    return dict(re.findall(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)">', form))


def place(client, customer_id: int, fields: dict[str, str], **overrides):
    """POST Place order with the review's hidden fields (``overrides`` change some)."""
    data = {**fields, **overrides}
    data["csrf_token"] = csrf_token(client, f"/portal/{customer_id}/")
    return client.post(place_url(customer_id), data=data)


def order(client, customer_id: int, availability, quantity, coterm=""):
    """Review, then place: the Place order answer."""
    page = review(client, customer_id, availability, quantity, coterm)
    assert page.status_code == 200, page.text[-2000:]
    return place(client, customer_id, hidden_fields(page.text))


def product_form(product_id: int) -> dict[str, str]:
    """The order form's choice of a product's first availability (what the world's products have)."""
    from tests.conftest import unscoped

    with unscoped() as session:
        from app.models.catalog import Product

        offer = session.get(Product, product_id).availabilities[0]
        return {
            "product": offer.product.product_title,
            "sku": str(offer.product_id),
            "term": offer.term,
            "billing_frequency": offer.billing_frequency,
        }


def reviewed(client, customer_id: int, product_id: int, quantity) -> dict[str, str]:
    """The Place order form's fields after reviewing ``quantity`` licences of the product."""
    page = review(client, customer_id, product_form(product_id), quantity)
    assert page.status_code == 200, page.text[-2000:]
    return hidden_fields(page.text)


def order_product(client, customer_id: int, product_id: int, quantity):
    """Review, then place ``quantity`` licences of the product: the Place order answer."""
    return place(client, customer_id, reviewed(client, customer_id, product_id, quantity))
