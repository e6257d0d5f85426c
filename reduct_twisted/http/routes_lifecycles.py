# -*- test-case-name: tests.integration.test_lifecycles -*-
"""
The lifecycle API (spec 1.20 §7.1).  Each handler takes the ``ReductAPI``
first, whose ``lifecycles`` is the
:class:`~reduct_twisted.lifecycle.manager.LifecycleManager`; the rows are
in ``api.py``.

Every route needs full access (the table's column).  A body is parsed
before the token is looked at: one that is not UTF-8 is ``422 "Invalid
body"``, anything else malformed ``422 "Invalid JSON: …"``; the values are
checked after (``lifecycle/settings.py``).  Changes are answered once the
lifecycle file holds them.
"""

from reduct_twisted.errors import UnprocessableEntity
from reduct_twisted.http.headers import parse_json_body, respond_empty, respond_json
from reduct_twisted.lifecycle.settings import parse_mode, parse_settings


def _body(request):
    raw = request.content.getvalue()
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UnprocessableEntity("Invalid body") from None
    return parse_json_body(raw)


def settings_body(request):
    """The body of ``POST``/``PUT``, parsed before the token: ``LifecycleSettings``."""
    return parse_settings(_body(request))


def mode_body(request) -> str:
    """The body of ``PATCH …/mode``, parsed before the token: its mode."""
    return parse_mode(_body(request))


def list_lifecycles(api, request):
    return respond_json(request, {"lifecycles": api.lifecycles.list()})


def get_lifecycle(api, request, name):
    return respond_json(request, api.lifecycles.get(name))


def create_lifecycle(api, request, name, settings):
    return api.lifecycles.create(name, settings).addCallback(lambda _: respond_empty(request))


def update_lifecycle(api, request, name, settings):
    return api.lifecycles.update(name, settings).addCallback(lambda _: respond_empty(request))


def set_lifecycle_mode(api, request, name, mode):
    """``PATCH /lifecycles/:name/mode``: only the mode changes (provisioned too)."""
    return api.lifecycles.set_mode(name, mode).addCallback(lambda _: respond_empty(request))


def remove_lifecycle(api, request, name):
    return api.lifecycles.remove(name).addCallback(lambda _: respond_empty(request))
