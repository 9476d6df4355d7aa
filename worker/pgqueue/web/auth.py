"""The console's safety model: read-only unless started with a write token, and then only for a
browser that logged in with it; every write is a POST carrying the session's CSRF token.

The session lives in a signed cookie (Starlette's SessionMiddleware: HttpOnly, SameSite=strict,
scoped to the console's path). Its signing key is derived from the write token, so replicas
behind one ingress accept each other's cookies and changing the token logs everyone out; a
read-only console signs with a random key. The token itself is never stored in the cookie,
rendered or logged.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

from starlette.requests import Request

WRITER = "writer"
CSRF = "csrf"


class Forbidden(Exception):
    """A write refused; the message says why, for the page the browser gets."""


def session_secret(write_token: str | None) -> str:
    if not write_token:
        return secrets.token_urlsafe(32)
    return hmac.new(write_token.encode(), b"pgqueue-web-session-v1", hashlib.sha256).hexdigest()


def csrf_token(request: Request) -> str:
    """This session's CSRF token, made on first use."""
    session: dict[str, Any] = request.session
    token = session.get(CSRF)
    if not isinstance(token, str) or not token:
        token = secrets.token_urlsafe(24)
        session[CSRF] = token
    return token


def is_writer(request: Request) -> bool:
    return request.session.get(WRITER) is True


def check_csrf(request: Request, form_token: object) -> None:
    expected = request.session.get(CSRF)
    if not isinstance(expected, str) or not isinstance(form_token, str):
        raise Forbidden("the form has expired (no CSRF token); reload the page and try again")
    if not hmac.compare_digest(expected, form_token):
        raise Forbidden("the form's CSRF token does not match this session; reload the page")


def check_write(request: Request, write_token: str | None, form_token: object) -> None:
    """Refuse a write unless the console is writable and this browser logged in with the token."""
    check_csrf(request, form_token)
    if not write_token:
        raise Forbidden("this console is read-only: it was started without a write token")
    if not is_writer(request):
        raise Forbidden("read-only session: log in with the write token to change anything")


def log_in(request: Request, write_token: str | None, given: object) -> None:
    if not write_token:
        raise Forbidden("this console is read-only: it was started without a write token")
    if not isinstance(given, str) or not hmac.compare_digest(
        hashlib.sha256(given.encode()).digest(), hashlib.sha256(write_token.encode()).digest()
    ):
        raise Forbidden("wrong write token")
    # A fresh CSRF token at the change of privilege, so a token seen before login is worthless.
    request.session[CSRF] = secrets.token_urlsafe(24)
    request.session[WRITER] = True


def log_out(request: Request) -> None:
    request.session.pop(WRITER, None)
