-- marts.customer_id_changes, this run's rows: the customer ids that stopped being a
-- customer's id since the last published run (audit.customer_id_changes of this run and
-- of runs that failed after it), so that dashboards and marketing lists keyed by
-- customer_id can follow a merge. pipelines/marts.py checks them and appends them to the
-- history table marts.customer_id_changes (a rerun's rows are replaced).
--
-- Parameters
--   $as_of   DATE
--   $run_id  VARCHAR
create or replace temp table temp.main.customer_id_changes_run as
with since_last_published as (
    select run_id from audit.runs
    where started_at > coalesce(
        (select max(started_at) from audit.runs where status = 'succeeded'),
        timestamp '1900-01-01'
    )
    union
    select $run_id
),

changes as (
    select * from audit.customer_id_changes
    where run_id in (select run_id from since_last_published)
),

-- a later run's change of the same id wins (A -> B, then B -> C: A's records are C's)
final as (
    select
        $run_id as run_id,
        $as_of::date as as_of,
        previous_customer_id,
        arg_max(customer_id, changed_at) as customer_id,
        arg_max(reason, changed_at) as reason,
        arg_max(source_customer_ids, changed_at) as source_customer_ids
    from changes
    group by previous_customer_id
)

select * from final
order by previous_customer_id
