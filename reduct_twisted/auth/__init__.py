"""
Who may do what: the access policy every route asks (``policy.py``), the
token store behind it (``tokens.py``) and the token values both use
(``model.py``).
"""
