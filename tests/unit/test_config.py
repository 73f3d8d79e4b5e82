"""The settings table: defaults, validation messages, environment, config_from_object, docs."""

from __future__ import annotations

import logging
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from celeriac import Celeriac, Queue
from celeriac.config import CELERY_IGNORED, SETTINGS, Settings, from_object, settings_markdown, validate
from celeriac.errors import ConfigurationError

REPO = Path(__file__).resolve().parents[2]


def fresh(**values: object) -> Settings:
    return Settings(values, environ={})


# -- defaults ---------------------------------------------------------------------------------


def test_defaults_keep_celerys_meaning():
    conf = fresh()
    assert conf.worker_prefetch_multiplier == 4
    assert conf.task_default_queue == "celery"
    assert conf.task_acks_late is False
    assert conf.task_serializer == "json"
    assert conf.accept_content == ("json",)  # pickle is off unless turned on
    assert conf.task_protocol == 2
    assert conf.worker_max_tasks_per_child is None
    assert conf.worker_max_memory_per_child is None
    assert conf.task_time_limit is None
    assert conf.task_default_delivery_mode == 2


def test_every_setting_is_readable_by_attribute_and_item():
    conf = fresh()
    for setting in SETTINGS:
        assert conf[setting.name] == getattr(conf, setting.name)
        assert setting.name in conf


def test_every_default_passes_its_own_validator():
    for setting in SETTINGS:
        setting.validate(setting.name, setting.default)


def test_changes_lists_only_what_differs_from_the_defaults():
    conf = fresh(worker_concurrency=3)
    assert conf.changes() == {"worker_concurrency": 3}


# -- unknown names ----------------------------------------------------------------------------


def test_unknown_setting_suggests_closest_name():
    conf = fresh()
    with pytest.raises(ConfigurationError) as info:
        conf["worker_concurency"] = 3
    assert "'worker_concurency'" in str(info.value)
    assert "did you mean 'worker_concurrency'?" in str(info.value)


def test_unknown_setting_in_app_constructor_suggests_closest_name():
    with pytest.raises(ConfigurationError, match="did you mean 'task_acks_late'"):
        Celeriac("t", broker="memory://", task_ack_late=True, set_as_current=False)


def test_unknown_setting_by_attribute_suggests_closest_name():
    conf = fresh()
    with pytest.raises(ConfigurationError, match="did you mean 'worker_prefetch_multiplier'"):
        conf.worker_prefetch_multiplyer = 1


def test_reading_an_unknown_setting_by_item_suggests_closest_name():
    with pytest.raises(ConfigurationError, match="did you mean 'broker_url'"):
        fresh()["broker_urll"]


def test_unknown_setting_without_a_close_match_has_no_suggestion():
    with pytest.raises(ConfigurationError) as info:
        fresh()["zzzz"] = 1
    assert "did you mean" not in str(info.value)


# -- bad values -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("worker_max_memory_per_child", -1, ["worker_max_memory_per_child=-1", "integer >= 1", "KiB"]),
        ("worker_max_tasks_per_child", 0, ["worker_max_tasks_per_child=0", "integer >= 1", "tasks"]),
        ("worker_concurrency", "many", ["worker_concurrency='many'", "integer", "processes"]),
        ("worker_concurrency", True, ["worker_concurrency=True", "integer"]),
        ("task_time_limit", -5, ["task_time_limit=-5", "seconds"]),
        ("task_soft_time_limit", "10", ["task_soft_time_limit='10'", "seconds"]),
        ("task_message_max_bytes", 0, ["task_message_max_bytes=0", "bytes"]),
        ("worker_prefetch_multiplier", -1, ["worker_prefetch_multiplier=-1", ">= 0", "'auto'"]),
        ("task_acks_late", "yes", ["task_acks_late='yes'", "True or False"]),
        ("broker_url", "localhost", ["broker_url='localhost'", "URL"]),
        ("task_serializer", "yaml", ["task_serializer='yaml'", "json", "pickle"]),
        ("accept_content", ["json", "msgpack"], ["accept_content", "json", "pickle"]),
        ("task_default_delivery_mode", 3, ["task_default_delivery_mode=3", "persistent", "transient"]),
        ("task_default_priority", 300, ["task_default_priority=300", "0 to 255"]),
        ("task_protocol", 1, ["task_protocol=1", "protocol 2"]),
        ("timezone", "Mars/Olympus", ["timezone='Mars/Olympus'", "time zone"]),
        ("task_queues", ["celery"], ["task_queues", "Queue objects"]),
    ],
)
def test_bad_value_names_the_setting_expected_type_and_unit(name, value, words):
    with pytest.raises(ConfigurationError) as info:
        fresh()[name] = value
    for word in words:
        assert word in str(info.value)


def test_values_are_normalised_when_set():
    conf = fresh(
        task_time_limit=timedelta(minutes=2),
        accept_content="json, pickle",
        task_default_delivery_mode="transient",
        worker_prefetch_multiplier="auto",
    )
    assert conf.task_time_limit == 120.0
    assert conf.accept_content == ("json", "pickle")
    assert conf.task_default_delivery_mode == 1
    assert conf.worker_prefetch_multiplier == "auto"


def test_validate_checks_and_normalises_a_value_without_storing_it():
    assert validate("task_time_limit", timedelta(minutes=2)) == 120.0
    assert validate("worker_prefetch_multiplier", "auto") == "auto"
    with pytest.raises(
        ConfigurationError, match=r"worker_prefetch_multiplier=-1 is invalid: expected an integer >= 0"
    ):
        validate("worker_prefetch_multiplier", -1)
    with pytest.raises(ConfigurationError, match="did you mean 'worker_concurrency'"):
        validate("worker_concurency", 2)


def test_duplicate_queue_names_are_refused():
    with pytest.raises(ConfigurationError, match="more than once"):
        fresh(task_queues=[Queue("a"), Queue("a", routing_key="x")])


def test_router_given_as_import_path_that_does_not_exist_is_an_error():
    with pytest.raises(ConfigurationError, match="cannot import router 'no_such_module.route'"):
        fresh(task_routes=["no_such_module.route"])


# -- update -----------------------------------------------------------------------------------


def test_update_is_atomic_a_bad_value_applies_nothing():
    conf = fresh()
    with pytest.raises(ConfigurationError, match="worker_prefetch_multiplier"):
        conf.update({"worker_concurrency": 3, "task_acks_late": True, "worker_prefetch_multiplier": -1})
    assert conf.worker_concurrency is None
    assert conf.task_acks_late is False
    assert conf.changes() == {}


def test_update_with_an_unknown_name_applies_nothing():
    conf = fresh()
    with pytest.raises(ConfigurationError, match="worker_concurency"):
        conf.update(worker_concurrency=2, worker_concurency=3)
    assert conf.worker_concurrency is None


def test_update_applies_every_value_and_tells_the_app_once():
    calls: list[frozenset[str]] = []
    conf = Settings(environ={}, listener=calls.append)
    conf.update({"worker_concurrency": 3}, task_acks_late=True)
    assert (conf.worker_concurrency, conf.task_acks_late) == (3, True)
    assert calls == [frozenset({"worker_concurrency", "task_acks_late"})]


# -- environment ------------------------------------------------------------------------------


def test_environment_overrides_a_setting_with_its_type():
    conf = Settings(environ={"CELERIAC_WORKER_CONCURRENCY": "3"})
    assert conf.worker_concurrency == 3


def test_environment_beats_values_given_in_code():
    conf = Settings({"worker_concurrency": 8}, environ={"CELERIAC_WORKER_CONCURRENCY": "3"})
    assert conf.worker_concurrency == 3


def test_app_reads_celeriac_environment_variables(monkeypatch):
    monkeypatch.setenv("CELERIAC_WORKER_CONCURRENCY", "3")
    monkeypatch.setenv("CELERIAC_TASK_ACKS_LATE", "true")
    app = Celeriac("t", broker="memory://", worker_concurrency=8, set_as_current=False)
    assert app.conf.worker_concurrency == 3
    assert app.conf.task_acks_late is True


def test_celery_broker_url_and_result_backend_are_honoured():
    conf = Settings(
        environ={"CELERY_BROKER_URL": "memory://", "CELERY_RESULT_BACKEND": "sqlite:///results.db"}
    )
    assert conf.broker_url == "memory://"
    assert conf.result_backend == "sqlite:///results.db"


def test_celeriac_variable_beats_the_celery_alias():
    conf = Settings(environ={"CELERY_BROKER_URL": "memory://a", "CELERIAC_BROKER_URL": "memory://b"})
    assert conf.broker_url == "memory://b"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [('["json", "pickle"]', ("json", "pickle")), ("json,pickle", ("json", "pickle")), ("json", ("json",))],
)
def test_environment_lists_as_json_or_comma_separated(raw, expected):
    assert Settings(environ={"CELERIAC_ACCEPT_CONTENT": raw}).accept_content == expected


@pytest.mark.parametrize(("raw", "expected"), [("1", True), ("yes", True), ("off", False), ("FALSE", False)])
def test_environment_booleans(raw, expected):
    assert Settings(environ={"CELERIAC_TASK_ACKS_LATE": raw}).task_acks_late is expected


def test_environment_mapping_as_json():
    conf = Settings(environ={"CELERIAC_BROKER_TRANSPORT_OPTIONS": '{"fsync": "all"}'})
    assert conf.broker_transport_options == {"fsync": "all"}


def test_environment_none_and_auto():
    conf = Settings(
        environ={"CELERIAC_TASK_TIME_LIMIT": "none", "CELERIAC_WORKER_PREFETCH_MULTIPLIER": "auto"}
    )
    assert conf.task_time_limit is None
    assert conf.worker_prefetch_multiplier == "auto"


def test_bad_environment_boolean_names_the_setting():
    with pytest.raises(ConfigurationError, match="task_acks_late"):
        Settings(environ={"CELERIAC_TASK_ACKS_LATE": "maybe"})


def test_bad_environment_value_is_validated_like_any_value():
    with pytest.raises(ConfigurationError, match="KiB"):
        Settings(environ={"CELERIAC_WORKER_MAX_MEMORY_PER_CHILD": "-1"})


def test_unknown_celeriac_environment_variable_names_the_variable_and_suggests():
    with pytest.raises(ConfigurationError) as info:
        Settings(environ={"CELERIAC_WORKER_CONCURENCY": "3"})
    assert "CELERIAC_WORKER_CONCURENCY" in str(info.value)
    assert "worker_concurrency" in str(info.value)


def test_celeriac_app_variable_is_not_a_setting():
    assert Settings(environ={"CELERIAC_APP": "proj.tasks"}).changes() == {}


# -- config_from_object -----------------------------------------------------------------------


@pytest.fixture
def config_module(tmp_path, monkeypatch):
    """Write ``<name>.py`` on sys.path and return its module name; removed from sys.modules after."""
    monkeypatch.syspath_prepend(str(tmp_path))
    names: list[str] = []

    def write(name: str, source: str) -> str:
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        names.append(name)
        return name

    yield write
    for name in names:
        sys.modules.pop(name, None)


def test_config_from_object_reads_a_module_by_import_path(make_app, config_module):
    name = config_module(
        "celeriac_unit_cfg_module",
        """
        from celeriac import Queue
        _helper = "not a setting"
        CONSTANT = "upper case is not a setting"
        worker_concurrency = 2
        task_queues = (Queue("celery"), Queue("reports"))
        def unrelated():
            return 1
        """,
    )
    app = make_app()
    app.config_from_object(name)
    assert app.conf.worker_concurrency == 2
    assert [q.name for q in app.conf.task_queues] == ["celery", "reports"]


def test_a_function_under_a_setting_name_in_a_config_module_is_the_setting(make_app, config_module):
    """``task_routes = route_task`` is a router: it is read, where a helper function is not."""
    name = config_module(
        "celeriac_unit_cfg_router",
        """
        def route_task(name, args, kwargs, options, task=None, **kw):
            return {"queue": "reports"} if name.startswith("reports.") else None

        task_routes = route_task
        """,
    )
    app = make_app()
    app.config_from_object(name)
    assert app.conf.task_routes == (sys.modules[name].route_task,)
    assert app.router.route("reports.daily", {}).queue.name == "reports"


def test_config_module_that_imports_builtin_modules_loads(make_app, config_module):
    # a normal Celery config module: `import sys`/`import time` bind module objects
    name = config_module(
        "celeriac_unit_cfg_imports",
        """
        import os
        import sys
        import time
        worker_concurrency = 2
        """,
    )
    app = make_app()
    app.config_from_object(name)
    assert app.conf.worker_concurrency == 2


def test_config_from_object_reads_a_module_object(make_app, config_module):
    import importlib

    module = importlib.import_module(
        config_module("celeriac_unit_cfg_object", "task_default_queue = 'jobs'\n")
    )
    app = make_app()
    app.config_from_object(module)
    assert app.conf.task_default_queue == "jobs"


def test_config_from_object_reads_a_class_by_module_colon_attribute(make_app, config_module):
    name = config_module(
        "celeriac_unit_cfg_class",
        """
        class Config:
            worker_prefetch_multiplier = 1
            task_acks_late = True
        """,
    )
    app = make_app()
    app.config_from_object(f"{name}:Config")
    assert (app.conf.worker_prefetch_multiplier, app.conf.task_acks_late) == (1, True)


def test_config_from_object_reads_a_class(make_app):
    class Config:
        worker_prefetch_multiplier = 1
        task_default_queue = "work"

        def method(self) -> None:
            """Callables are not settings."""

    app = make_app()
    app.config_from_object(Config)
    assert (app.conf.worker_prefetch_multiplier, app.conf.task_default_queue) == (1, "work")


def test_config_from_object_reads_a_dict(make_app):
    app = make_app()
    app.config_from_object({"worker_concurrency": 5, "task_acks_late": True})
    assert (app.conf.worker_concurrency, app.conf.task_acks_late) == (5, True)


def test_config_from_object_with_celery_namespace(make_app):
    app = make_app(broker=None, backend=None)  # given to the app, they would win
    app.config_from_object(
        {
            "CELERY_BROKER_URL": "memory://ns",
            "CELERY_WORKER_CONCURRENCY": 4,
            "CELERY_TASK_ACKS_LATE": True,
            "DATABASES": {"default": {}},
            "worker_concurrency": 99,
        },
        namespace="CELERY",
    )
    assert app.conf.broker_url == "memory://ns"
    assert app.conf.worker_concurrency == 4
    assert app.conf.task_acks_late is True


def test_a_namespace_reads_only_its_own_attributes():
    """Django's settings object warns or raises on reading some settings of its own (deprecated
    ones on Django 4.2, an empty SECRET_KEY): with a namespace only its names are read."""

    class DjangoLikeSettings:
        CELERY_WORKER_CONCURRENCY = 4

        @property
        def SECRET_KEY(self) -> str:
            raise AssertionError("read a setting outside the CELERY_ namespace")

    assert from_object(DjangoLikeSettings(), namespace="CELERY") == {"worker_concurrency": 4}


def test_what_the_app_constructor_is_given_wins_over_config_from_object_as_in_celery():
    # Celery('proj', broker=...) then config_from_object(a module naming another broker):
    # Celery uses the constructor's, and so must celeriac, or a worker reads another broker
    app = Celeriac(
        "proj",
        broker="memory://constructor",
        backend="memory://constructor-results",
        task_default_queue="jobs",
        set_as_current=False,
    )
    app.config_from_object(
        {
            "broker_url": "memory://config",
            "result_backend": "memory://config-results",
            "task_default_queue": "other",
            "worker_concurrency": 3,
        }
    )
    conf = app.conf
    assert (conf.broker_url, conf.result_backend) == ("memory://constructor", "memory://constructor-results")
    assert (conf.task_default_queue, conf.worker_concurrency) == ("jobs", 3)


def test_a_config_source_given_to_the_constructor_is_under_its_keywords():
    app = Celeriac(
        "proj",
        config_source={"task_default_queue": "config", "worker_concurrency": 3},
        task_default_queue="keyword",
        set_as_current=False,
    )
    assert (app.conf.task_default_queue, app.conf.worker_concurrency) == ("keyword", 3)


def test_settings_set_in_code_win_over_config_from_object_before_or_after(make_app):
    app = make_app()
    app.conf.update(task_default_queue="updated-before")
    app.config_from_object({"task_default_queue": "config", "worker_concurrency": 3})
    assert (app.conf.task_default_queue, app.conf.worker_concurrency) == ("updated-before", 3)
    app.conf.worker_concurrency = 5
    app.config_from_object({"worker_concurrency": 7, "task_acks_late": True})  # a later source
    assert (app.conf.worker_concurrency, app.conf.task_acks_late) == (5, True)


def test_a_config_value_the_app_overrides_is_still_checked(make_app):
    app = make_app()
    with pytest.raises(ConfigurationError, match="worker_concurrency"):
        app.config_from_object({"broker_url": "memory://config", "worker_concurrency": 0})
    assert app.conf.broker_url == "memory://"


def test_environment_beats_config_from_object(make_app, monkeypatch):
    monkeypatch.setenv("CELERIAC_WORKER_CONCURRENCY", "3")
    app = make_app()
    app.config_from_object({"worker_concurrency": 9, "task_acks_late": True})
    assert app.conf.worker_concurrency == 3
    assert app.conf.task_acks_late is True


def test_config_from_object_with_a_bad_value_applies_nothing(make_app):
    app = make_app()
    with pytest.raises(ConfigurationError, match="worker_concurrency"):
        app.config_from_object({"task_acks_late": True, "worker_concurrency": 0})
    assert app.conf.task_acks_late is False


def test_config_from_object_missing_module_is_an_error_unless_silent(make_app):
    app = make_app()
    with pytest.raises(ConfigurationError, match="cannot import 'no_such_celeriac_config'"):
        app.config_from_object("no_such_celeriac_config")
    app.config_from_object("no_such_celeriac_config", silent=True)


def test_from_object_without_namespace_skips_private_upper_case_and_callables():
    class Config:
        _private = 1
        UPPER = 2
        lower = 3

        @staticmethod
        def helper() -> None:
            """Not a setting."""

    assert from_object(Config) == {"lower": 3}


# -- Celery-only settings ---------------------------------------------------------------------


def test_celery_only_setting_is_accepted_with_a_logged_warning(caplog):
    caplog.set_level(logging.WARNING, logger="celeriac.config")
    conf = fresh()
    conf["enable_utc"] = True
    assert "enable_utc" not in conf
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "enable_utc is ignored" in warnings[0].getMessage()
    assert CELERY_IGNORED["enable_utc"] in warnings[0].getMessage()


def test_celery_configuration_with_ignored_settings_loads(make_app, caplog):
    caplog.set_level(logging.WARNING, logger="celeriac.config")
    app = make_app()
    app.config_from_object({"enable_utc": True, "worker_hijack_root_logger": False, "worker_concurrency": 2})
    assert app.conf.worker_concurrency == 2
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "enable_utc" in logged
    assert "worker_hijack_root_logger" in logged


# -- docs -------------------------------------------------------------------------------------


def test_settings_markdown_lists_every_setting_with_its_unit():
    page = settings_markdown()
    for setting in SETTINGS:
        row = next(line for line in page.splitlines() if line.startswith(f"| `{setting.name}` |"))
        assert f"| {setting.unit or '-'} |" in row
    for name in CELERY_IGNORED:
        assert f"| `{name}` |" in page


def test_docs_settings_page_is_generated_from_the_table():
    page = REPO / "docs" / "settings.md"
    assert page.exists(), (
        "docs/settings.md is missing: run `make docs` to generate it from the settings table"
    )
    assert page.read_text() == settings_markdown(), (
        "docs/settings.md is out of date with src/celeriac/config.py: run `make docs`"
    )


def test_every_setting_is_declared_for_type_checkers_and_nothing_else():
    from celeriac.config import SETTINGS, Settings

    public = [name for name in Settings.__annotations__ if not name.startswith("_")]
    assert public == [s.name for s in SETTINGS]


@pytest.mark.parametrize(
    ("name", "value", "hint"),
    [
        ("broker_use_ssl", {"cert_reqs": 2}, "amqps://"),
        ("task_default_exchange", "jobs", "task_queues"),
        ("task_default_routing_key", "jobs", "routing_key="),
    ],
)
def test_celery_settings_celeriac_refuses_say_what_to_do_instead(name, value, hint):
    from celeriac import Celeriac

    with pytest.raises(ConfigurationError, match=f"Celery setting '{name}' is not supported: .*{hint}"):
        Celeriac("t", broker="memory://", **{name: value})
