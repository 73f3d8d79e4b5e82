"""Routing: Celery's task_queues / task_routes work unchanged; precedence and delivery modes."""

from __future__ import annotations

import pytest

from celeriac import Exchange, Queue
from celeriac.errors import ConfigurationError
from celeriac.protocol import PERSISTENT, TRANSIENT
from celeriac.routing import Router

# The configuration from the issue, as a Celery user writes it.
CELERY_QUEUES = (
    Queue("celery", routing_key="celery"),
    Queue("transient", Exchange("transient", delivery_mode=1), routing_key="transient", durable=False),
)
CELERY_ROUTES = {"proj.tasks.add": {"queue": "celery", "delivery_mode": "transient"}}


@pytest.fixture
def celery_app(make_app):
    app = make_app("proj", task_queues=CELERY_QUEUES, task_routes=CELERY_ROUTES)

    def add(x, y):
        return x + y

    app.task(name="proj.tasks.add")(add)
    return app


def router(queues=None, routes=None, default_queue="celery", create_missing=True, priority=None) -> Router:
    return Router(queues, routes, default_queue, PERSISTENT, priority, create_missing)


# -- the Celery configuration from the issue ---------------------------------------------------


def test_apply_async_to_the_transient_queue_routes_transient(celery_app):
    add = celery_app.tasks["proj.tasks.add"]
    _, route = celery_app.build_message(add.name, (2, 2), None, task=add, queue="transient")
    assert route.queue.name == "transient"
    assert route.delivery_mode == TRANSIENT
    assert route.persistent is False


def test_apply_async_to_the_transient_queue_publishes_a_transient_message(celery_app):
    add = celery_app.tasks["proj.tasks.add"]
    result = add.apply_async((2, 2), queue="transient")
    [delivery] = celery_app.broker.fetch(["transient"], 10, 0, "c")
    assert delivery.envelope.headers["id"] == result.id
    assert delivery.queue == "transient"
    assert delivery.persistent is False
    assert delivery.envelope.properties["delivery_mode"] == TRANSIENT
    assert celery_app.broker.queue_length("celery").total == 0


def test_route_with_transient_delivery_mode_on_a_durable_queue(celery_app):
    add = celery_app.tasks["proj.tasks.add"]
    add.delay(2, 2)
    [delivery] = celery_app.broker.fetch(["celery"], 10, 0, "c")
    assert delivery.envelope.properties["delivery_mode"] == TRANSIENT
    assert delivery.persistent is False


def test_task_without_a_route_goes_persistent_to_the_default_queue(celery_app):
    def other():
        return None

    task = celery_app.task(name="proj.tasks.other")(other)
    _, route = celery_app.build_message(task.name, (), None, task=task)
    assert (route.queue.name, route.delivery_mode, route.persistent) == ("celery", PERSISTENT, True)


# -- routers ----------------------------------------------------------------------------------


def test_glob_routes_match_task_names():
    r = router(routes=({"proj.reports.*": {"queue": "reports"}, "proj.mail.send": "mail"},))
    assert r.route("proj.reports.daily", {}).queue.name == "reports"
    assert r.route("proj.mail.send", {}).queue.name == "mail"
    assert r.route("proj.other.task", {}).queue.name == "celery"


def test_exact_name_beats_a_glob_that_also_matches():
    r = router(routes=({"proj.*": {"queue": "everything"}, "proj.tasks.add": {"queue": "adds"}},))
    assert r.route("proj.tasks.add", {}).queue.name == "adds"
    assert r.route("proj.tasks.mul", {}).queue.name == "everything"


def test_list_of_routers_first_answer_wins():
    r = router(
        routes=(
            {"proj.tasks.add": {"queue": "first"}},
            {"proj.tasks.add": {"queue": "second"}, "proj.tasks.mul": {"queue": "second"}},
            ("proj.*", {"queue": "pattern"}),
        )
    )
    assert r.route("proj.tasks.add", {}).queue.name == "first"
    assert r.route("proj.tasks.mul", {}).queue.name == "second"
    assert r.route("proj.tasks.div", {}).queue.name == "pattern"


def test_callable_router_returning_dict_str_or_none():
    seen: list[tuple] = []

    def by_size(name, args, kwargs, options, task=None, **kw):
        seen.append((name, tuple(args), dict(kwargs)))
        if name != "proj.resize":
            return None
        return {"queue": "big", "priority": 9} if kwargs.get("size", 0) > 100 else "small"

    r = router(routes=(by_size,))
    big = r.route("proj.resize", {}, (), {"size": 500})
    assert (big.queue.name, big.priority) == ("big", 9)
    assert r.route("proj.resize", {}, (), {"size": 5}).queue.name == "small"
    assert r.route("proj.other", {}, (1,), {}).queue.name == "celery"
    assert seen[-1] == ("proj.other", (1,), {})


def test_callable_router_is_asked_again_for_each_message():
    answers = iter(["a", "b"])
    r = router(routes=(lambda name, *args, **kw: next(answers),))
    assert r.route("t", {}).queue.name == "a"
    assert r.route("t", {}).queue.name == "b"


def module_router(name, args, kwargs, options, task=None, **kw):
    return "imported" if name.startswith("proj.") else None


def test_router_given_as_import_path(make_app):
    app = make_app(task_routes=[f"{__name__}.module_router"])

    def job():
        return None

    app.task(name="proj.job")(job).delay()
    assert app.broker.queue_length("imported").ready == 1


def test_router_returning_something_else_is_a_clear_error():
    r = router(routes=(lambda *a, **k: 42,))
    with pytest.raises(ConfigurationError, match="expected a dict, a queue name or None"):
        r.route("t", {})


def test_route_with_an_unknown_key_is_an_error_naming_the_key():
    r = router(routes=({"t": {"queue": "q", "queu": "typo"}},))
    with pytest.raises(ConfigurationError, match="'queu'"):
        r.route("t", {})


# -- precedence -------------------------------------------------------------------------------


def test_explicit_options_beat_routes():
    r = router(routes=({"t": {"queue": "routed", "priority": 1, "delivery_mode": "transient"}},))
    route = r.route("t", {"queue": "explicit", "priority": 5, "delivery_mode": "persistent"})
    assert (route.queue.name, route.priority, route.delivery_mode) == ("explicit", 5, PERSISTENT)


def test_explicit_none_options_do_not_hide_the_route():
    r = router(routes=({"t": {"queue": "routed"}},))
    assert r.route("t", {"queue": None, "priority": None}).queue.name == "routed"


def test_route_keeps_the_keys_the_call_does_not_give():
    r = router(routes=({"t": {"queue": "routed", "priority": 3}},))
    route = r.route("t", {"queue": "explicit"})
    assert (route.queue.name, route.priority) == ("explicit", 3)


def test_task_option_queue_beats_routes(make_app):
    app = make_app(task_routes={"proj.t": {"queue": "routed"}})

    def t():
        return None

    task = app.task(name="proj.t", queue="own")(t)
    task.delay()
    assert app.broker.queue_length("own").ready == 1
    assert app.broker.queue_length("routed").total == 0


def test_delivery_mode_comes_from_the_queue_exchange_when_nobody_says():
    transient = Queue("fast", Exchange("fast", delivery_mode="transient"))
    route = router(queues=(Queue("celery"), transient)).route("t", {"queue": "fast"})
    assert route.delivery_mode == TRANSIENT
    assert route.persistent is False


def test_persistent_message_on_a_non_durable_queue_is_not_stored_persistently():
    route = router(queues=(Queue("celery"), Queue("tmp", durable=False))).route("t", {"queue": "tmp"})
    assert route.persistent is False


def test_default_priority_applies_when_nothing_sets_one():
    assert router(priority=4).route("t", {}).priority == 4


# -- queues -----------------------------------------------------------------------------------


def test_missing_queue_is_created_durable_by_default():
    route = router().route("t", {"queue": "adhoc"})
    assert (route.queue.name, route.queue.durable, route.persistent) == ("adhoc", True, True)


def test_missing_queue_is_a_clear_error_when_creation_is_off():
    r = router(queues=(Queue("celery"), Queue("mail")), create_missing=False)
    with pytest.raises(ConfigurationError) as info:
        r.route("t", {"queue": "nope"})
    message = str(info.value)
    assert "'nope'" in message
    assert "task_queues" in message
    assert "celery, mail" in message
    assert "task_create_missing_queues" in message


def test_missing_queue_error_reaches_apply_async(make_app):
    app = make_app(task_queues=[Queue("celery")], task_create_missing_queues=False)

    def t():
        return None

    task = app.task(t)
    with pytest.raises(ConfigurationError, match="'elsewhere'"):
        task.apply_async(queue="elsewhere")
    assert app.broker.queue_names() == []


def test_routing_key_alone_selects_the_queue_bound_with_it():
    queues = (Queue("celery"), Queue("hipri", Exchange("tasks"), routing_key="high"))
    r = router(queues=queues)
    assert r.route("t", {"routing_key": "high"}).queue.name == "hipri"
    assert r.route("t", {"routing_key": "high", "exchange": "tasks"}).queue.name == "hipri"
    assert r.route("t", {"routing_key": "high", "exchange": Exchange("tasks")}).queue.name == "hipri"


def test_routing_key_from_a_route_selects_the_queue(make_app):
    app = make_app(
        task_queues=(Queue("celery"), Queue("hipri", routing_key="high")),
        task_routes={"proj.urgent": {"routing_key": "high"}},
    )

    def urgent():
        return None

    app.task(name="proj.urgent")(urgent).delay()
    assert app.broker.queue_length("hipri").ready == 1


def test_queue_given_as_a_queue_object_is_used():
    r = router()
    queue = Queue("objects", durable=False)
    route = r.route("t", {"queue": queue})
    assert route.queue is queue
    assert r.queue("objects") is queue


def test_routing_key_that_matches_no_queue_is_an_error_naming_the_keys():
    r = router(queues=(Queue("celery"), Queue("hipri", routing_key="high")))
    with pytest.raises(
        ConfigurationError, match=r"routing_key 'hihg' matches no declared queue.*hipri \(high\)"
    ):
        r.route("t", {"routing_key": "hihg"})


def test_queue_declared_not_durable_makes_messages_transient_by_default():
    r = router(queues=(Queue("celery"), Queue("scratch", durable=False)))
    route = r.route("t", {"queue": "scratch"})
    assert (route.delivery_mode, route.persistent) == (1, False)
    assert r.route("t", {"queue": "scratch", "delivery_mode": "persistent"}).delivery_mode == 2


def test_task_queue_max_priority_applies_to_queues_without_their_own(make_app):
    from celeriac import Queue

    app = make_app(
        task_queue_max_priority=10,
        task_queues=[
            Queue("celery"),
            Queue("own", max_priority=3),
            Queue("arg", queue_arguments={"x-max-priority": 5}),
        ],
    )
    queues = {q.name: q for q in app.queues_for(None)}
    assert queues["celery"].max_priority == 10
    assert queues["own"].max_priority == 3
    assert queues["arg"].max_priority is None and queues["arg"].queue_arguments == {"x-max-priority": 5}
    assert app.queues_for(["created"])[0].max_priority == 10


def test_without_task_queue_max_priority_queues_are_declared_as_given(make_app):
    (queue,) = make_app().queues_for(None)
    assert queue.max_priority is None
