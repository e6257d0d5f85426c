"""
The newest reduct-py (1.21.x) and lifecycle policies (spec 1.20 §7).

Usage: python reduct_py_lifecycles.py URL [--bucket NAME] [--timeout S] [--token T]

``create_lifecycle`` / ``update_lifecycle`` send the whole
``LifecycleSettings`` model: ``"interval": null`` when the caller set none
(spec §10.4 f: the server's default ``3600s``) and 1.21's
``processing_interval`` (§10.4 g: ignored, not echoed).
``get_lifecycles`` / ``get_lifecycle_detail`` parse ``LifecycleInfo`` (its
``last_run`` an RFC 3339 time or null) and the echoed settings;
``set_lifecycle_mode`` sends ``PATCH …/mode``; ``delete_lifecycle`` removes.

The pytest side has made a policy ``<bucket>-ran`` run once before this
script starts (it drives the server's lifecycle clock): its ``last_run``
must parse as an aware datetime close to now.
"""

from datetime import datetime, timezone

from _harness import eq, expect_error, run_with_client
from reduct import LifecycleMode, LifecycleSettings, LifecycleType, ReductError


async def exercise(checks, args, client):
    bucket = args.bucket
    name = bucket + "-policy"
    await client.create_bucket(bucket, exist_ok=True)

    await client.create_lifecycle(name, LifecycleSettings(
        type=LifecycleType.DELETE, bucket=bucket, entries=["cam-*"], older_than="7d",
        when={"&kind": {"$eq": "raw"}},
    ))
    detail = await client.get_lifecycle_detail(name)
    eq((detail.info.name, detail.info.type, detail.info.mode, detail.info.is_provisioned,
        detail.info.is_running, detail.info.last_run),
       (name, LifecycleType.DELETE, LifecycleMode.ENABLED, False, True, None), "info")
    eq((detail.settings.bucket, detail.settings.entries, detail.settings.older_than,
        detail.settings.interval, detail.settings.when, detail.settings.mode),
       (bucket, ["cam-*"], "7d", "3600s", {"&kind": {"$eq": "raw"}}, LifecycleMode.ENABLED),
       "echoed settings (interval null is the default)")
    body, _ = await client._http.request_all("GET", f"/lifecycles/{name}")
    if b"processing_interval" in body:
        raise AssertionError(f"1.21-dev setting echoed: {body!r}")
    checks.ok("create-and-get")

    await expect_error(
        client.create_lifecycle(name, LifecycleSettings(bucket=bucket, older_than="7d")),
        ReductError, 409, f"Lifecycle '{name}' already exists",
    )
    await expect_error(
        client.create_lifecycle(name + "-x", LifecycleSettings(bucket=bucket,
                                                               older_than="30days")),
        ReductError, 422, f"Invalid lifecycle older_than '30days': [UnprocessableEntity] "
                          "Invalid duration unit: days",
    )
    await expect_error(
        client.create_lifecycle(name + "-x", LifecycleSettings(bucket=bucket + "-none",
                                                               older_than="7d")),
        ReductError, 404, f"Bucket '{bucket}-none' for lifecycle '{name}-x' does not exist",
    )
    checks.ok("create-errors")

    await client.update_lifecycle(name, LifecycleSettings(
        type=LifecycleType.COMPRESS, bucket=bucket, older_than="1d 12h", interval="30m",
        mode=LifecycleMode.DRY_RUN, processing_interval="1h",
    ))
    detail = await client.get_lifecycle_detail(name)
    eq((detail.info.type, detail.info.mode, detail.settings.older_than,
        detail.settings.interval, detail.settings.entries, detail.settings.when),
       (LifecycleType.COMPRESS, LifecycleMode.DRY_RUN, "1d 12h", "30m", [], None), "update")
    checks.ok("update")

    await client.set_lifecycle_mode(name, LifecycleMode.DISABLED)
    listed = {info.name: info for info in await client.get_lifecycles()}
    eq(listed[name].mode, LifecycleMode.DISABLED, "mode in the list")
    await client.set_lifecycle_mode(name, "enabled")
    eq((await client.get_lifecycle_detail(name)).settings.mode, LifecycleMode.ENABLED,
       "mode in the settings")
    checks.ok("set-mode")

    ran = listed.get(bucket + "-ran")
    if ran is None:
        raise AssertionError(f"policy {bucket}-ran missing: {sorted(listed)}")
    if not isinstance(ran.last_run, datetime) or ran.last_run.tzinfo is None:
        raise AssertionError(f"last_run not an aware datetime: {ran.last_run!r}")
    drift = abs((ran.last_run - datetime.now(timezone.utc)).total_seconds())
    if drift > 3600:
        raise AssertionError(f"last_run {ran.last_run} is {drift} s from now")
    checks.fact("last_run", ran.last_run.isoformat())
    checks.ok("last-run")

    await client.delete_lifecycle(name)
    await expect_error(client.get_lifecycle_detail(name), ReductError, 404,
                       f"Lifecycle '{name}' does not exist")
    await expect_error(client.delete_lifecycle(name), ReductError, 404,
                       f"Lifecycle '{name}' does not exist")
    await expect_error(client.set_lifecycle_mode(name, LifecycleMode.ENABLED), ReductError,
                       404, f"Lifecycle '{name}' does not exist")
    checks.ok("remove")


if __name__ == "__main__":
    run_with_client(exercise)
