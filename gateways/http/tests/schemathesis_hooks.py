"""Schemathesis hooks of gateways/http/tests/schemathesis.rs.

One hook, `filter_failure`. It drops a "schema-valid request rejected" (ST202) failure only where
the rule that refused the request cannot be written in JSON Schema, told by the problem's
stable `code` and its detail:

- `invalid_filter` for a filter of kind SQL: SQL92 has a grammar no `pattern` states (TAG
  expressions do have a pattern in the document, and are not excused);
- `invalid_argument` "delivery time … is more than … ms in the future": `deliver_at_ms` may be
  at most `timer.max_delay_ms` after *now*, a bound that moves with the clock (`delay_ms` and
  `delay_level` have fixed ranges, and are not excused);
- `invalid_argument` "… bytes of properties, at most … allowed": the total size of a message's
  properties, over all of them (their count has `maxProperties`, and is not excused);
- `message_type_mismatch` "message type conflict: topic … accepts …": whether a topic takes a
  message depends on the type the topic was created with (state, not the request), e.g. a
  plain message into a FIFO topic an earlier generated request created.

Three limits of the tool. A `413 payload_too_large` (a body over `http.max_body_bytes`,
refused before it is read) is a rejection, though not one of the statuses the "schema-violating
request accepted" (ST201) check counts as such; it is excused. "Created resource not found" (ST302) after a link schemathesis infers
itself (not one of the document's) that fills the path but generates a body naming another
resource: the `404` then names that other resource (a topic in a receive's body, a queue id in
a message) and is right; such a failure is excused when the problem is `queue_not_found`, or a
`topic_not_found` / `group_not_found` naming no path parameter of the request. And schemathesis
percent-decodes a path parameter before it encodes it, so a legal topic or group name holding
`%` and two hex digits (`%DLQ%00`, a dead-letter topic) reaches the server as another, illegal
one (`%DLQ` and a NUL); such a case is excused when the server refuses it as
`invalid_argument`.

Every other failure stands. The summary counts what was dropped.
"""

import json
import re

import schemathesis

# (problem code, detail) of the rules no schema states, wherever they refuse.
UNSTATABLE = [
    ("invalid_argument", re.compile(r"delivery time -?\d+ is more than \d+ ms in the future")),
    ("invalid_argument", re.compile(r"\d+ bytes of properties, at most \d+ allowed")),
    ("message_type_mismatch", re.compile(r"message type conflict: topic `[^`]*` accepts ")),
]


ENCODED = re.compile(r"%[0-9A-Fa-f]{2}")


def _mangled_path(case):
    return any(
        isinstance(v, str) and ENCODED.search(v) for v in (case.path_parameters or {}).values()
    )


def _has_sql_filter(body):
    if not isinstance(body, dict):
        return False
    filters = []
    if isinstance(body.get("filter"), dict):
        filters.append(body["filter"])
    if isinstance(body.get("subscriptions"), dict):
        filters.extend(f for f in body["subscriptions"].values() if isinstance(f, dict))
    return any(f.get("kind") == "SQL" for f in filters)


NAMED = re.compile(r"`([^`]*)`")


def _names_another_resource(problem, case):
    code = problem.get("code")
    if code == "queue_not_found":
        return True
    if code not in ("topic_not_found", "group_not_found"):
        return False
    named = NAMED.findall(str(problem.get("detail", "")))
    path = {str(v) for v in (case.path_parameters or {}).values()}
    return bool(named) and not any(n in path for n in named)


@schemathesis.hook
def filter_failure(context, failure, case, response):
    if failure.code == "ST201" and response.status_code == 413:
        # A body over `http.max_body_bytes` is refused before it is read: a rejection too.
        return False
    if failure.code == "ST302" and response.status_code == 404:
        try:
            return not _names_another_resource(json.loads(response.content), case)
        except (ValueError, AttributeError):
            return True
    if failure.code != "ST202" or response.status_code != 400:
        return True
    try:
        problem = json.loads(response.content)
        code, detail = problem.get("code"), str(problem.get("detail", ""))
    except (ValueError, AttributeError):
        return True
    if any(code == c and pattern.search(detail) for c, pattern in UNSTATABLE):
        return False
    if code == "invalid_filter" and _has_sql_filter(case.body):
        return False
    if code == "invalid_argument" and _mangled_path(case):
        return False
    return True
