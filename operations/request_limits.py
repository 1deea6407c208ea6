"""Limits every request meets before a view or a parser sees it.

Python's json module recurses once per nesting level, so a body of a thousand `[` raises
RecursionError inside the parser (a 500, even on the anonymous token endpoint). A NUL byte is
valid in a URL or a JSON string but Postgres refuses it in text, so it would also surface as a
500 from the first query. Both are refused here with a 4xx and a JSON message, for every
endpoint at once, instead of in each parser and field.
"""

import re
from urllib.parse import unquote_to_bytes

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse

# Our bodies nest three levels ({"cards": [{"card": ...}]}); 32 leaves room for any client
# wrapping while staying far below the interpreter's recursion limit (1000).
MAX_JSON_DEPTH = 32

_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(rb"[\[\]{}]")
# \u0000 in a JSON string decodes to NUL; an escaped backslash before it (\\u0000) does not.
_JSON_NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000", re.IGNORECASE)


def json_depth(body: bytes) -> int:
    """The deepest nesting of arrays and objects, counted without parsing (no recursion)."""
    depth = deepest = 0
    for bracket in _BRACKETS.findall(_JSON_STRING.sub(b"", body)):
        if bracket in b"[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def problem(request) -> tuple[int, str] | None:
    """(status, message) if the request must be refused before it is handled, else None."""
    query = unquote_to_bytes(request.META.get("QUERY_STRING", ""))
    if "\x00" in request.path or b"\x00" in query:
        return 400, "NUL characters are not allowed in URLs."
    # Forms (the admin's) are bounded by Django's DATA_UPLOAD_MAX_MEMORY_SIZE and their fields
    # refuse NUL themselves; JSON is what the API parses.
    if request.method not in ("POST", "PUT", "PATCH") or "json" not in request.content_type:
        return None
    limit = settings.MAX_JSON_BODY_BYTES
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 400, "Content-Length is not a number."
    if declared > limit:
        return 413, f"The request body is larger than {limit} bytes."
    try:
        body = request.body
    except RequestDataTooBig:  # a chunked body (no Content-Length) past Django's own bound
        return 413, f"The request body is larger than {limit} bytes."
    if len(body) > limit:
        return 413, f"The request body is larger than {limit} bytes."
    if b"\x00" in body or _JSON_NUL_ESCAPE.search(body):
        return 400, "NUL characters are not allowed in the request body."
    if json_depth(body) > MAX_JSON_DEPTH:
        return 400, f"The JSON body nests deeper than {MAX_JSON_DEPTH} levels."
    return None


class RequestLimitsMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        refused = problem(request)
        if refused:
            status, message = refused
            return JsonResponse({"detail": message}, status=status)
        return self.get_response(request)
