"""What the database never stores and nothing ever prints: secrets inside a user's strings.

`mask` keeps a line readable (its command words, option names, variable names, hosts) and
replaces what may be a credential with MASK: every value after `=`, the value of an option
whose name says password/token/secret/key, a URL's password, and long random-looking words.
"""

from __future__ import annotations

import re

MASK = "***"

_URL_PASSWORD = re.compile(r"(://[^\s:/@]*):[^\s@/]*@")
# NAME=value, the value quoted or up to the next blank or shell operator
_ASSIGNMENT = re.compile(r"""(?P<name>[^\s=;&|'"]+=)(?P<value>"[^"]*"?|'[^']*'?|[^\s;&|]+)""")
_SECRET_OPTION = re.compile(
    r"""(?P<name>-{1,2}[\w-]*(?:pass|token|secret|key|auth|cred)[\w-]*)(?P<sep>\s+)"""
    r"""(?P<value>"[^"]*"?|'[^']*'?|[^\s;&|]+)""", re.IGNORECASE)
# letters and digits mixed, long, and no path: an API token, a hash, a key
_RANDOM_WORD = re.compile(r"(?<![\w/.-])(?=[\w+=-]*\d)(?=[\w+=-]*[A-Za-z])[\w+=-]{24,}(?![\w/.])")


def mask(text: str | None) -> str | None:
    """`text` with anything that may be a secret replaced by MASK (None stays None)."""
    if not text:
        return text
    text = _URL_PASSWORD.sub(rf"\1:{MASK}@", text)
    text = _ASSIGNMENT.sub(lambda m: m["name"] + MASK, text)
    text = _SECRET_OPTION.sub(lambda m: m["name"] + m["sep"] + MASK, text)
    return _RANDOM_WORD.sub(MASK, text)


def mask_url(url: str) -> str:
    """A database URL as it may be shown, even one SQLAlchemy cannot parse."""
    return _URL_PASSWORD.sub(rf"\1:{MASK}@", url)
