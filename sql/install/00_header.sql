-- cdp: the fresh install script of the current version (cdp.control's
-- default_version). make builds sql/cdp--<version>.sql from sql/install/*.sql,
-- in name order: edit the pieces, never the built file. Each piece states the
-- current schema of one concept. A schema change edits its piece and appends
-- the same change to the upgrade script to the next version
-- (sql/cdp--<previous>--<next>.sql) in the same commit; test/e2e/upgrade.sh
-- checks that both ways give the same extension, object by object.
\echo Use "CREATE EXTENSION cdp" to load this file. \quit
