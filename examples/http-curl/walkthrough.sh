#!/usr/bin/env bash
# A curl walkthrough of the rocketgate REST API: publish, receive, ack, delay, transaction and
# dead-letter resend. Needs only bash, curl and sed. Every step checks its answer, so the script
# exits non-zero at the first surprise (the tests run it against a real gateway).
#
#   ROCKETGATE_HTTP=http://127.0.0.1:8080 examples/http-curl/walkthrough.sh
set -euo pipefail

BASE="${ROCKETGATE_HTTP:-http://127.0.0.1:8080}"
RUN="$(date +%s)$$"
TOPIC="walk-$RUN"
GROUP="walkers-$RUN"

say() { printf '\n== %s\n' "$*"; }
# POST/PUT/GET/DELETE with a JSON body; prints the answer; fails on 4xx/5xx.
call() {
  local method=$1 path=$2 body=${3:-}
  if [ -n "$body" ]; then
    curl -sS --fail-with-body -X "$method" -H 'content-type: application/json' -d "$body" "$BASE$path"
  else
    curl -sS --fail-with-body -X "$method" "$BASE$path"
  fi
  echo
}
# The first value of a string field in JSON on stdin.
field() { sed -n "s/.*\"$1\":\"\\([^\"]*\\)\".*/\\1/p" | head -n1; }
# Receives once (long polling up to 1.5 s), prints the answer.
receive() { call POST "/v1/groups/$1/receive" "{\"topic\":\"$TOPIC\",\"max\":1,\"wait_ms\":1500,\"invisible_ms\":5000}"; }
expect() { grep -q "$1" <<<"$2" || { echo "expected $1 in: $2" >&2; exit 1; }; }

say "health"
call GET /readyz

say "create topic $TOPIC (4 queues, MIXED: normal, delayed and transactional messages)"
call POST /v1/topics "{\"name\":\"$TOPIC\",\"queue_count\":4,\"message_type\":\"MIXED\"}"

say "publish a JSON message with a tag, a key and a property"
call POST "/v1/topics/$TOPIC/messages" '{"body":"hello, rocketgate","tag":"greeting","keys":["order-1"],"properties":{"source":"curl"}}'

say "publish a raw body with rg-* headers"
curl -sS --fail-with-body -H 'content-type: text/plain' -H 'rg-tag: raw' -H 'rg-keys: order-2' \
  --data-binary 'plain text body' "$BASE/v1/topics/$TOPIC/messages"; echo

say "receive and ack (group $GROUP)"
for _ in 1 2; do
  got=$(receive "$GROUP"); echo "$got"
  handle=$(field receipt_handle <<<"$got")
  [ -n "$handle" ] || { echo "nothing received" >&2; exit 1; }
  call POST "/v1/groups/$GROUP/ack" "{\"receipt_handle\":\"$handle\"}"
done

say "query by key"
expect "hello, rocketgate" "$(call GET "/v1/topics/$TOPIC/messages?key=order-1")"

say "delay: deliver in 2 s"
call POST "/v1/topics/$TOPIC/messages" '{"body":"later","delay_ms":2000}'
expect '"messages":\[\]' "$(call POST "/v1/groups/$GROUP/receive" "{\"topic\":\"$TOPIC\",\"wait_ms\":0}")"
sleep 2
got=$(receive "$GROUP"); echo "$got"; expect '"body":"later"' "$got"
call POST "/v1/groups/$GROUP/ack" "{\"receipt_handle\":\"$(field receipt_handle <<<"$got")\"}"

say "transaction: publish a half message, then commit it"
half=$(call POST "/v1/topics/$TOPIC/transactions" '{"producer_group":"walk-producers","message":{"body":"paid"}}'); echo "$half"
tx=$(field transaction_id <<<"$half")
call POST "/v1/transactions/$tx/commit"
got=$(receive "$GROUP"); echo "$got"; expect '"body":"paid"' "$got"
call POST "/v1/groups/$GROUP/ack" "{\"receipt_handle\":\"$(field receipt_handle <<<"$got")\"}"

say "dead letters: a fresh topic and a group that gives up after one delivery"
TOPIC="$TOPIC-dlq"
call POST /v1/topics "{\"name\":\"$TOPIC\",\"queue_count\":1}"
call POST /v1/groups "{\"name\":\"$GROUP-strict\",\"max_delivery_attempts\":1}"
call POST "/v1/topics/$TOPIC/messages" '{"body":"poison"}'
got=$(receive "$GROUP-strict"); echo "$got"
call POST "/v1/groups/$GROUP-strict/nack" "{\"receipt_handle\":\"$(field receipt_handle <<<"$got")\"}"
for _ in $(seq 50); do
  dlq=$(call GET "/v1/groups/$GROUP-strict/dlq")
  grep -q poison <<<"$dlq" && break
  sleep 0.1
done
echo "$dlq"; expect poison "$dlq"

say "resend every dead letter, receive it again and ack"
call POST "/v1/groups/$GROUP-strict/dlq/resend" '{"all":true}'
got=$(receive "$GROUP-strict"); echo "$got"; expect '"body":"poison"' "$got"
call POST "/v1/groups/$GROUP-strict/ack" "{\"receipt_handle\":\"$(field receipt_handle <<<"$got")\"}"

say "lag of $GROUP-strict"
call GET "/v1/groups/$GROUP-strict/lag"

say "clean up"
call DELETE "/v1/groups/$GROUP-strict"
call DELETE "/v1/topics/$TOPIC"
call DELETE "/v1/topics/${TOPIC%-dlq}"
echo "walkthrough done"
