"""Cursor pagination: stable pages under concurrent inserts, `?limit=` up to 200."""

from rest_framework import pagination


class CursorPagination(pagination.CursorPagination):
    page_size = 50
    page_size_query_param = "limit"
    max_page_size = 200
    ordering = "-id"
