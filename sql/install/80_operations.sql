------------------------------------------------------------------------------
-- Operations: the HTTP collector's metrics and the running workers.
------------------------------------------------------------------------------
create function cdp.http_metrics() returns text
as 'MODULE_PATHNAME', 'cdp_http_metrics' language c volatile;
comment on function cdp.http_metrics() is 'The HTTP collector''s counters in Prometheus text format, as served on GET /metrics.';

create view cdp.workers as
  select pid, backend_type, application_name, state, backend_start, state_change
    from pg_stat_activity where backend_type like 'cdp %';
comment on view cdp.workers is 'The cdp background workers running now (one row each): check here that the HTTP collector is up.';
