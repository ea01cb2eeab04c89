"""A setting named from a fixed list (``--push-privacy``, ``--push-scope``, the admin's
``push privacy``): one reading rule, any case and spacing, and one error text. And a
number option's reading rule (L{finite_float})."""

import math


def one_of(text, choices, what):
    """The entry of ``choices`` named by ``text`` (any case, outer spaces ignored), or
    ValueError saying ``what`` must be one of them."""
    name = text.strip().lower() if isinstance(text, str) else text
    if name not in choices:
        raise ValueError("%s must be one of %s, not %r" % (what, ", ".join(choices), text))
    return name


def finite_float(text):
    """The float of a number option (seconds, a rate): ValueError for ``nan`` and
    ``inf``, which Python's float() reads but no timer or rate can use."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("must be a finite number, not %r" % (text,))
    return value
