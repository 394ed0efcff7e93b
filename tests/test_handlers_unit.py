"""The scope check our handlers share gives the answers of JupyterHub's needs_scope."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from tornado import web

from jupyterhub_ext.handlers._common import check_custom_scope, needs_custom_scope

SCOPE = "custom:jupyterhub-ext:manage-volumes"


class FakeHandler:
    """Only what the check reads: the caller and the scopes it holds."""

    def __init__(self, held: set[str], user: object = SimpleNamespace(name="eve")) -> None:
        self.current_user = user
        self.held = held
        self.parsed_scopes = {s.split("!")[0]: {} for s in held}
        self.refusals: list[tuple] = []

    def has_scope(self, scope: str) -> bool:
        return scope in self.held or scope.split("!")[0] in self.held

    def audit_refusal(self, reason: str, *args: str) -> None:
        self.refusals.append((reason, *args))

    @needs_custom_scope(SCOPE, per_user=True)
    async def get(self, user_name: str) -> str:
        return f"listed {user_name}"


def status(handler: FakeHandler, **kwargs: str) -> int:
    try:
        check_custom_scope(handler, SCOPE, **kwargs)
    except web.HTTPError as e:
        return e.status_code
    return 200


def test_answers_match_needs_scope():
    assert status(FakeHandler(set(), user=None)) == 403  # no credentials
    assert status(FakeHandler(set()), user_name="alice") == 403  # no such scope at all
    # held on someone else only: 404, so a refused caller learns not who exists
    assert status(FakeHandler({f"{SCOPE}!user=eve"}), user_name="alice") == 404
    assert status(FakeHandler({f"{SCOPE}!user=alice"}), user_name="alice") == 200
    assert status(FakeHandler({SCOPE}), user_name="alice") == 200
    assert status(FakeHandler({SCOPE})) == 200
    assert status(FakeHandler(set())) == 403


async def test_decorator_checks_before_the_verb_and_audits_refusals():
    allowed = FakeHandler({f"{SCOPE}!user=alice"})
    assert await allowed.get("alice") == "listed alice"
    assert allowed.refusals == []

    eve = FakeHandler({f"{SCOPE}!user=eve"})
    with pytest.raises(web.HTTPError) as e:
        await eve.get("alice")
    assert e.value.status_code == 404
    assert eve.refusals == [(f"no {SCOPE} scope", "alice")]

    anonymous = FakeHandler(set(), user=None)
    with pytest.raises(web.HTTPError):
        await anonymous.get("alice")
    assert anonymous.refusals == []  # nobody to name in the audit log
