"""
How a setting of the daemon is declared: :func:`setting` makes an attrs
field that carries a :class:`Setting` (and perhaps a :class:`Cli`) in its
metadata; :func:`declarations` collects them from a class of such fields
(``config.Config``), and every table of settings is derived from that.

This module depends only on the standard library and attrs.
"""

from __future__ import annotations

import textwrap
from typing import Any, Callable, Mapping

import attrs


@attrs.frozen
class Cli:
    """
    A setting's ``twistd reduct`` option, named after its field with dashes
    (``data_path`` is ``--data-path``; see :func:`option_name`).

    :ivar help: its text in ``--help``, to which ``tap.py`` adds
        ``[default: ...; env RS_...]``.
    :ivar short: a one-letter synonym (``-d``), if any.
    :ivar shown_default: the default as ``--help`` shows it, where the value
        itself would not say enough; otherwise the default value (``none``
        when empty).
    """

    help: str
    short: str | None = None
    shown_default: str | None = None


@attrs.frozen
class Setting:
    """
    How one :class:`~reduct_twisted.config.Config` field is given; made by
    :func:`setting`, kept in the field's metadata.

    :ivar parse: turns the raw value of one layer into the field's value, or
        raises ``ValueError`` (see ``config_values.py``).
    :ivar env: the environment variable.
    :ivar doc: what the setting means, for ``Config``'s docstring.
    :ivar env_alias: an older variable, read when ``env`` is unset or empty.
    :ivar cli: the command-line option, or ``None`` for none.
    :ivar repeated: the value is a list of items: one per line in the ini
        file, one per option on the command line (``--listen a --listen
        b``); from the environment ``parse`` gets the string.
    :ivar secret: the value never appears in ``Config``'s repr.
    """

    parse: Callable[[Any], Any]
    env: str
    doc: str
    env_alias: str | None = None
    cli: Cli | None = None
    repeated: bool = False
    secret: bool = False


_SETTING = "reduct_twisted.config_setting.Setting"


def _masked(value: Any) -> str:
    return "'***'" if value else "None"


def setting(
    default: Any,
    parse: Callable[[Any], Any],
    *,
    env: str,
    doc: str,
    env_alias: str | None = None,
    cli: Cli | None = None,
    repeated: bool = False,
    secret: bool = False,
    converter: Callable[[Any], Any] | None = None,
) -> Any:
    """
    Declare a ``Config`` field and how it is given (see :class:`Setting`
    for the keyword arguments).

    :param default: the built-in default.
    :param converter: applied to every value the field is given, the default
        and direct ``Config(...)`` arguments included.
    :return: an attrs field, typed ``Any`` so that the annotation in the
        class body is the field's type for readers and type checkers.
    """
    declared = Setting(parse, env, doc, env_alias, cli, repeated, secret)
    return attrs.field(
        default=default,
        converter=converter,
        repr=_masked if secret else True,
        metadata={_SETTING: declared},
    )


def declarations(cls: type) -> dict[str, Setting]:
    """
    :return: field name to its :class:`Setting`, in field order.
    :raises TypeError: a field of ``cls`` is not made by :func:`setting`, or
        two fields name the same environment variable.
    """
    found: dict[str, Setting] = {}
    for field in attrs.fields(cls):
        declared = field.metadata.get(_SETTING)
        if not isinstance(declared, Setting):
            raise TypeError(f"{cls.__name__}.{field.name} is not declared with setting()")
        found[field.name] = declared
    seen: set[str] = set()
    for declared in found.values():
        for env in filter(None, (declared.env, declared.env_alias)):
            if env in seen:
                raise TypeError(f"{cls.__name__}: {env} is declared twice")
            seen.add(env)
    return found


def document(cls: type, settings: Mapping[str, Setting]) -> None:
    """
    Append ``:ivar name: doc (``RS_NAME``)`` for each of ``settings`` to the
    docstring of ``cls``.
    """
    items = []
    for name, declared in settings.items():
        text = f":ivar {name}: {declared.doc} (``{declared.env}``)"
        items.append(textwrap.fill(text, 78, initial_indent="    ", subsequent_indent="        "))
    cls.__doc__ = f"{(cls.__doc__ or '').rstrip()}\n\n" + "\n".join(items) + "\n    "


def option_name(field: str) -> str:
    """The command-line option of ``field``, without dashes in front: ``data-path``."""
    return field.replace("_", "-")
