"""The error answers every operation can give, added to the OpenAPI schema in one place.

drf-spectacular documents what a view declares; the 4xx answers that come from around the
view (authentication, permissions, the URL resolver, operations.request_limits) are not
declared anywhere, so schemathesis rightly reported them as undocumented. This hook adds each
where it can happen, without replacing a response a view documents itself.
"""

ERROR_SCHEMA = {
    "type": "object",
    "description": "`detail` says what is wrong; a validation error instead lists each "
    "field's messages under the field's name.",
    "properties": {"detail": {"type": "string"}},
    "additionalProperties": True,
}

REASONS = {
    "400": "The request is malformed: a field is wrong, a NUL character is in the URL or "
    "body, or the JSON nests too deeply.",
    "401": "No valid credentials were given.",
    "403": "The credentials are valid but not allowed here (e.g. staff only).",
    "404": "Nothing with that identifier is visible to you, the URL does not exist, or the "
    "page number is past the last page.",
    "413": "The request body is too large.",
}


def _error(code: str) -> dict:
    return {
        "description": REASONS[code],
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def document_error_responses(result, generator, request, public):
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    for path, operations in result.get("paths", {}).items():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            codes = ["400"]
            anonymous_allowed = {} in operation.get("security", [{}])
            if not anonymous_allowed:
                codes += ["401", "403"]
            paginated = any(p.get("name") == "page" for p in operation.get("parameters", []))
            if "{" in path or paginated:
                codes.append("404")
            if "requestBody" in operation:
                codes.append("413")
            for code in codes:
                responses.setdefault(code, _error(code))
    return result
