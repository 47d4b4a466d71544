"""Schemathesis hooks of gateways/http/tests/schemathesis.rs.

One hook: `filter_failure` drops a "schema-valid request rejected" (ST202) failure only where
the rule that refused the request cannot be written in JSON Schema, named by the problem's
stable `code`:

- `invalid_filter` for a filter of kind SQL: SQL92 has a grammar no `pattern` states (TAG
  expressions do have a pattern in the document, and are not excused);
- `illegal_delivery_time`: `deliver_at_ms` may be at most `timer.max_delay_ms` after *now*, a
  bound that moves with the clock (`delay_ms` and `delay_level` have fixed ranges, and are not
  excused);
- `properties_too_large`: the total size of a message's properties, over all of them.

Every other failure stands. The summary counts what was dropped.
"""

import json

import schemathesis

SQL_ONLY = {"invalid_filter"}
ANYWHERE = {"illegal_delivery_time", "properties_too_large"}


def _has_sql_filter(body):
    if not isinstance(body, dict):
        return False
    filters = []
    if isinstance(body.get("filter"), dict):
        filters.append(body["filter"])
    if isinstance(body.get("subscriptions"), dict):
        filters.extend(f for f in body["subscriptions"].values() if isinstance(f, dict))
    return any(f.get("kind") == "SQL" for f in filters)


@schemathesis.hook
def filter_failure(context, failure, case, response):
    if failure.code != "ST202" or response.status_code != 400:
        return True
    try:
        code = json.loads(response.content).get("code")
    except (ValueError, AttributeError):
        return True
    if code in ANYWHERE:
        return False
    if code in SQL_ONLY and _has_sql_filter(case.body):
        return False
    return True
