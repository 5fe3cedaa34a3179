# shellcheck shell=bash
# kind "segment": to a Segment-compatible collector's /v1/batch (contract sink
# test/e2e/contracts/segment.mjs). Sourced by connectors.sh.
#   mapping    track, identify and page arrive as sent, messageId kept; Basic
#              auth carries the write key
#   audiences  a segment enter arrives as an "Audience Entered" track call
#   deletion   an erasure notice is dropped (no /v1/batch counterpart) and counted
#   caps       60 messages of 20 KB: several requests, none over 500 KB (a message
#              over 32 KB, which only a transformation can make: transformations.bash)
#   split      a collector that refuses a whole batch for one bad message: the
#              batch is split until that one is alone and dead; the rest arrive
#   secrets    cdp_analyst cannot read the write key; the audit log keeps only
#              the config's key names
test_segment() {
  local name="${N}_segment" key="wk-$RUN_ID" got
  sink_control segment "{\"write_key\": \"$key\"}"
  create_kind "$name" segment "{\"kind\": \"segment\", \"config\": {\"write_key\": \"$key\"},
    \"subscribe\": {\"events\": true, \"segments\": [\"${N}_pro\"], \"deletions\": true},
    \"batch\": {\"max_wait_ms\": 500}}"
  pass "segment destination created"

  sql "select cdp.track('Order Completed', '$U-s1', properties => '{\"total\": 42}', message_id => 'seg-$RUN_ID-1')" >/dev/null
  sql "select cdp.identify('$U-s2', traits => '{\"plan\": \"pro\", \"email\": \"s2@example.com\"}', message_id => 'seg-$RUN_ID-2')" >/dev/null
  sql "select cdp.page('Pricing', '$U-s3', message_id => 'seg-$RUN_ID-3')" >/dev/null
  wait_accepted segment 3 >/dev/null
  got=$(sink_state segment "s.accepted.filter(m => m.messageId && m.messageId.startsWith('seg-$RUN_ID-'))
          .map(m => m.type + ':' + (m.event || m.name || '') + ':' + m.userId).sort().join(' ')")
  check_eq "track, identify and page arrive as sent, messageId kept" "$got" \
    "identify::$U-s2 page:Pricing:$U-s3 track:Order Completed:$U-s1"
  got=$(sink_state segment "s.accepted.find(m => m.messageId === 'seg-$RUN_ID-1').properties.total")
  check_eq "properties arrive as stored" "$got" "42"

  sql "select cdp.create_segment('${N}_pro', '{\"trait\": \"plan\", \"op\": \"=\", \"value\": \"pro\"}')" >/dev/null
  wait_accepted segment 4 >/dev/null
  got=$(sink_state segment "s.accepted.filter(m => m.event === 'Audience Entered' && m.userId === '$U-s2')
          .map(m => m.properties.audience_key + ':' + m.context.personas.computation_class).join(' ')")
  check_eq "a segment enter arrives as an Audience Entered track" "$got" "${N}_pro:audience"

  sql "select cdp.erase('user_id', '$U-s3', 'e2e: deletion notice')" >/dev/null
  got=$(wait_sql 20 "select dropped from cdp.destinations where name = $(lit "$name")" 1)
  check_eq "a deletion notice has no /v1/batch counterpart: dropped and counted" "$got" "1"

  # Byte caps: 60 messages of about 20 KB from 60 people, about 1.2 MB in all.
  local pad
  pad=$(head -c 20000 /dev/zero | tr '\0' 'x')
  sql "select count(cdp.track('Big', '$U-big-' || i, properties => jsonb_build_object('pad', '$pad'),
         message_id => 'seg-$RUN_ID-big-' || i)) from generate_series(1, 60) i" >/dev/null
  got=$(wait_state segment "new Set(s.accepted.filter(m => m.event === 'Big').map(m => m.messageId)).size" 60 60)
  check_eq "60 messages of 20 KB all arrive" "$got" "60"
  got=$(sink_state segment "s.requests.filter(r => r.bytes > 500 * 1024).length")
  check_eq "no request over 500 KB" "$got" "0"
  got=$(sink_state segment "s.requests.filter(r => r.items > 1).length")
  check_ge "they went in batches" "$got" 3

  # Split: one bad message makes the collector refuse its whole batch.
  sink_control segment '{"fail_batch_with": "Poison"}'
  sql "select count(cdp.track(case when i = 5 then 'Poison' else 'Split' end, '$U-split-' || i,
         message_id => 'seg-$RUN_ID-split-' || i)) from generate_series(1, 8) i" >/dev/null
  wait_sql 30 "select count(*) from cdp.dead_letters l join cdp.destinations d using (destination_id)
               where d.name = $(lit "$name")" 1 >/dev/null
  wait_settled "$name" 30
  got=$(wait_state segment "new Set(s.accepted.filter(m => m.event === 'Split').map(m => m.messageId)).size" 7 30)
  check_eq "the 7 good messages of a refused batch arrive" "$got" "7"
  got=$(sql "select l.payload->>'event' || ' ' || l.status from cdp.dead_letters l
             join cdp.destinations d using (destination_id) where d.name = $(lit "$name") and l.status is not null")
  check_eq "the bad one alone is dead, with the collector's answer" "$got" "Poison 400"
  got=$(sql "select failures from cdp.destinations where name = $(lit "$name")")
  check_eq "a refused message does not count towards the circuit" "$got" "0"

  # Secrets.
  got=$(sql "set role cdp_analyst; select count(*) from cdp.destinations" 2>&1)
  check_match "cdp_analyst cannot read destinations (where the write key is)" "$got" "permission denied"
  got=$(sql "select count(*) from cdp.audit_log where details::text like '%$key%'")
  check_eq "the audit log holds no write key" "$got" "0"
  got=$(sql "select details->'new'->'options'->'config_keys' from cdp.audit_log
             where target = 'destinations' and details->'new'->>'name' = $(lit "$name") order by id limit 1")
  check_eq "the audit log keeps the config's key names" "$got" '["write_key"]'
  no_violations segment
}
