-- core.identity_edges: pairs of customer ids that are the same person, over every record
-- (the rules are the table macro identity_edges_at, sql/macros_identity.sql).
create or replace table core.identity_edges as
select * from identity_edges_at(null::date, $max_shared)
