"""Swagger UI and its assets, served from this process (no CDN)."""

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

router = APIRouter(include_in_schema=False)

_SWAGGER = resources.files("fastapi_swagger") / "resources"
_OWN = resources.files("erpauth.api") / "static"
_ASSETS = {
    "swagger-ui-bundle.js": (_SWAGGER, "application/javascript"),
    "swagger-ui.css": (_SWAGGER, "text/css"),
    "favicon-32x32.png": (_SWAGGER, "image/png"),
    "swagger-init.js": (_OWN, "application/javascript"),
}
_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>erpauth API</title>
  <link rel="icon" type="image/png" href="/docs/assets/favicon-32x32.png">
  <link rel="stylesheet" href="/docs/assets/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/assets/swagger-ui-bundle.js"></script>
  <script src="/docs/assets/swagger-init.js"></script>
</body>
</html>
"""


@router.get("/docs")
def swagger_ui() -> HTMLResponse:
    return HTMLResponse(_PAGE)


@router.get("/docs/assets/{name}")
def swagger_asset(name: str) -> Response:
    asset = _ASSETS.get(name)
    if asset is None:
        return Response(status_code=404)
    folder, media_type = asset
    return Response(
        (folder / name).read_bytes(),
        media_type=media_type,
        headers={"Cache-Control": "public, max-age=86400"},
    )
