-- Start of every suite (\i test/regress/sql/setup.sql): fresh cdp, UTC, processor paused, pg_temp.err.
\set setup_echo :ECHO
\set ECHO none
-- Run from the project folder (pg_regress feeds psql each suite on standard
-- input, so \ir would look in the current folder anyway). Not echoed: the
-- expected outputs show the lines above and then the suite itself; an error
-- here still shows, naming this file.

-- A fresh install: each suite starts from the state CREATE EXTENSION leaves.
drop extension if exists cdp;
create extension cdp;
-- Times print in UTC, whatever the server's time zone.
set timezone = 'UTC';
-- The processor worker waits while the suite processes by hand with
-- cdp.process_pending(), so every step is deterministic. (pg_regress works in
-- a database the worker does not serve; this matters when a suite is run by
-- hand in one it does.)
update cdp.processor_state set paused = true;
-- The error a statement raises, as "SQLSTATE: message", or 'no error'.
create function pg_temp.err(q text) returns text language plpgsql as $$
begin execute q; return 'no error';
exception when others then return sqlstate || ': ' || sqlerrm; end $$;

\set ECHO :setup_echo
