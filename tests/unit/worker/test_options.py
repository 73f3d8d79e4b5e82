"""WorkerOptions: the node's settings after command-line overrides, validated like settings."""

from __future__ import annotations

import os
import socket

import pytest

from celeriac import Queue
from celeriac.errors import ConfigurationError
from celeriac.worker.options import WorkerOptions, expand_nodename, node_format


def test_defaults_come_from_the_settings(make_app):
    app = make_app(worker_prefetch_multiplier=1, worker_max_tasks_per_child=100, broker_lease_timeout=12)
    options = WorkerOptions.from_app(app)
    assert options.queue_names == ["celery"]
    assert options.concurrency == (os.cpu_count() or 1)
    assert options.prefetch_multiplier == 1
    assert options.max_tasks_per_child == 100
    assert options.max_memory_per_child is None
    assert options.lease_seconds == 12.0


def test_command_line_overrides_win(make_app):
    app = make_app(worker_concurrency=8)
    options = WorkerOptions.from_app(
        app, concurrency=2, prefetch_multiplier="auto", max_memory_per_child=200_000, queues=["a", "b"]
    )
    assert (options.concurrency, options.prefetch_multiplier, options.max_memory_per_child) == (
        2,
        "auto",
        200_000,
    )
    assert options.queue_names == ["a", "b"]


@pytest.mark.parametrize(
    ("override", "setting"),
    [
        ({"concurrency": 0}, "worker_concurrency"),
        ({"prefetch_multiplier": -2}, "worker_prefetch_multiplier"),
        ({"max_memory_per_child": -1}, "worker_max_memory_per_child"),
        ({"prefetch_multiplier": -1}, "worker_prefetch_multiplier"),
        ({"max_tasks_per_child": 0}, "worker_max_tasks_per_child"),
        ({"max_memory_per_child": 0}, "worker_max_memory_per_child"),
        ({"max_memory_per_child_hard": 0}, "worker_max_memory_per_child_hard"),
    ],
)
def test_bad_overrides_are_rejected_naming_the_setting(make_app, override, setting):
    with pytest.raises(ConfigurationError, match=setting):
        WorkerOptions.from_app(make_app(), **override)


def test_overrides_are_not_written_into_the_app_settings(make_app):
    app = make_app(worker_concurrency=8, worker_max_tasks_per_child=100)
    before = app.conf.as_dict()
    options = WorkerOptions.from_app(
        app,
        concurrency=3,
        prefetch_multiplier=1,
        max_tasks_per_child=5,
        max_memory_per_child=200_000,
        max_memory_per_child_hard=400_000,
    )
    assert app.conf.worker_concurrency == 8
    assert app.conf.worker_prefetch_multiplier == 4
    assert app.conf.as_dict() == before
    assert (options.concurrency, options.prefetch_multiplier, options.max_tasks_per_child) == (3, 1, 5)
    assert (options.max_memory_per_child, options.max_memory_per_child_hard) == (200_000, 400_000)


def test_overrides_keep_the_apps_broker(make_app):
    app = make_app()
    broker = app.broker
    WorkerOptions.from_app(app, concurrency=3, prefetch_multiplier=1)
    assert app.broker is broker


def test_a_bad_override_leaves_the_app_settings_as_they_were(make_app):
    app = make_app()
    before = app.conf.as_dict()
    with pytest.raises(ConfigurationError, match="worker_prefetch_multiplier"):
        WorkerOptions.from_app(app, concurrency=3, prefetch_multiplier=-1)
    assert app.conf.as_dict() == before


def test_every_declared_queue_is_consumed_by_default(make_app):
    app = make_app(task_queues=[Queue("celery"), Queue("transient", durable=False)])
    options = WorkerOptions.from_app(app)
    assert options.queue_names == ["celery", "transient"]
    assert options.queues[1].durable is False


def test_undeclared_queue_is_refused_when_missing_queues_are_not_created(make_app):
    app = make_app(task_queues=[Queue("celery")], task_create_missing_queues=False)
    with pytest.raises(ConfigurationError, match="'other'"):
        WorkerOptions.from_app(app, queues=["other"])


def test_node_name_defaults_to_celeriac_at_host(make_app):
    assert WorkerOptions.from_app(make_app()).nodename == f"celeriac@{socket.gethostname()}"


def test_node_name_variables_are_expanded():
    host = socket.gethostname()
    short, _, domain = host.partition(".")
    assert expand_nodename("w1@%h") == f"w1@{host}"
    assert expand_nodename("w-%i@%n") == f"w-{os.getpid()}@{short}"
    assert expand_nodename("x@y.%d") == f"x@y.{domain}"
    assert expand_nodename("a%%b@c") == "a%b@c"


def test_a_node_name_without_at_is_the_host_part_as_in_celery():
    # Celery makes `-n worker1` into celery@worker1
    assert expand_nodename("worker1") == "celeriac@worker1"
    assert expand_nodename("%h") == f"celeriac@{socket.gethostname()}"


def test_an_unknown_node_name_variable_is_an_error_listing_the_known_ones():
    with pytest.raises(ConfigurationError, match=r"node name \(-n/--hostname\) 'w%x@h': unknown variable %x"):
        expand_nodename("w%x@h")


def test_per_node_file_names_take_the_parts_of_the_node_name():
    assert node_format("/run/%n.pid", "w1@host.example.com", "--pidfile") == "/run/w1.pid"
    assert node_format("%h|%d|%p", "w1@host.example.com", "--pidfile") == (
        "host.example.com|example.com|w1@host.example.com"
    )
    assert node_format("%n%I.log", "w1@h", "--logfile") == "w1.log"  # the master's index: none
    assert node_format("%n-%i.log", "w1@h", "--logfile") == "w1-0.log"
    assert node_format("100%%.pid", "w1@h", "--pidfile") == "100%.pid"
    with pytest.raises(ConfigurationError, match=r"--pidfile '%q.pid': unknown variable %q"):
        node_format("%q.pid", "w1@h", "--pidfile")


def test_excluded_queues_are_not_consumed(make_app):
    app = make_app(task_queues=[Queue("a"), Queue("b"), Queue("c")])
    assert WorkerOptions.from_app(app, exclude_queues=["b"]).queue_names == ["a", "c"]
    assert WorkerOptions.from_app(app, queues=["a", "b"], exclude_queues=["a"]).queue_names == ["b"]


def test_excluding_a_queue_the_worker_would_not_consume_is_an_error(make_app):
    app = make_app(task_queues=[Queue("a"), Queue("b")])
    with pytest.raises(ConfigurationError) as info:
        WorkerOptions.from_app(app, exclude_queues=["bb"])
    assert "-X/--exclude-queues bb: not among the queues this worker would consume (a, b)" in str(info.value)


def test_excluding_every_queue_leaves_nothing_to_consume(make_app):
    app = make_app(task_queues=[Queue("a")])
    with pytest.raises(ConfigurationError, match="no queue to consume"):
        WorkerOptions.from_app(app, exclude_queues=["a"])


def test_a_solo_pool_has_one_slot_and_recycles_nothing(make_app):
    app = make_app(worker_concurrency=8, worker_max_tasks_per_child=10, worker_max_memory_per_child=1000)
    options = WorkerOptions.from_app(app, pool="solo", max_memory_per_child_hard=5000)
    assert (options.pool, options.concurrency) == ("solo", 1)
    assert (options.max_tasks_per_child, options.max_memory_per_child, options.max_memory_per_child_hard) == (
        None,
        None,
        None,
    )
    assert WorkerOptions.from_app(app).pool == "prefork"
    with pytest.raises(ConfigurationError, match="worker pool 'threads': use one of prefork, solo"):
        WorkerOptions.from_app(app, pool="threads")


def test_hard_memory_ceiling_must_be_above_the_recycling_limit(make_app):
    with pytest.raises(ConfigurationError) as info:
        WorkerOptions.from_app(make_app(), max_memory_per_child=200_000, max_memory_per_child_hard=150_000)
    message = str(info.value)
    assert "worker_max_memory_per_child_hard=150000 KiB must be above worker_max_memory_per_child" in message
    assert "raise the hard one or unset it" in message
    options = WorkerOptions.from_app(
        make_app(), max_memory_per_child=200_000, max_memory_per_child_hard=400_000
    )
    assert options.max_memory_per_child_hard == 400_000
    assert options.memory_interval == 1.0


@pytest.mark.parametrize(
    ("settings", "overrides"),
    [
        ({"worker_max_memory_per_child": 200_000}, {"max_memory_per_child_hard": 150_000}),
        ({"worker_max_memory_per_child_hard": 150_000}, {"max_memory_per_child": 200_000}),
    ],
)
def test_hard_memory_ceiling_is_checked_across_settings_and_command_line(make_app, settings, overrides):
    with pytest.raises(ConfigurationError, match="raise the hard one or unset it") as info:
        WorkerOptions.from_app(make_app(**settings), **overrides)
    assert "worker_max_memory_per_child_hard=150000 KiB must be above" in str(info.value)


def test_hard_memory_ceiling_from_settings_with_the_limit_from_the_command_line(make_app):
    app = make_app(worker_max_memory_per_child_hard=400_000)
    options = WorkerOptions.from_app(app, max_memory_per_child=200_000)
    assert (options.max_memory_per_child, options.max_memory_per_child_hard) == (200_000, 400_000)
    assert app.conf.worker_max_memory_per_child is None
    app = make_app(worker_max_memory_per_child=200_000)
    options = WorkerOptions.from_app(app, max_memory_per_child_hard=400_000)
    assert (options.max_memory_per_child, options.max_memory_per_child_hard) == (200_000, 400_000)
    assert app.conf.worker_max_memory_per_child_hard is None
