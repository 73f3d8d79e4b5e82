"""Which AMQP 0-9-1 client should celeriac's RabbitMQ broker use? Measure the two
maintained synchronous ones, py-amqp and pika, on the same RabbitMQ.

    python benchmarks/amqp_clients.py [--url amqp://guest:guest@127.0.0.1:5672//] [-n 20000]

For each client it times, on a fresh queue:

* publishing ``n`` transient messages (no confirms);
* publishing ``n`` persistent messages under publisher confirms, the best way the
  client allows (py-amqp: a batch of 1,000 publishes, then one wait for the acks;
  pika's BlockingConnection: one wait per message, the only way it offers);
* consuming ``n`` messages with ``basic.qos`` 100 and one ``multiple=True`` ack per 100.

It prints messages/s, median of ``--runs``. The results and the choice are in
``benchmarks/RESULTS.md`` and the docstring of ``celeriac.brokers.amqp.broker``.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from urllib.parse import urlsplit

BODY = b'[[1, 2], {}, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}]'
BATCH = 1000
QOS = 100


def _parts(url: str) -> tuple[str, int, str, str, str]:
    u = urlsplit(url)
    vhost = u.path[1:] or "/"
    return u.hostname or "127.0.0.1", u.port or 5672, u.username or "guest", u.password or "guest", vhost


def run_pyamqp(url: str, n: int) -> dict[str, float]:
    import amqp

    host, port, user, password, vhost = _parts(url)
    conn = amqp.Connection(f"{host}:{port}", userid=user, password=password, virtual_host=vhost)
    conn.connect()
    out: dict[str, float] = {}
    ch = conn.channel()
    q = f"bench-pyamqp-{uuid.uuid4().hex[:8]}"
    ch.queue_declare(q, durable=True, auto_delete=False)
    props = {"content_type": "application/json", "content_encoding": "utf-8"}

    t = time.perf_counter()
    for _ in range(n):
        ch.basic_publish(amqp.Message(BODY, delivery_mode=1, **props), exchange="", routing_key=q)
    ch.queue_declare(q, passive=True)  # a round trip: everything before it reached the broker
    out["publish transient"] = n / (time.perf_counter() - t)

    confirmed = conn.channel()
    confirmed.confirm_select()
    acked = [0]

    def on_ack(delivery_tag: int, multiple: bool) -> None:
        acked[0] = max(acked[0], delivery_tag)

    confirmed.events["basic_ack"].add(on_ack)
    t = time.perf_counter()
    sent = 0
    while sent < n:
        for _ in range(min(BATCH, n - sent)):
            confirmed.basic_publish(amqp.Message(BODY, delivery_mode=2, **props), exchange="", routing_key=q)
            sent += 1
        while acked[0] < sent:
            conn.drain_events(timeout=5)
    out["publish persistent, confirmed"] = n / (time.perf_counter() - t)

    ch.basic_qos(0, QOS, False)
    got = [0]

    def on_message(message: amqp.Message) -> None:
        got[0] += 1
        if got[0] % QOS == 0:
            ch.basic_ack(message.delivery_tag, multiple=True)

    tag = ch.basic_consume(q, callback=on_message)
    t = time.perf_counter()
    while got[0] < 2 * n:
        conn.drain_events(timeout=5)
    out["consume, qos 100"] = 2 * n / (time.perf_counter() - t)
    ch.basic_cancel(tag)
    ch.queue_delete(q)
    conn.close()
    return out


def run_pika(url: str, n: int) -> dict[str, float]:
    import pika

    host, port, user, password, vhost = _parts(url)
    params = pika.ConnectionParameters(host, port, vhost, pika.PlainCredentials(user, password))
    conn = pika.BlockingConnection(params)
    out: dict[str, float] = {}
    ch = conn.channel()
    q = f"bench-pika-{uuid.uuid4().hex[:8]}"
    ch.queue_declare(q, durable=True)

    t = time.perf_counter()
    props = pika.BasicProperties(content_type="application/json", content_encoding="utf-8", delivery_mode=1)
    for _ in range(n):
        ch.basic_publish("", q, BODY, props)
    ch.queue_declare(q, passive=True)
    out["publish transient"] = n / (time.perf_counter() - t)

    confirmed = conn.channel()
    confirmed.confirm_delivery()
    props = pika.BasicProperties(content_type="application/json", content_encoding="utf-8", delivery_mode=2)
    t = time.perf_counter()
    for _ in range(n):
        confirmed.basic_publish("", q, BODY, props)
    out["publish persistent, confirmed"] = n / (time.perf_counter() - t)

    ch.basic_qos(prefetch_count=QOS)
    got = [0]

    def on_message(channel, method, properties, body) -> None:
        got[0] += 1
        if got[0] % QOS == 0:
            channel.basic_ack(method.delivery_tag, multiple=True)

    tag = ch.basic_consume(q, on_message)
    t = time.perf_counter()
    while got[0] < 2 * n:
        conn.process_data_events(time_limit=5)
    out["consume, qos 100"] = 2 * n / (time.perf_counter() - t)
    ch.basic_cancel(tag)
    ch.queue_delete(q)
    conn.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="amqp://guest:guest@127.0.0.1:5672//")
    parser.add_argument("-n", type=int, default=20_000, help="messages per step (default 20000)")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, dict[str, list[float]]] = {}
    for _ in range(args.runs):  # interleaved, so drift hits both alike
        for name, fn in (("py-amqp", run_pyamqp), ("pika", run_pika)):
            for step, rate in fn(args.url, args.n).items():
                results.setdefault(step, {}).setdefault(name, []).append(rate)
    print(f"{'step':32} {'py-amqp':>12} {'pika':>12} {'ratio':>7}   (msg/s, median of {args.runs})")
    for step, by in results.items():
        a, b = statistics.median(by["py-amqp"]), statistics.median(by["pika"])
        print(f"{step:32} {a:12,.0f} {b:12,.0f} {a / b:6.1f}x")


if __name__ == "__main__":
    main()
