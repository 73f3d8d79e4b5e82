"""Celery configurations that must not change meaning silently: old setting names, rate limits,
task annotations, beat_schedule and the rpc:// result backend."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from celeriac import Celeriac, Queue, Task
from celeriac.config import (
    CELERY_OLD_NAMES,
    Settings,
    beat_schedule_warning,
    beat_unsupported,
    from_object,
    settings_markdown,
)
from celeriac.errors import ConfigurationError


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


# -- Celery's old names -----------------------------------------------------------------------


def test_the_old_name_table_is_celerys_own():
    defaults = pytest.importorskip("celery.app.defaults")  # in the test extras: never skipped there
    celerys = defaults._TO_NEW_KEY
    assert {old: CELERY_OLD_NAMES.get(old) for old in celerys} == celerys
    assert set(CELERY_OLD_NAMES) == set(celerys)


@pytest.mark.parametrize(
    ("old", "value", "new", "stored"),
    [
        ("BROKER_URL", "memory://legacy", "broker_url", "memory://legacy"),
        ("CELERY_RESULT_BACKEND", "memory://legacy", "result_backend", "memory://legacy"),
        ("CELERY_ALWAYS_EAGER", True, "task_always_eager", True),
        ("CELERY_EAGER_PROPAGATES_EXCEPTIONS", True, "task_eager_propagates", True),
        ("CELERYD_CONCURRENCY", 3, "worker_concurrency", 3),
        ("CELERYD_PREFETCH_MULTIPLIER", 1, "worker_prefetch_multiplier", 1),
        ("CELERYD_MAX_TASKS_PER_CHILD", 50, "worker_max_tasks_per_child", 50),
        ("CELERYD_TASK_TIME_LIMIT", 30, "task_time_limit", 30.0),
        ("CELERYD_TASK_SOFT_TIME_LIMIT", timedelta(seconds=20), "task_soft_time_limit", 20.0),
        ("CELERY_ACKS_LATE", True, "task_acks_late", True),
        ("CELERY_TASK_SERIALIZER", "json", "task_serializer", "json"),
        ("CELERY_RESULT_SERIALIZER", "json", "result_serializer", "json"),
        ("CELERY_ACCEPT_CONTENT", ["json"], "accept_content", ("json",)),
        ("CELERY_TASK_RESULT_EXPIRES", 3600, "result_expires", 3600.0),
        ("CELERY_DEFAULT_QUEUE", "jobs", "task_default_queue", "jobs"),
        ("CELERY_IGNORE_RESULT", True, "task_ignore_result", True),
        ("CELERY_TRACK_STARTED", True, "task_track_started", True),
        ("CELERY_TIMEZONE", "Europe/Paris", "timezone", "Europe/Paris"),
        ("CELERY_IMPORTS", ["proj.tasks"], "imports", ("proj.tasks",)),
        (
            "CELERYBEAT_SCHEDULE",
            {"e": {"task": "t", "schedule": 5}},
            "beat_schedule",
            {"e": {"task": "t", "schedule": 5}},
        ),
    ],
)
def test_an_old_name_is_read_as_the_new_one_with_a_warning_naming_it(
    make_app, caplog, old, value, new, stored
):
    caplog.set_level(logging.WARNING, logger="celeriac.config")
    app = make_app(broker=None, backend=None)  # given to the app, they would win
    app.config_from_object({old: value})
    assert app.conf[new] == stored
    (warning,) = warnings_of(caplog)
    assert old in warning and f"rename it to {new}" in warning


def test_old_routes_and_queues_are_read(make_app):
    app = make_app()
    app.config_from_object(
        {
            "CELERY_QUEUES": (Queue("celery"), Queue("reports")),
            "CELERY_ROUTES": {"proj.report": {"queue": "reports"}},
        }
    )
    assert [q.name for q in app.conf.task_queues] == ["celery", "reports"]
    assert app.router.route("proj.report", {}).queue.name == "reports"


def test_an_old_broker_url_is_where_delay_sends(tmp_path, monkeypatch):
    # the old names were dropped and delay() wrote into ./celeriac.db, a file no worker reads
    monkeypatch.chdir(tmp_path)
    app = Celeriac("proj", set_as_current=False)
    app.config_from_object(
        {"BROKER_URL": "memory://legacy-broker", "CELERY_RESULT_BACKEND": "memory://legacy-broker"}
    )

    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    try:
        add.delay(1, 2)
        assert app.broker.location.startswith("memory://")
        assert app.broker.queue_length("celery").ready == 1
        assert not (tmp_path / "celeriac.db").exists()
    finally:
        app.close()


def test_an_old_name_in_a_config_module(make_app, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "celeriac_unit_old_cfg.py").write_text(
        "BROKER_URL = 'memory://old-module'\nCELERYD_CONCURRENCY = 2\n"
        "CELERY_ALWAYS_EAGER = True\nTIMEOUT = 5  # a constant, not a setting\n"
    )
    app = make_app(broker=None, backend=None)  # given to the app, they would win
    app.config_from_object("celeriac_unit_old_cfg")
    assert (app.conf.broker_url, app.conf.worker_concurrency, app.conf.task_always_eager) == (
        "memory://old-module",
        2,
        True,
    )


def test_each_old_name_warns_once(make_app, caplog):
    caplog.set_level(logging.WARNING, logger="celeriac.config")
    app = make_app()
    app.config_from_object({"CELERY_ACKS_LATE": True, "CELERYD_CONCURRENCY": 2})
    logged = warnings_of(caplog)
    assert len(logged) == 2
    assert sum("CELERY_ACKS_LATE" in line for line in logged) == 1
    assert sum("CELERYD_CONCURRENCY" in line for line in logged) == 1


def test_mixing_old_and_new_names_is_refused_naming_both(make_app):
    app = make_app()
    with pytest.raises(ConfigurationError) as info:
        app.config_from_object(
            {"BROKER_URL": "memory://x", "CELERY_ALWAYS_EAGER": True, "task_acks_late": True}
        )
    message = str(info.value)
    assert "mixes Celery's old upper-case setting names with new ones (task_acks_late)" in message
    assert "BROKER_URL to broker_url" in message and "CELERY_ALWAYS_EAGER to task_always_eager" in message
    assert app.conf.task_acks_late is False, "nothing applied"


def test_silent_ignores_a_missing_module_but_not_a_mix(make_app):
    app = make_app()
    app.config_from_object("no_such_celeriac_config_module", silent=True)
    with pytest.raises(ConfigurationError, match="mixes Celery's old upper-case setting names"):
        app.config_from_object({"BROKER_URL": "memory://x", "task_acks_late": True}, silent=True)


def test_mixing_in_conf_update_is_refused(make_app):
    app = make_app()
    with pytest.raises(ConfigurationError, match="CELERY_ALWAYS_EAGER to task_always_eager"):
        app.conf.update(CELERY_ALWAYS_EAGER=True, task_acks_late=True)
    assert app.conf.task_always_eager is False


def test_old_and_new_name_of_one_setting_is_not_a_mix_and_the_new_one_wins(make_app, caplog):
    caplog.set_level(logging.WARNING, logger="celeriac.config")
    app = make_app(broker=None, backend=None)  # given to the app, they would win
    app.config_from_object(
        {"CELERY_ALWAYS_EAGER": True, "task_always_eager": False, "BROKER_URL": "memory://both"}
    )
    assert app.conf.task_always_eager is False
    assert app.conf.broker_url == "memory://both"
    assert any(
        "task_always_eager is used" in line and "remove CELERY_ALWAYS_EAGER" in line
        for line in warnings_of(caplog)
    )


def test_old_names_in_conf_update_item_and_attribute(make_app):
    app = make_app()
    app.conf.update(CELERY_ACKS_LATE=True, CELERYD_CONCURRENCY=2)
    app.conf["CELERY_TRACK_STARTED"] = True
    app.conf.CELERY_IGNORE_RESULT = True
    assert (app.conf.task_acks_late, app.conf.worker_concurrency) == (True, 2)
    assert (app.conf.task_track_started, app.conf.task_ignore_result) == (True, True)
    assert app.conf["CELERYD_CONCURRENCY"] == 2 and app.conf.get("CELERY_ACKS_LATE") is True
    assert "BROKER_URL" in app.conf


def test_old_names_as_app_keywords_are_read_without_refusing_the_mix():
    # Celery reads keyword settings given to the app without its mix check; so does celeriac
    app = Celeriac(
        "t", broker="memory://", CELERY_ALWAYS_EAGER=True, task_acks_late=True, set_as_current=False
    )
    assert (app.conf.task_always_eager, app.conf.task_acks_late) == (True, True)


def test_an_old_name_of_a_refused_setting_is_refused_naming_both_names(make_app):
    app = make_app()
    with pytest.raises(ConfigurationError) as info:
        app.config_from_object({"BROKER_USE_SSL": {"cert_reqs": 2}})
    assert "BROKER_USE_SSL is Celery's old name of broker_use_ssl" in str(info.value)
    assert "amqps://" in str(info.value)


def test_an_old_name_of_a_setting_celeriac_lacks_is_an_error_naming_both(make_app):
    app = make_app()
    with pytest.raises(
        ConfigurationError, match="CELERYD_POOL is Celery's old name of worker_pool: unknown setting"
    ):
        app.config_from_object({"CELERYD_POOL": "solo"})


def test_an_old_name_of_an_ignored_setting_warns_twice_and_loads(make_app, caplog):
    caplog.set_level(logging.WARNING, logger="celeriac.config")
    app = make_app()
    app.config_from_object({"CELERY_SEND_EVENTS": True})
    logged = " | ".join(warnings_of(caplog))
    assert "CELERY_SEND_EVENTS" in logged and "worker_send_task_events is ignored" in logged


@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("CELERYD_TIME_LIMIT", "Celery does not read CELERYD_TIME_LIMIT either"),
        ("WORKER_CONCURRENCY", "settings are lower case: worker_concurrency"),
        ("CELERY_TASK_ACKS_LATE", "namespace='CELERY' only: write task_acks_late"),
    ],
)
def test_upper_case_names_celery_does_not_read_are_ignored_with_a_warning(caplog, name, hint):
    caplog.set_level(logging.WARNING, logger="celeriac.config")
    assert from_object({name: 1}) == {}
    (warning,) = warnings_of(caplog)
    assert f"{name} is ignored" in warning and hint in warning


def test_django_namespace_reads_new_and_old_names_as_celery_does(make_app, caplog):
    caplog.set_level(logging.WARNING, logger="celeriac.config")
    app = make_app(broker=None, backend=None)  # given to the app, they would win
    app.config_from_object(
        {
            "CELERY_BROKER_URL": "memory://new",  # the new name, prefixed
            "BROKER_URL": "memory://old",  # its old name: the prefixed new name wins
            "CELERY_ALWAYS_EAGER": True,  # old name, prefixed: task_always_eager
            "CELERYD_CONCURRENCY": 3,  # old name without the prefix, still Celery's
            "CELERY_RESULT_BACKEND": "memory://new",  # the same in both schemes
            "CELERY_TASK_ACKS_LATE": True,
            "task_acks_late": False,  # lower case is not read with a namespace
            "S3_BUCKET": "media",  # another app's setting in Django's settings: not Celery's
            "DATABASES": {},
        },
        namespace="CELERY",
    )
    conf = app.conf
    assert (conf.broker_url, conf.result_backend) == ("memory://new", "memory://new")
    assert (conf.task_always_eager, conf.worker_concurrency, conf.task_acks_late) == (True, 3, True)
    logged = " | ".join(warnings_of(caplog))
    assert "rename it to CELERY_TASK_ALWAYS_EAGER" in logged
    assert "rename it to CELERY_WORKER_CONCURRENCY" in logged
    assert "BROKER_URL and CELERY_BROKER_URL are both set; CELERY_BROKER_URL is used" in logged
    assert "S3_BUCKET" not in logged


def test_django_namespace_on_a_settings_object_reads_old_names_and_nothing_else():
    class DjangoLikeSettings:
        CELERY_BROKER_URL = "memory://django"
        CELERYD_CONCURRENCY = 2
        TIME_ZONE = "UTC"

        @property
        def SECRET_KEY(self) -> str:
            raise AssertionError("read a setting that is neither in the namespace nor Celery's")

    assert from_object(DjangoLikeSettings(), namespace="CELERY") == {
        "broker_url": "memory://django",
        "worker_concurrency": 2,
    }


def test_django_namespace_does_not_refuse_a_mix():
    assert from_object({"CELERY_ACKS_LATE": True, "CELERY_WORKER_CONCURRENCY": 2}, namespace="CELERY") == {
        "task_acks_late": True,
        "worker_concurrency": 2,
    }


def test_settings_page_lists_every_old_name():
    page = settings_markdown()
    for old, new in CELERY_OLD_NAMES.items():
        assert f"| `{old}` | `{new}` |" in page


# -- result backends ----------------------------------------------------------------------------


def test_rpc_result_backend_is_refused_when_the_app_is_configured():
    with pytest.raises(ConfigurationError) as info:
        Celeriac("t", broker="memory://", backend="rpc://", set_as_current=False)
    message = str(info.value)
    assert "result_backend='rpc://' is not supported" in message
    assert "redis://" in message and "sqlite:///" in message and "None" in message


@pytest.mark.parametrize("how", ["setting", "old name", "environment"])
def test_rpc_result_backend_is_refused_however_it_is_set(make_app, monkeypatch, how):
    app = make_app()
    with pytest.raises(ConfigurationError, match=r"result_backend='rpc://' is not supported"):
        if how == "setting":
            app.conf.result_backend = "rpc://"
        elif how == "old name":
            app.config_from_object({"CELERY_RESULT_BACKEND": "rpc://"})
        else:
            monkeypatch.setenv("CELERY_RESULT_BACKEND", "rpc://")
            app.conf.apply_environment()
    assert app.conf.result_backend == "memory://"


def test_nothing_is_sent_with_a_refused_backend(make_app):
    app = make_app(backend=None)

    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    with pytest.raises(ConfigurationError):
        app.conf.result_backend = "rpc://"
    add.delay(1, 2)  # the app kept its working configuration
    assert app.broker.queue_length("celery").ready == 1


@pytest.mark.parametrize(
    "url", ["django-db", "db+postgresql://db/results", "mongodb://db/0", "amqp://guest@rabbit//"]
)
def test_result_backends_celeriac_lacks_are_refused_at_configuration(url):
    with pytest.raises(
        ConfigurationError, match=r"is not a result backend celeriac has; use one of: redis://"
    ):
        Settings({"result_backend": url}, environ={})


def test_a_backend_that_cannot_be_built_fails_before_the_message_is_sent(make_app):
    # passes the setting's check, fails when built: no Sentinel master name
    app = make_app(backend="sentinel://localhost:26379/0")
    with pytest.raises(ConfigurationError, match="master_name"):
        app.send_task("anything", (1,))
    with pytest.raises(ConfigurationError, match="master_name"):
        app.send_many("anything", [(1,), (2,)])
    assert app.broker.queue_length("celery").ready == 0


# -- rate limits and task annotations ------------------------------------------------------------

RATE_LIMIT_REFUSAL = "is not supported: celeriac does not implement rate limits yet"


def test_rate_limit_option_is_refused_naming_the_task(app):
    with pytest.raises(ConfigurationError) as info:

        @app.task(name="tests.add", rate_limit="10/m")
        def add() -> None:
            """A task."""

    assert f"rate_limit='10/m' for task 'tests.add' (@app.task option) {RATE_LIMIT_REFUSAL}" in str(
        info.value
    )
    assert "-Q" in str(info.value)


def test_rate_limit_on_a_base_class_is_refused_the_same_way(app):
    class Throttled(Task):
        rate_limit = "10/m"

    with pytest.raises(
        ConfigurationError, match=f"attribute of base class .*Throttled\\) {RATE_LIMIT_REFUSAL}"
    ):

        @app.task(name="tests.add", base=Throttled)
        def add() -> None:
            """A task."""

    assert "tests.add" not in app.tasks


def test_rate_limit_none_is_no_limit_and_accepted(app):
    @app.task(rate_limit=None)
    def add() -> None:
        """A task."""

    assert add.rate_limit is None


@pytest.mark.parametrize(
    "annotations", [{"tests.add": {"rate_limit": "10/s"}}, [{"*": {"rate_limit": "10/s"}}]]
)
def test_rate_limit_through_task_annotations_is_refused_the_same_way(make_app, annotations):
    with pytest.raises(ConfigurationError, match=f"task_annotations\\[.*\\]\\) {RATE_LIMIT_REFUSAL}"):
        make_app(task_annotations=annotations)


def test_default_rate_limit_setting_is_refused(make_app):
    with pytest.raises(ConfigurationError, match="task_default_rate_limit' is not supported: .*rate limits"):
        make_app().config_from_object({"CELERY_DEFAULT_RATE_LIMIT": "10/s"})


def test_task_annotations_set_task_options_as_celery_does(make_app):
    app = make_app(
        task_annotations=[
            {"tests.add": {"acks_late": True, "time_limit": 5}, "*": {"time_limit": 60}},
            {"tests.add": {"max_retries": 9}},  # only the first map naming a task applies
        ]
    )

    @app.task(name="tests.add", acks_late=False)
    def add() -> None:
        """A task."""

    @app.task
    def other() -> None:
        """Another task."""

    assert add.acks_late is True, "annotations apply over the decorator's options"
    assert add.time_limit == 60, "'*' is applied after the task's own entry, as in Celery"
    assert add.max_retries is None
    assert other.time_limit == 60 and other.acks_late is None


def test_task_annotations_set_later_apply_to_tasks_already_registered(app):
    @app.task(name="tests.add")
    def add() -> None:
        """A task."""

    app.conf.task_annotations = {"tests.add": {"queue": "slow"}}
    assert add.queue == "slow"


@pytest.mark.parametrize(
    ("annotations", "words"),
    [
        (
            {"*": {"on_failure": print}},
            ["task_annotations['*']", "'on_failure' cannot be annotated", "base="],
        ),
        ({"tests.add": {"@__call__": print}}, ["'@__call__' cannot be annotated"]),
        ({"tests.add": {"time_limt": 5}}, ["did you mean 'time_limit'?"]),
        ("proj.annotations.MyAnnotate", ["annotation objects and import paths are not"]),
    ],
)
def test_task_annotations_other_than_task_options_are_refused_naming_the_key(make_app, annotations, words):
    with pytest.raises(ConfigurationError) as info:
        make_app(task_annotations=annotations)
    for word in words:
        assert word in str(info.value)


# -- beat_schedule -----------------------------------------------------------------------------


def test_beat_schedule_is_kept_and_named_at_worker_start(make_app):
    app = make_app("proj")
    assert beat_schedule_warning(app) is None
    app.conf.beat_schedule = {"add-every-30": {"task": "proj.add", "schedule": 30.0}, "odd": 5}
    warning = beat_schedule_warning(app)
    assert warning is not None
    assert "2 entries that will NOT run: 'add-every-30' (task proj.add), 'odd'" in warning
    assert "not implemented yet" in warning and "celery -A proj beat" in warning


def test_worker_beat_is_unsupported_naming_the_feature_and_the_entries(make_app):
    app = make_app("proj", beat_schedule={"nightly": {"task": "proj.cleanup", "schedule": 86400}})
    reason = beat_unsupported(app)
    assert reason is not None
    assert "-B/--beat: periodic tasks (beat) are not implemented yet" in reason
    assert "'nightly' (task proj.cleanup)" in reason and "without -B" in reason
