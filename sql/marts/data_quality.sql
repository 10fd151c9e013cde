-- marts.data_quality, this run's rows: how every input row was accounted for, per file,
-- and how many source customer ids became how many customers. pipelines/marts.py checks
-- them and appends them to the history table marts.data_quality (a rerun's rows are
-- replaced).
--
-- Parameters
--   $as_of   DATE
--   $run_id  VARCHAR
--
-- Measures
--   rows_read, rows_loaded, rows_quarantined, rows_duplicate   audit.file_reconciliation,
--       one row each per file (read = loaded + quarantined + duplicate), zeros included
--   quarantined_by_rule     rows sent to quarantine.<source> per rule; a row breaking
--       several rules counts once under each. Records the reader could not split
--       (raw.rejected_rows) count under 'reader: <reason>'.
--   field_blanked_by_rule   fields blanked in a kept row (quarantine.field_issues), per rule
--   source_customer_ids, customers, customers_unified   over all sources (source 'all', no
--       file): customer ids seen in any source (core.customer_map); customers known as of
--       the run (known_customers: the rows of marts.customer_360, the one customer count
--       of the summary and the report); ids merged into another customer's record
create or replace temp table temp.main.data_quality_run as
with files as (
    select source, file_sha256, file_name from raw.files
),

reconciliation as (
    select * from audit.file_reconciliation
),

quarantined_rows as (
    select 'transactions' as source, _file_sha256, rules from quarantine.transactions
    union all
    select 'customers', _file_sha256, rules from quarantine.customers
    union all
    select 'events', _file_sha256, rules from quarantine.events
),

rejected_rows as (
    select * from raw.rejected_rows
),

field_issues as (
    select * from quarantine.field_issues
),

customer_map as (
    select * from core.customer_map
),

file_measures as (
    select source, file_sha256, measure, rows
    from (
        select source, file_sha256, rows_read, rows_loaded, rows_quarantined, rows_duplicate
        from reconciliation
    )
    unpivot (rows for measure in (rows_read, rows_loaded, rows_quarantined, rows_duplicate))
),

quarantined_by_rule as (
    select source, _file_sha256 as file_sha256, rule, count(*) as rows
    from (
        select source, _file_sha256, unnest(string_split(rules, ', ')) as rule
        from quarantined_rows
        union all
        -- the reason's text before a colon, as in the run summary
        select source, _file_sha256, 'reader: ' || split_part(reason, ':', 1)
        from rejected_rows
    )
    group by all
),

field_blanked_by_rule as (
    select source, _file_sha256 as file_sha256, rule, count(*) as rows
    from field_issues
    group by all
),

identity_measures as (
    select measure, rows
    from (
        select
            count(*) as source_customer_ids,
            (select count(*) from known_customers($as_of)) as customers,
            count(*) filter (where match_rule <> 'self') as customers_unified
        from customer_map
    )
    unpivot (rows for measure in (source_customer_ids, customers, customers_unified))
),

measures as (
    select source, file_sha256, measure, null::varchar as rule, rows from file_measures
    union all
    select source, file_sha256, 'quarantined_by_rule', rule, rows from quarantined_by_rule
    union all
    select source, file_sha256, 'field_blanked_by_rule', rule, rows from field_blanked_by_rule
    union all
    select 'all', null, measure, null, rows from identity_measures
),

final as (
    select
        $run_id as run_id,
        $as_of::date as as_of,
        m.source,
        f.file_name,
        m.file_sha256,
        m.measure,
        m.rule,
        m.rows::bigint as rows
    from measures m
    left join files f using (source, file_sha256)
)

select * from final
order by source, file_name, file_sha256, measure, rule
