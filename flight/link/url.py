"""Reading link URLs: query parameters checked by name and type, with messages that say the fix."""

import re
from collections.abc import Callable, Mapping
from typing import TypeVar
from urllib.parse import SplitResult, parse_qs, urlsplit, urlunsplit

from flight.link.base import LinkConfigError

T = TypeVar("T")


def query_params(url: str, parts: SplitResult, allowed: Mapping[str, str]) -> dict[str, str]:
    """The query of `url` as name -> value; each name at most once and one of `allowed`.

    `allowed` maps each parameter to a short description used in the error message.
    """
    try:
        values = parse_qs(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError as error:
        raise LinkConfigError(f"{url}: malformed query {parts.query!r}: {error}") from None
    params: dict[str, str] = {}
    for name, found in values.items():
        if name not in allowed:
            known = ", ".join(f"{key} ({what})" for key, what in allowed.items()) or "none"
            raise LinkConfigError(f"{url}: unknown parameter {name!r}; this link takes: {known}")
        if len(found) > 1:
            raise LinkConfigError(
                f"{url}: parameter {name!r} given {len(found)} times; give it once"
            )
        params[name] = found[0]
    return params


def convert(url: str, name: str, text: str, kind: Callable[[str], T], rule: str) -> T:
    """`kind(text)`, or LinkConfigError naming the parameter and the rule it breaks."""
    try:
        return kind(text)
    except ValueError:
        raise LinkConfigError(f"{url}: {name}={text!r} is not {rule}") from None


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError(text)
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0 or value == float("inf"):
        raise ValueError(text)
    return value


def redact(url: str) -> str:
    """`url` with its password (in the user part or as `password=`) replaced by ***."""
    parts = urlsplit(url)
    if parts.password is None and "password=" not in parts.query:
        return url  # unchanged: urlunsplit would also drop the "//" of an empty host
    netloc = parts.netloc
    if parts.password is not None:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.partition(':')[0]}:***@{host}"
    query = re.sub(r"(^|&)(password=)[^&]*", r"\1\2***", parts.query)
    return urlunsplit(parts._replace(netloc=netloc, query=query))
