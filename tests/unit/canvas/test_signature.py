"""``Signature``: Celery's dict layout, partial arguments, options, freeze, link, and sending."""

from __future__ import annotations

import copy
import pickle

import orjson
import pytest

from celeriac import Signature, chain, maybe_signature, signature
from celeriac.errors import ConfigurationError, NotRegisteredError
from celeriac.protocol import TaskMessage, decode
from celeriac.protocol.serializers import JSON
from celeriac.results.result import AsyncResult

CELERY_KEYS = ["args", "chord_size", "immutable", "kwargs", "options", "subtask_type", "task"]


@pytest.fixture
def add(app):
    @app.task(name="proj.add")
    def add(x, y):
        return x + y

    return add


def fetched(app, queue="celery"):
    out = []
    for delivery in app.broker.fetch([queue], 1000, 0, "inspector"):
        message = decode(delivery.envelope, frozenset({JSON}), None)
        assert isinstance(message, TaskMessage), message
        out.append(message)
    return out


def test_a_signature_is_a_dict_with_celerys_keys(add):
    sig = add.s(2, y=3)
    assert isinstance(sig, dict)
    assert sorted(sig) == CELERY_KEYS
    assert orjson.loads(orjson.dumps(sig)) == {
        "task": "proj.add",
        "args": [2],
        "kwargs": {"y": 3},
        "options": {},
        "subtask_type": None,
        "immutable": False,
        "chord_size": None,
    }
    assert (sig.task, sig.name, sig.args, sig.kwargs, sig.immutable) == (
        "proj.add",
        "proj.add",
        (2,),
        {"y": 3},
        False,
    )


def test_si_is_immutable_and_signature_takes_celerys_arguments(add):
    assert add.si(1, 2).immutable
    sig = add.signature((1,), {"y": 2}, countdown=5)
    assert (sig.args, sig.kwargs, sig.options) == ((1,), {"y": 2}, {"countdown": 5})
    assert add.subtask((1, 2)).args == (1, 2)


def test_signature_from_a_name_or_a_dict(app, add):
    by_name = signature("proj.add", (1, 2), app=app)
    assert by_name.type is add
    data = orjson.loads(orjson.dumps(add.s(1, 2).set(queue="q")))
    back = signature(data, app=app)
    assert isinstance(back, Signature)
    assert (back.args, back.options, back.type) == ((1, 2), {"queue": "q"}, add)
    assert maybe_signature(None) is None
    assert maybe_signature(back) is back
    assert maybe_signature(data, app=app) == back
    with pytest.raises(TypeError):
        maybe_signature(42)  # type: ignore[arg-type]


def test_an_unknown_task_name_is_not_registered(app):
    with pytest.raises(NotRegisteredError):
        signature("nope", app=app).type  # noqa: B018


def test_partial_arguments_come_first_and_kwargs_merge(add):
    sig = add.s(2, z=1)
    clone = sig.clone((10,), {"k": 2}, queue="q")
    assert (clone.args, clone.kwargs, clone.options) == ((10, 2), {"z": 1, "k": 2}, {"queue": "q"})
    assert (sig.args, sig.kwargs, sig.options) == ((2,), {"z": 1}, {})  # unchanged


def test_an_immutable_signature_keeps_its_arguments(add):
    sig = add.si(1, 2)
    assert sig.clone((10,), {"k": 2}).args == (1, 2)
    assert sig() == 3


def test_set_link_link_error_and_on_error(add):
    sig = add.s(1, 2)
    assert sig.set(queue="q", countdown=3) is sig
    assert sig.options == {"queue": "q", "countdown": 3}
    callback, errback = add.s(10), add.si(0, 0)
    assert sig.link(callback) is callback
    assert sig.link(callback) is callback  # once
    assert sig.link_error(errback) is errback
    assert sig.on_error(add.s(5)) is sig
    assert sig.options["link"] == [callback]
    assert sig.options["link_error"] == [errback, add.s(5)]
    assert sig.set(immutable=True).immutable


def test_freeze_assigns_the_task_id_once(add):
    sig = add.s(1, 2)
    result = sig.freeze()
    assert isinstance(result, AsyncResult)
    assert sig.id == result.id == sig.options["task_id"]
    assert sig.freeze().id == result.id
    assert add.s(1, 2).freeze("mine").id == "mine"


def test_apply_async_sends_with_the_frozen_id_and_the_options(app, add):
    sig = add.s(2).set(queue="other", priority=3)
    frozen = sig.freeze()
    result = sig.apply_async((1,))
    assert result.id == frozen.id
    [message] = fetched(app, "other")
    assert (message.id, message.args, message.priority) == (frozen.id, [1, 2], 3)


def test_delay_and_an_unregistered_task_name_are_sent_by_name(app):
    result = signature("elsewhere.task", (1,), app=app).delay(2)
    [message] = fetched(app)
    assert (message.task, message.args, message.id) == ("elsewhere.task", [2, 1], result.id)


def test_apply_runs_here_and_calling_runs_the_function(add):
    assert add.s(2).apply((1,)).get() == 3
    assert add.s(2)(5) == 7


def test_pickle_and_deepcopy_keep_the_signature(add):
    sig = add.s(1, 2).set(queue="q")
    assert pickle.loads(pickle.dumps(sig)) == sig
    copied = copy.deepcopy(sig)
    assert copied == sig and isinstance(copied, Signature)
    copied.options["queue"] = "other"
    assert sig.options["queue"] == "q"


def test_pipe_makes_a_chain(add):
    made = add.s(1, 2) | add.s(3) | add.s(4)
    assert isinstance(made, chain)
    assert [step.args for step in made.tasks] == [(1, 2), (3,), (4,)]


def test_a_signature_without_an_app_says_so():
    with pytest.raises(ConfigurationError, match="no app"):
        signature("x").app  # noqa: B018


def test_repr_reads_like_the_call(add):
    assert repr(add.s(1, y=2)) == "proj.add(1, y=2)"


def test_the_constructor_takes_celerys_arguments_in_celerys_order(app, add):
    sig = Signature("proj.add", (1,), {"y": 2}, {"queue": "q"}, add, None, True, app)
    assert (sig.type, sig.immutable, sig.options, sig.app) == (add, True, {"queue": "q"}, app)
