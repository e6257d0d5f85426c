"""
Extension specs of a query (spec 1.20 §6.3, old §3.12): the ``ext`` field of
a ``QueryEntry`` or the ``#ext`` directive of its ``when`` (which wins when
both are given, as upstream).

This server has no extensions, so every spec that names one is refused with
upstream's text for an unknown extension; the checks before that follow
upstream's order, so a malformed spec gets the text of what is wrong with
it.  Either form may be an object (one extension; an object naming several
extensions and no ``when`` is a pipeline of one step per name, ``[1.20]``)
or an array of one-extension objects (a pipeline, ``[1.20]``); a step may
carry its own ``when``, which must compile.  ``null``/absent means no
extension.

Every text names the query id, which the caller has already taken from the
counter (the id is used up, as upstream).
"""

from reduct_twisted.errors import UnprocessableEntity
from reduct_twisted.storage.when import compile_condition


def _steps(spec, qid: int) -> list:
    """:return: the pipeline steps of ``spec``, each a dict."""
    if isinstance(spec, dict):
        names = [k for k in spec if k != "when"]
        if len(names) > 1 and "when" not in spec:
            return [{name: spec[name]} for name in names]
        return [spec]
    if isinstance(spec, list):
        if not spec:
            raise UnprocessableEntity(f"Extension name is not found in query id={qid}")
        for step in spec:
            if not isinstance(step, dict):
                raise UnprocessableEntity(
                    f"Each '#ext' pipeline step must be a JSON object in query id={qid}"
                )
        return spec
    raise UnprocessableEntity(
        "Extension parameters must be a JSON object or an array of JSON objects "
        f"in query id={qid}"
    )


def check_extensions(ext, condition, qid: int) -> None:
    """
    Refuse a query that asks for an extension.

    :param ext: the query's ``ext`` field (None if absent or ``null``).
    :param condition: the query's compiled ``when`` (a ``Condition``) or
        None; its ``ext`` is the ``#ext`` directive, or None.
    :param qid: the id the query was given.
    :raises UnprocessableEntity: ``Unknown extension '<name>' in query
        id=<id>`` (``… at step <i>`` in a pipeline of several steps), or
        the texts of a malformed spec: ``Extension name is not found in
        query id=<id>`` (``{}``, ``[]``, a step with only ``when``),
        ``Multiple extensions are not supported in query id=<id>``,
        ``Each '#ext' pipeline step must be a JSON object in query
        id=<id>``, ``Each '#ext' pipeline step must contain exactly one
        extension in query id=<id>``, ``Extension parameters must be a JSON
        object or an array of JSON objects in query id=<id>``; or the 422
        of a step's ``when``.
    """
    directive = None if condition is None else condition.ext
    spec = ext if directive is None else directive
    if spec is None:
        return
    steps = _steps(spec, qid)
    for index, step in enumerate(steps):
        if "when" in step:
            compile_condition(step["when"], True)
        names = [k for k in step if k != "when"]
        if not names:
            raise UnprocessableEntity(f"Extension name is not found in query id={qid}")
        if len(names) > 1:
            if len(steps) == 1:
                raise UnprocessableEntity(
                    f"Multiple extensions are not supported in query id={qid}"
                )
            raise UnprocessableEntity(
                "Each '#ext' pipeline step must contain exactly one extension "
                f"in query id={qid}"
            )
        at = "" if len(steps) == 1 else f" at step {index}"
        raise UnprocessableEntity(f"Unknown extension '{names[0]}' in query id={qid}{at}")
