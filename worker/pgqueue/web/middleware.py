"""The console's two ASGI wrappers: serving under a URL prefix, and the headers every response
carries. Plain ASGI, so they wrap the Starlette app without touching its routing."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class PrefixMiddleware:
    """Serves the app under ``prefix`` whether or not the ingress strips it from the path."""

    def __init__(self, app: ASGIApp, prefix: str) -> None:
        self.app = app
        self.prefix = prefix.rstrip("/")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and self.prefix:
            path: str = scope["path"]
            if path == self.prefix or path.startswith(self.prefix + "/"):
                path = path[len(self.prefix) :]
            scope = {**scope, "root_path": self.prefix, "path": self.prefix + (path or "/")}
        await self.app(scope, receive, send)


class SecurityHeaders:
    """No page may be framed (a framed confirmation button could be clickjacked), no response
    sniffed, no URL leaked to another site in a Referer."""

    HEADERS = (
        (b"x-frame-options", b"DENY"),
        (b"content-security-policy", b"frame-ancestors 'none'"),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"same-origin"),
    )

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *self.HEADERS]}
            await send(message)

        await self.app(scope, receive, with_headers)
