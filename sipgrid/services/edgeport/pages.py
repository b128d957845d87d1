"""The browser phone's page, served beside a WSS listening point when enabled
(SIPGRID_PHONE_PAGE=on in the all-in-one): /phone/ on the same port as the WebSocket,
so the page, its certificate and its SIP server are one origin."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

# the checkout's web/ (an installed package is told where it is by SIPGRID_WEB_DIR)
WEB_DIR = Path(__file__).resolve().parents[3] / "web"
FILES = {
    "": "phone/index.html",
    "index.html": "phone/index.html",
    "phone.js": "phone/phone.js",
    "jssip.min.js": "build/jssip.min.js",  # made by `make web-deps` (npm and esbuild)
}


def add_phone_page(app: web.Application, web_dir: Path = WEB_DIR) -> None:
    async def page(request: web.Request) -> web.StreamResponse:
        name = request.match_info.get("name", "")
        relative = FILES.get(name)
        if relative is None:
            raise web.HTTPNotFound()
        path = web_dir / relative
        if not path.is_file():
            return web.Response(
                status=503, text=f"{relative} is missing: run `make web-deps` (needs npm)\n"
            )
        return web.FileResponse(path, headers={"Cache-Control": "no-cache"})

    async def to_slash(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/phone/")

    async def no_icon(request: web.Request) -> web.StreamResponse:
        return web.Response(status=204)

    app.router.add_get("/favicon.ico", no_icon)
    app.router.add_get("/phone", to_slash)
    app.router.add_get("/phone/{name:[a-z.]*}", page)
