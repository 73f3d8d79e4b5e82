"""celeriac.states: Celery's state names and sets, importable from the old place too."""

from __future__ import annotations

from celeriac import hooks, states


def test_the_state_names_are_celerys_strings():
    names = [
        "PENDING",
        "RECEIVED",
        "STARTED",
        "SUCCESS",
        "FAILURE",
        "REVOKED",
        "REJECTED",
        "RETRY",
        "IGNORED",
    ]
    assert [getattr(states, name) for name in names] == names


def test_the_state_sets_match_celery_states():
    assert {"SUCCESS", "FAILURE", "REVOKED"} == states.READY_STATES
    assert {"PENDING", "RECEIVED", "STARTED", "REJECTED", "RETRY"} == states.UNREADY_STATES
    assert {"RETRY", "FAILURE", "REVOKED"} == states.EXCEPTION_STATES
    assert {"FAILURE", "REVOKED"} == states.PROPAGATE_STATES
    assert states.READY_STATES.isdisjoint(states.UNREADY_STATES)


def test_hooks_still_exports_the_states_it_defined_before():
    for name in ("PENDING", "STARTED", "RETRY", "SUCCESS", "FAILURE", "REVOKED", "IGNORED", "REJECTED"):
        assert getattr(hooks, name) == getattr(states, name)
    assert hooks.READY_STATES is states.READY_STATES


def test_request_and_its_functions_are_importable_from_task_and_context():
    from celeriac import context, task

    assert task.Request is context.Request
    assert task.current_request is context.current_request
    assert (task.push_request, task.pop_request) == (context.push_request, context.pop_request)
