# -*- test-case-name: tests.integration.test_api -*-
"""
Bucket routes (spec §3.1, §3.2, §3.8): read, create, update, remove and
rename a bucket.  Each handler takes the ``ReductAPI`` first; the table, with
who may call each route, is in ``api.py``.  ``get_bucket`` checks the token
itself: HEAD needs any token, GET read access.
"""

from reduct_twisted.auth.policy import Policy
from reduct_twisted.errors import NotFound
from reduct_twisted.http.authz import authorize
from reduct_twisted.http.headers import respond_empty, respond_json


def get_bucket(api, request, bucket):
    if request.method == b"HEAD":
        authorize(api, request, Policy.AUTHENTICATED)
        if not api.engine.has_bucket(bucket):
            raise NotFound(f"Bucket '{bucket}' is not found")
        return respond_empty(request)
    authorize(api, request, Policy.READ, bucket)
    return respond_json(request, api.engine.bucket_info(bucket))


def create_bucket(api, request, bucket, settings):
    api.engine.create_bucket(bucket, settings)
    return api.durable(respond_empty, request)


def update_bucket(api, request, bucket, settings):
    api.engine.update_bucket(bucket, settings)
    return api.durable(respond_empty, request)


def remove_bucket(api, request, bucket):
    api.engine.remove_bucket(bucket)
    api.auth.forget_bucket(bucket)
    return api.when_saved(api.durable, respond_empty, request)


def rename_bucket(api, request, bucket, new_name):
    api.engine.rename_bucket(bucket, new_name)
    api.auth.rename_bucket(bucket, new_name)
    return api.when_saved(api.durable, respond_empty, request)
