"""``Task.chunks`` and the builtin ``celery.starmap``: wire layout, chunk sizes, streaming,
routing, validation, eager mode and results."""

from __future__ import annotations

import orjson
import pytest

from celeriac import Queue
from celeriac.canvas.chunks import BATCH_SIZE, STARMAP, Chunks
from celeriac.errors import NotRegisteredError, TimeoutError
from celeriac.protocol import TaskMessage, decode
from celeriac.protocol.serializers import JSON
from celeriac.results.result import GroupResult

#: The signature dict Celery's ``Task.s()`` makes for a call without arguments.
CELERY_SIGNATURE_KEYS = ["args", "immutable", "kwargs", "options", "subtask_type", "task"]


@pytest.fixture
def add(app):
    @app.task(name="proj.add")
    def add(x, y):
        return x + y

    return add


def spy_publish(app, monkeypatch, on_publish=None):
    """Record the size of every batch the app publishes (and still publish it)."""
    batches: list[int] = []
    publish = app.broker.publish

    def spy(batch):
        batches.append(len(batch))
        if on_publish is not None:
            on_publish(batch)
        publish(batch)

    monkeypatch.setattr(app.broker, "publish", spy)
    return batches


def fetched(app, queue="celery"):
    """Every message waiting on ``queue``, in order: (delivery, decoded message)."""
    out = []
    for delivery in app.broker.fetch([queue], 100_000, 0, "inspector"):
        message = decode(delivery.envelope, frozenset({JSON}), None)
        assert isinstance(message, TaskMessage), message
        out.append((delivery, message))
    return out


def chunk_sizes(app, queue="celery"):
    return [len(message.kwargs["it"]) for _, message in fetched(app, queue)]


# -- the wire layout ----------------------------------------------------------------------------


def test_chunks_are_celery_starmap_messages_with_celerys_layout(app, add):
    result = add.chunks(zip(range(5), range(5), strict=True), 2).apply_async()

    messages = fetched(app)
    assert len(messages) == 3
    for index, (delivery, message) in enumerate(messages):
        headers = delivery.envelope.headers
        assert headers["task"] == STARMAP
        assert headers["id"] == result[index].id == delivery.envelope.properties["correlation_id"]
        assert headers["group"] == result.id
        assert headers["group_index"] == index
        assert headers["root_id"] == headers["id"]
        assert headers["parent_id"] is None
        assert delivery.envelope.content_type == "application/json"
        body = orjson.loads(delivery.envelope.body)
        assert body[0] == []
        assert sorted(body[1]) == ["it", "task"]
        assert sorted(body[1]["task"]) == CELERY_SIGNATURE_KEYS
        assert body[1]["task"] == {
            "task": "proj.add",
            "args": [],
            "kwargs": {},
            "options": {},
            "subtask_type": None,
            "immutable": False,
        }
        assert body[2] == {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
        assert message.args == []
    assert [m.kwargs["it"] for _, m in messages] == [[[0, 0], [1, 1]], [[2, 2], [3, 3]], [[4, 4]]]


def test_delay_and_calling_send_the_same_way(app, add):
    assert len(add.chunks([(1, 2)] * 3, 2).delay()) == 2
    assert len(add.chunks([(1, 2)] * 3, 3)()) == 1
    assert chunk_sizes(app) == [2, 1, 3]


def test_options_apply_to_every_chunk_and_task_id_names_the_group(app, add):
    result = add.chunks([(1, 2)] * 4, 2).apply_async(priority=7, task_id="g-1", expires=60)
    assert result.id == "g-1"
    messages = fetched(app)
    assert {d.envelope.properties["priority"] for d, _ in messages} == {7}
    assert {d.envelope.headers["group"] for d, _ in messages} == {"g-1"}
    assert all(m.expires is not None for _, m in messages)
    assert len({m.id for _, m in messages}) == 2


def test_the_chunk_results_are_stored_even_if_the_inner_task_ignores_its_results(app, inline_worker):
    @app.task(ignore_result=True)
    def quiet(x):
        return x

    result = quiet.chunks([(1,), (2,)], 1).apply_async()
    assert {m.ignore_result for _, m in fetched(app)} == {False}
    assert isinstance(result, GroupResult)


def test_ignore_result_given_to_apply_async_applies_to_every_chunk(app, add):
    add.chunks([(1, 2), (3, 4)], 1).apply_async(ignore_result=True)
    assert [m.ignore_result for _, m in fetched(app)] == [True, True]


# -- chunk sizes ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("items", "sizes"),
    [
        (0, []),
        (1, [1]),
        (10, [10]),
        (11, [10, 1]),
        (100, [10] * 10),
    ],
)
def test_chunk_sizes(app, add, items, sizes):
    result = add.chunks(((i, i) for i in range(items)), 10).apply_async()
    assert chunk_sizes(app) == sizes
    assert len(result) == len(sizes)


def test_an_empty_iterable_sends_nothing_and_gives_an_empty_result(app, add, monkeypatch):
    batches = spy_publish(app, monkeypatch)
    result = add.chunks([], 5).apply_async()
    assert batches == []
    assert list(result) == []
    assert result.get(timeout=0) == []
    assert result.ready()


def test_n_of_one_sends_one_call_per_message(app, add):
    add.chunks([(1, 2), (3, 4), (5, 6)], 1).apply_async()
    assert chunk_sizes(app) == [1, 1, 1]


# -- streaming ------------------------------------------------------------------------------------


def test_a_generator_is_read_one_batch_at_a_time(app, add, monkeypatch):
    n = 2
    chunk_count = 2 * BATCH_SIZE + 200
    drawn = 0

    def items():
        nonlocal drawn
        for i in range(chunk_count * n):
            drawn += 1
            yield (i, i)

    drawn_at_publish: list[int] = []
    batches = spy_publish(app, monkeypatch, lambda batch: drawn_at_publish.append(drawn))

    result = add.chunks(items(), n).apply_async()

    assert batches == [BATCH_SIZE, BATCH_SIZE, 200]
    # the first batch went out when only its own items had been read, not the whole generator
    assert drawn_at_publish == [BATCH_SIZE * n, 2 * BATCH_SIZE * n, chunk_count * n]
    assert len(result) == chunk_count


def test_an_iterator_can_be_sent_once(app, add):
    sent = add.chunks(iter([(1, 2), (3, 4)]), 1)
    sent.apply_async()
    with pytest.raises(RuntimeError, match="can be sent once"):
        sent.apply_async()


def test_a_list_can_be_sent_again(app, add):
    again = add.chunks([(1, 2), (3, 4)], 1)
    again.apply_async()
    again.apply_async()
    assert chunk_sizes(app) == [1, 1, 1, 1]


# -- routing --------------------------------------------------------------------------------------


def test_chunks_are_routed_by_the_inner_task_name(make_app):
    app = make_app(task_routes={"proj.resize": {"queue": "images"}})

    @app.task(name="proj.resize")
    def resize(path):
        return path

    resize.chunks([("a",), ("b",), ("c",)], 2).apply_async()
    assert chunk_sizes(app, "images") == [2, 1]
    assert app.broker.queue_length("celery").total == 0


def test_glob_routes_match_the_inner_task_name(make_app):
    app = make_app(task_routes={"proj.*": "images"})

    @app.task(name="proj.resize")
    def resize(path):
        return path

    resize.chunks([("a",)], 2).apply_async()
    assert chunk_sizes(app, "images") == [1]


def test_queue_option_overrides_the_route(make_app):
    app = make_app(task_routes={"proj.resize": {"queue": "images"}})

    @app.task(name="proj.resize")
    def resize(path):
        return path

    resize.chunks([("a",), ("b",)], 1).apply_async(queue="urgent")
    assert chunk_sizes(app, "urgent") == [1, 1]
    assert app.broker.queue_length("images").total == 0


def test_the_inner_tasks_own_queue_option_applies(app):
    @app.task(name="proj.resize", queue="images")
    def resize(path):
        return path

    resize.chunks([("a",)], 1).apply_async()
    assert chunk_sizes(app, "images") == [1]


def test_a_route_for_celery_starmap_applies_when_none_matches_the_inner_name(make_app):
    app = make_app(task_routes={STARMAP: {"queue": "bulk"}, "proj.resize": {"queue": "images"}})

    @app.task(name="proj.other")
    def other(path):
        return path

    @app.task(name="proj.resize")
    def resize(path):
        return path

    other.chunks([("a",)], 1).apply_async()
    resize.chunks([("b",)], 1).apply_async()
    assert chunk_sizes(app, "bulk") == [1]
    assert chunk_sizes(app, "images") == [1]


def test_a_router_function_sees_the_inner_task_name(make_app):
    seen = []

    def router(name, args, kwargs, options, task=None, **kw):
        seen.append((name, task.name if task else None, sorted(kwargs)))
        return {"queue": "routed"} if name == "proj.resize" else None

    app = make_app(task_routes=(router,))

    @app.task(name="proj.resize")
    def resize(path):
        return path

    resize.chunks([("a",)], 1).apply_async()
    assert chunk_sizes(app, "routed") == [1]
    assert seen == [("proj.resize", "proj.resize", ["it", "task"])]


def test_send_task_route_name_routes_as_another_task_and_is_cached_apart(make_app):
    app = make_app(task_routes={"proj.resize": "images", "proj.plain": "plain"})
    app.send_task("proj.plain", [1], route_name="proj.resize")
    app.send_task("proj.plain", [2])
    app.send_task("proj.plain", [3], route_name="proj.unrouted")
    assert [m.args for _, m in fetched(app, "images")] == [[1]]
    assert [m.args for _, m in fetched(app, "plain")] == [[2], [3]]


def test_send_many_accepts_a_route_name(make_app):
    app = make_app(task_routes={"proj.resize": "images"})
    app.send_many("proj.plain", [(1,), (2,)], route_name="proj.resize")
    assert [m.args for _, m in fetched(app, "images")] == [[1], [2]]


def test_a_declared_queue_keeps_its_options(make_app):
    app = make_app(task_queues=(Queue("celery"), Queue("fast", durable=False)))

    @app.task(name="proj.resize")
    def resize(path):
        return path

    resize.chunks([("a",)], 1).apply_async(queue="fast")
    ((delivery, _),) = fetched(app, "fast")
    assert delivery.envelope.properties["delivery_mode"] == 1


# -- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "error"), [(0, ValueError), (-3, ValueError)])
def test_n_below_one_is_refused(app, add, n, error):
    with pytest.raises(error, match=r"proj\.add\.chunks\(\): n must be an int >= 1, got -?\d"):
        add.chunks([(1, 2)], n)


@pytest.mark.parametrize("n", ["10", 2.5, True, None])
def test_n_that_is_not_an_int_is_refused(app, add, n):
    with pytest.raises(TypeError, match="n must be an int >= 1"):
        add.chunks([(1, 2)], n)


def test_it_must_be_iterable(app, add):
    with pytest.raises(TypeError, match="it must be an iterable, got int"):
        add.chunks(5, 2)


def test_an_item_that_is_not_a_list_or_tuple_is_named_by_index(app, add, monkeypatch):
    batches = spy_publish(app, monkeypatch)
    with pytest.raises(TypeError) as info:
        add.chunks([(1, 2), (3, 4), 5], 2).apply_async()
    assert "item 2 is int 5, expected a list or tuple of positional arguments" in str(info.value)
    assert batches == [], "a list is checked whole before anything is sent"


def test_the_inner_tasks_argument_check_applies_to_each_item(app, add):
    with pytest.raises(TypeError) as info:
        add.chunks([(1, 2), (1,), (1, 2)], 5).apply_async()
    message = str(info.value)
    assert message.startswith("proj.add.chunks(): item 1 (1,): ")
    assert "missing a required argument: 'y'" in message
    assert app.broker.queue_length("celery").total == 0


def test_the_argument_check_follows_the_tasks_typing_option(app):
    @app.task(name="proj.loose", typing=False)
    def loose(x):
        return x

    loose.chunks([(1, 2, 3)], 1).apply_async()
    assert chunk_sizes(app) == [1]


def test_a_bad_item_late_in_a_generator_says_how_much_was_already_sent(app, add):
    def items():
        for i in range(BATCH_SIZE + 3):
            yield (i, i)
        yield "oops"

    with pytest.raises(TypeError) as info:
        add.chunks(items(), 1).apply_async()
    message = str(info.value)
    assert f"item {BATCH_SIZE + 3} is str 'oops'" in message
    assert f"({BATCH_SIZE} chunks before it were already sent)" in message
    assert app.broker.queue_length("celery").total == BATCH_SIZE


def test_unknown_send_options_are_refused_before_anything_is_sent(app, add):
    with pytest.raises(Exception, match="'qeue' is not known"):
        add.chunks([(1, 2)], 1).apply_async(qeue="x")
    assert app.broker.queue_length("celery").total == 0


# -- the builtin celery.starmap --------------------------------------------------------------------


def test_every_app_has_the_builtin_starmap_but_lists_only_user_tasks(make_app):
    app = make_app()
    assert STARMAP in app.tasks
    assert app.task_names() == []
    assert app.task_names(builtins=True) == [STARMAP]


def test_get_task_lists_user_tasks_only(app, add):
    with pytest.raises(NotRegisteredError) as info:
        app.get_task("nope")
    assert "(known: proj.add)" in str(info.value)


def test_a_worker_runs_the_chunks_and_get_returns_one_list_per_chunk(app, add, inline_worker):
    result = add.chunks(((i, 10 * i) for i in range(7)), 3).apply_async()
    worker = inline_worker(app)
    for _ in range(3):
        worker.run_next()
    assert result.get(timeout=1) == [[0, 11, 22], [33, 44, 55], [66]]
    assert result.ready() and result.successful() and not result.failed()
    assert result.completed_count() == 3
    assert result.results == list(result)


def test_starmap_calls_the_inner_tasks_function_directly(app, inline_worker):
    requests = []

    @app.task(name="proj.probe", bind=True)
    def probe(self, x):
        requests.append((self.request.called_directly, self.request.args))
        return x

    result = probe.chunks([(1,), (2,)], 2).apply_async()
    inline_worker(app).run_next()
    assert result.get(timeout=1) == [[1, 2]]
    assert requests == [(True, (1,)), (True, (2,))]


def test_starmap_accepts_a_bare_task_name_as_celery_does(app, add, inline_worker):
    sent = app.send_task(STARMAP, (), {"task": "proj.add", "it": [[1, 2], [3, 4]]})
    inline_worker(app).run_next()
    assert sent.get(timeout=1) == [3, 7]


def test_starmap_of_an_unknown_task_fails_naming_it_and_the_known_tasks(app, add, inline_worker):
    sent = app.send_task(STARMAP, (), {"task": {"task": "proj.missing"}, "it": [[1]]})
    inline_worker(app).run_next()
    with pytest.raises(NotRegisteredError) as info:
        sent.get(timeout=1)
    assert "'proj.missing' is not registered (known: proj.add)" in str(info.value)


def test_starmap_refuses_a_task_argument_without_a_name(app, inline_worker):
    sent = app.send_task(STARMAP, (), {"task": {"args": []}, "it": []})
    inline_worker(app).run_next()
    with pytest.raises(TypeError, match="'task' must be a task name or a signature dict"):
        sent.get(timeout=1)


def test_a_failing_chunk_propagates_or_takes_its_place(app, inline_worker):
    @app.task(name="proj.div")
    def div(x, y):
        return x / y

    result = div.chunks([(4, 2), (1, 0), (9, 3)], 1).apply_async()
    worker = inline_worker(app)
    for _ in range(3):
        worker.run_next()
    with pytest.raises(ZeroDivisionError):
        result.get(timeout=1)
    values = result.get(timeout=1, propagate=False)
    assert values[0] == [2.0] and values[2] == [3.0]
    assert isinstance(values[1], ZeroDivisionError)
    assert result.failed() and not result.successful()
    assert result.completed_count() == 2


def test_get_times_out_for_the_whole_group(app, add, inline_worker):
    result = add.chunks([(1, 2), (3, 4)], 1).apply_async()
    inline_worker(app).run_next()  # only the first chunk runs
    assert not result.ready()
    with pytest.raises(TimeoutError):
        result.get(timeout=0.05)


def test_forget_deletes_every_chunk_result(app, add, inline_worker):
    result = add.chunks([(1, 2), (3, 4)], 1).apply_async()
    worker = inline_worker(app)
    worker.run_next()
    worker.run_next()
    assert result.ready()
    result.forget()
    assert [r.state for r in result] == ["PENDING", "PENDING"]


# -- eager mode -----------------------------------------------------------------------------------


def test_always_eager_runs_the_chunks_here(make_app, monkeypatch):
    app = make_app(task_always_eager=True)

    @app.task(name="proj.add")
    def add(x, y):
        return x + y

    batches = spy_publish(app, monkeypatch)
    result = add.chunks(((i, i) for i in range(5)), 2).apply_async()
    assert batches == []
    assert result.get() == [[0, 2], [4, 6], [8]]
    assert len({r.id for r in result}) == 3


def test_always_eager_failures_follow_task_eager_propagates(make_app):
    app = make_app(task_always_eager=True)

    @app.task(name="proj.div")
    def div(x, y):
        return x / y

    result = div.chunks([(1, 0)], 1).apply_async()
    assert result.failed()
    with pytest.raises(ZeroDivisionError):
        result.get()

    app.conf.task_eager_propagates = True
    with pytest.raises(ZeroDivisionError):
        div.chunks([(1, 0)], 1).apply_async()


def test_always_eager_still_checks_the_items(make_app):
    app = make_app(task_always_eager=True)

    @app.task(name="proj.add")
    def add(x, y):
        return x + y

    with pytest.raises(TypeError, match="item 0"):
        add.chunks([(1,)], 1).apply_async()


def test_nothing_is_sent_until_the_chunks_are_applied(app, add):
    made = add.chunks([(1, 2)], 4)
    assert isinstance(made, Chunks)
    assert repr(made) == "<chunks: proj.add in chunks of 4>"
    assert app.broker.queue_length("celery").total == 0
