# -*- test-case-name: tests.unit.test_lifecycle_manager -*-
"""
The lifecycle policies of this daemon (spec 1.20 §7): the registry behind
``/api/v1/lifecycles`` and the service that runs their loops.

Policies made through the API are kept in ``<data_path>/.lifecycles``
(``registry_file.py``; replaced atomically: a crash leaves the old file or
the new one)::

    {"format": 1,
     "lifecycles": [{"name": "old-data",
                     "settings": {"type": "delete", "bucket": "cams", …}}],
     "provisioned_modes": {"from-env": "dry_run"}}

Upstream's file, a bare JSON list of ``{name, settings}``, is read too.  A
file of a newer format is left alone: nothing is loaded from it and nothing
is written over it (changes are refused with a 500) until it is moved away.

Provisioned policies (``RS_LIFECYCLE_<ID>_*``) come from the environment
at every start and live in memory only; one hides a stored policy of the
same name, which stays in the file.  They cannot be changed or removed
through the API, except for their mode (``PATCH …/mode``), which is kept in
``provisioned_modes``: without ``RS_LIFECYCLE_<ID>_MODE`` a policy
provisioned again keeps the mode it had.
"""

from __future__ import annotations

import os

import attr
from twisted.application.service import Service
from twisted.internet.defer import DeferredList
from twisted.logger import Logger

from reduct_twisted.errors import Conflict, NotFound, ReductError, UnprocessableEntity
from reduct_twisted.lifecycle.policy import Policy, Runtime
from reduct_twisted.lifecycle.settings import ENABLED, MODES, from_stored, validate
from reduct_twisted.persist import remove_temporaries
from reduct_twisted.registry_file import RegistryFile
from reduct_twisted.storage.disk.layout import LIFECYCLES_FILE
from reduct_twisted.storage.settings import NAME_ERROR, is_valid_name

log = Logger()

#: 1: ``{"format", "lifecycles", "provisioned_modes"}``; 0: upstream's bare list.
FILE_FORMAT = 1


class LifecycleManager(Service):
    """
    :param engine: the open ``StorageEngine``.
    :param clock: schedules the runs (``seconds``, ``callLater``).
    :param data_path: the data directory.
    :param events: the ``ISystemEvents`` runs are reported to.
    :param reactor: where a run's slices are scheduled; ``clock`` by default.
    :param persist: ``persist(path, data) -> Deferred|None`` writes the file
        (``SnapshotWriter.write`` in the daemon); at once by default.
    :ivar runtime: what the policies run with (its ``clock`` may be
        replaced by an in-process test before policies exist).
    """

    name = "lifecycles"

    def __init__(self, engine, clock, data_path: str, events, *, reactor=None,
                 persist=None) -> None:
        self.engine = engine
        self.data_path = data_path
        self.runtime = Runtime(engine, clock, reactor if reactor is not None else clock, events)
        self._file = RegistryFile(os.path.join(data_path, LIFECYCLES_FILE), "lifecycles",
                                  FILE_FORMAT, MODES, "lifecycle policy", persist=persist,
                                  bare_list=0)
        self._policies: dict = {}
        self._hidden: dict = {}
        self._provisioned_modes: dict = {}
        remove_temporaries(self.path)  # what a crash while saving left
        self._load()

    # -- loading and saving ------------------------------------------------------

    @property
    def path(self) -> str:
        return self._file.path

    def _load(self) -> None:
        items, self._provisioned_modes = self._file.load()
        for item in items:
            try:
                name, settings = from_stored(item)
                _ = (settings.older_than_us, settings.interval_us)  # valid durations
            except (ReductError, KeyError, TypeError) as exc:
                log.error("Skipping a lifecycle policy of {path}: {reason}", path=self.path,
                          reason=getattr(exc, "message", repr(exc)))
                continue
            self._add(name, settings)

    def _save(self):
        """Write the file; :return: a Deferred firing once it is on disk."""
        items = dict(self._hidden)
        for name, policy in self._policies.items():
            if not policy.provisioned:
                items[name] = policy.settings.to_json()
        return self._file.save(items, self._provisioned_modes)

    # -- policies ------------------------------------------------------------------

    def _add(self, name: str, settings, provisioned: bool = False) -> Policy:
        policy = Policy(name, settings, self.runtime, provisioned)
        self._policies[name] = policy
        if self.running:
            policy.start()
        return policy

    def _policy(self, name: str) -> Policy:
        policy = self._policies.get(name)
        if policy is None:
            raise NotFound(f"Lifecycle '{name}' does not exist")
        return policy

    # -- the API -----------------------------------------------------------------------

    def list(self) -> list:
        """:return: the ``LifecycleInfo`` of each policy, by name."""
        return [self._policies[n].info(bool(self.running)) for n in sorted(self._policies)]

    def get(self, name: str) -> dict:
        """:return: the ``GET /lifecycles/:name`` answer. :raises NotFound:"""
        policy = self._policy(name)
        return {"info": policy.info(bool(self.running)), "settings": policy.settings.to_json()}

    def create(self, name: str, settings):
        """
        Create a policy (``POST``).

        :param settings: the parsed ``LifecycleSettings`` (``parse_settings``).
        :return: a Deferred firing once the file is saved.
        :raises ReductError: 409 exists, 422 a name that is not a valid
            bucket name, 404/422 invalid settings (spec §7.2).
        """
        if name in self._policies:
            raise Conflict(f"Lifecycle '{name}' already exists")
        if not is_valid_name(name):
            # (as replications: the name becomes a $system entry segment)
            raise UnprocessableEntity(NAME_ERROR)
        validate(name, settings, self.engine.has_bucket)
        self._hidden.pop(name, None)
        self._add(name, settings)
        return self._save()

    def update(self, name: str, settings):
        """
        Replace the settings of a policy (``PUT``); its timer restarts.

        :return: a Deferred firing once the file is saved.
        :raises ReductError: 404 missing, 409 provisioned, 404/422 invalid.
        """
        policy = self._policy(name)
        if policy.provisioned:
            raise Conflict(f"Can't update provisioned lifecycle '{name}'")
        validate(name, settings, self.engine.has_bucket)
        policy.replace(settings)
        return self._save()

    def set_mode(self, name: str, mode: str):
        """
        Change only the mode (``PATCH …/mode``), provisioned policies included.

        :return: a Deferred firing once the file is saved.
        :raises NotFound: no such policy.
        """
        policy = self._policy(name)
        policy.set_mode(mode)
        if policy.provisioned:
            self._provisioned_modes[name] = mode
        return self._save()

    def remove(self, name: str):
        """
        Remove a policy (``DELETE``); a run in progress is cancelled.

        :return: a Deferred firing once the file is saved.
        :raises ReductError: 404 missing, 409 provisioned.
        """
        policy = self._policy(name)
        if policy.provisioned:
            raise Conflict(f"Can't remove provisioned lifecycle '{name}'")
        policy.stop()
        del self._policies[name]
        return self._save()

    def provision(self, lifecycles) -> None:
        """
        Create or overwrite the provisioned policies; log, never raise, what
        is invalid (spec 1.20 §7.4).

        :param lifecycles: ``ProvisionedLifecycle`` items (``name``,
            ``settings`` (``LifecycleSettings``), ``mode_given``: whether
            ``_MODE`` was set; without it the policy keeps the mode it had
            when last provisioned or set by ``PATCH …/mode``, else that of
            the stored policy it hides, else ``enabled``).
        """
        before = dict(self._provisioned_modes)
        for item in lifecycles:
            settings = item.settings
            try:
                validate(item.name, settings, self.engine.has_bucket)
            except ReductError as exc:
                log.error("Cannot provision lifecycle {name}: {reason}",
                          name=item.name, reason=exc.message)
                continue
            policy = self._policies.get(item.name)
            if not item.mode_given:
                kept = self._provisioned_modes.get(item.name)
                if kept is None and policy is not None:
                    kept = policy.settings.mode
                settings = attr.evolve(settings, mode=kept or ENABLED)
            self._provisioned_modes[item.name] = settings.mode
            if policy is None:
                self._add(item.name, settings, provisioned=True)
            else:
                if not policy.provisioned:
                    self._hidden[item.name] = policy.settings.to_json()
                policy.provisioned = True
                policy.replace(settings)
            log.info("Provisioned lifecycle {name}", name=item.name)
        if self._provisioned_modes != before:
            # (a failure is logged by _save; the modes stay in memory)
            self._save().addErrback(lambda _: None)

    # -- the service -----------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        for policy in self._policies.values():
            policy.start()

    def stopService(self):
        """:return: a Deferred firing once no run is in progress any more."""
        super().stopService()
        return DeferredList([policy.stop() for policy in self._policies.values()])
