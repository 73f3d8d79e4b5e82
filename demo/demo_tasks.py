"""The demo's tasks: a small web shop's background jobs.

* ``send_receipt``: short, durable; the mail server refuses now and then, so it
  retries with exponential backoff (``autoretry_for``).
* ``resize_image``: short, on the transient queue (a lost thumbnail is redone).
* ``build_report``: long (a few hundred milliseconds), durable, acked late so a
  crash runs it again.
* ``charge_card``: fails for good for some inputs (declined cards).
"""

from __future__ import annotations

import hashlib
import os
import random
import time

from celeriac import Celeriac, Exchange, Queue

app = Celeriac("demo", broker=os.environ.get("DEMO_BROKER_URL", "sqlite:///demo-output/demo.db"))
app.conf.update(
    task_queues=(
        Queue("celery", routing_key="celery"),
        Queue("transient", Exchange("transient", delivery_mode=1), routing_key="transient", durable=False),
    ),
    task_routes={"demo.resize_image": {"queue": "transient"}},
    worker_stats_interval=0.5,
)


class MailServerBusy(ConnectionError):
    """The SMTP server said 'try again later'."""


class CardDeclined(Exception):
    """The payment provider declined the card."""


@app.task(
    autoretry_for=(MailServerBusy,),
    retry_backoff=True,
    retry_backoff_max=1,
    max_retries=5,
    name="demo.send_receipt",
)
def send_receipt(order_id: int) -> str:
    if random.random() < 0.2:
        raise MailServerBusy(f"421 try again later (order {order_id})")
    return f"receipt for order {order_id} sent"


@app.task(name="demo.resize_image")
def resize_image(image_id: int) -> str:
    digest = hashlib.sha256(str(image_id).encode())
    for _ in range(200):
        digest = hashlib.sha256(digest.digest())
    return digest.hexdigest()[:12]


#: Rendered reports kept "for reuse" and never evicted: the leak `celeriac inspect memory` names.
_RENDERED: dict[int, bytes] = {}


@app.task(acks_late=True, name="demo.build_report")
def build_report(report_id: int) -> dict[str, int]:
    time.sleep(0.2 + (report_id % 4) * 0.1)
    _RENDERED[report_id] = b"row," * (256 * 1024)  # 1 MiB a report
    return {"report": report_id, "rows": report_id * 1000}


@app.task(name="demo.charge_card")
def charge_card(order_id: int, amount_cents: int) -> int:
    if order_id % 7 == 0:
        raise CardDeclined(f"card declined for order {order_id}")
    return amount_cents
