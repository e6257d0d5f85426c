# -*- test-case-name: tests.integration.test_edits -*-
"""
Entry routes beyond single records (spec §3.5–§3.10): queries
(``…/q``), label updates, removals of records, of a query's records and of
the entry, and entry renames.  Each handler takes the ``ReductAPI`` first;
the table, with who may call each route, is in ``api.py``.  ``POST …/q``
checks the token itself: its body says whether it reads or removes.
"""

from reduct_twisted.auth.policy import Policy
from reduct_twisted.errors import NotFound
from reduct_twisted.http.authz import authorize
from reduct_twisted.http.headers import (
    parse_json_body,
    record_labels,
    respond_empty,
    respond_json,
    timestamp_param,
)
from reduct_twisted.http.params import (
    delete_query_kwargs,
    json_query,
    query_kwargs,
    remove_kwargs,
)
from reduct_twisted.http.routes_records import answer_batch_errors, drive
from reduct_twisted.storage.meta import refuse_entry_removal
from reduct_twisted.wire import parse_batch_headers, time_headers

# -- queries (spec §3.7, §3.10) ---------------------------------------------------------


def query(api, request, bucket, entry):
    qid = api.engine.create_query(bucket, entry, **query_kwargs(request.args))
    return respond_json(request, {"id": qid})


def post_query(api, request, bucket, entry):
    """
    ``POST …/q`` (spec §3.10): QUERY creates a query as ``GET …/q``
    does; REMOVE removes the records it selects (§3.7).  A malformed
    body is refused before the token is looked at.
    """
    query_type, kwargs = json_query(parse_json_body(request.content.getvalue()))
    if query_type == "QUERY":
        authorize(api, request, Policy.READ, bucket)
        qid = api.engine.create_query(bucket, entry, **kwargs)
        return respond_json(request, {"id": qid})
    authorize(api, request, Policy.WRITE, bucket)
    return _remove_by_query(api, request, bucket, entry, remove_kwargs(kwargs))


def remove_query(api, request, bucket, entry):
    """``DELETE …/q`` (spec §3.7; deprecated in 1.13, still served)."""
    return _remove_by_query(api, request, bucket, entry, delete_query_kwargs(request.args))


def _remove_by_query(api, request, bucket, entry, kwargs):
    removal = api.engine.remove_records(bucket, entry, **kwargs)
    d = drive(api.reactor, removal.step)
    return d.addCallback(
        lambda count: api.durable(respond_json, request, {"removed_records": count})
    )


# -- label updates, removals, renames (spec §3.5–§3.8) ---------------------------------


def update_record(api, request, bucket, entry):
    ts = timestamp_param(request.args)
    labels = record_labels(request.requestHeaders.getAllRawHeaders())
    return _answer_single(api, api.engine.update_labels(bucket, entry, {ts: labels}), request)


def update_batch(api, request, bucket, entry):
    records = parse_batch_headers(request.requestHeaders.getAllRawHeaders(), at_labels=True)
    errors = api.engine.update_labels(bucket, entry, {r.ts: r.labels for r in records})
    return answer_batch_errors(errors, api, request)


def remove_entry(api, request, bucket, entry):
    """
    Without parameters the whole entry and its descendants (§3.5, 1.20
    §2.4), else the record ``ts`` (§3.7).  An attachment entry is refused
    before the token is looked at, as upstream (1.20 §3.1).
    """
    if not request.args:
        refuse_entry_removal(entry)
    authorize(api, request, Policy.WRITE, bucket)
    if not request.args:
        api.engine.remove_entry(bucket, entry)
        return api.durable(respond_empty, request)
    ts = timestamp_param(request.args)
    return _answer_single(api, api.engine.remove_stamps(bucket, entry, [ts]), request)


def remove_batch(api, request, bucket, entry):
    stamps = [ts for ts, _ in time_headers(request.requestHeaders.getAllRawHeaders())]
    return answer_batch_errors(api.engine.remove_stamps(bucket, entry, stamps), api, request)


def _answer_single(api, errors, request):
    # A one-record change: its error, if any, is the answer.
    for error in errors.values():
        raise error
    return api.durable(respond_empty, request)


def rename_entry(api, request, bucket, entry, new_name):
    api.engine.rename_entry(bucket, entry, new_name)
    return api.durable(respond_empty, request)


def no_such_put(api, request, bucket, entry):
    """Any ``PUT /b/<bucket>/<entry path>`` but a rename (spec 1.20 §2.2)."""
    raise NotFound("Not found")
