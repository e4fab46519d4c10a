"""The catalogue as plain server-rendered pages at /marketplace/: what people read before
they install. Only listed packages appear; an unlisted one answers 404 here, as through
the API to anyone but its publisher."""

from __future__ import annotations

import json

from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from beamclaw.errors import NotFound

from . import selectors

PAGE_SIZE = 25


def catalogue(request: HttpRequest) -> HttpResponse:
    search = request.GET.get("q", "")[:200]
    packages = selectors.catalogue(None, search=search).order_by("-id")
    page = Paginator(packages, PAGE_SIZE).get_page(request.GET.get("page"))
    latest = selectors.latest_versions(list(page.object_list))
    rows = [(package, latest.get(package.pk)) for package in page.object_list]
    return render(
        request, "marketplace/catalogue.html", {"rows": rows, "page": page, "search": search}
    )


def package(request: HttpRequest, publisher: str, slug: str) -> HttpResponse:
    try:
        found = selectors.get_package(None, publisher, slug)
    except NotFound:
        raise Http404("no such package")
    versions = selectors.versions_of(found)
    latest = selectors.latest_versions([found]).get(found.pk)
    shown = selectors.get_version(found, latest) if latest else None
    manifest = shown.manifest if shown else {}
    return render(
        request,
        "marketplace/package.html",
        {
            "package": found,
            "versions": versions,
            "latest": shown,
            "permissions": json.dumps(manifest.get("permissions", {}), indent=2),
            "pricing": json.dumps(manifest.get("pricing", {}), indent=2),
            "changelog": manifest.get("changelog", ""),
        },
    )
