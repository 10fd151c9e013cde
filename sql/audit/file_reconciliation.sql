-- audit.file_reconciliation: per ingested file, rows read = loaded + quarantined +
-- duplicates + erased (rows of customers forgotten with `crm forget`, removed by their
-- tombstones). "is_balanced" must be true for every file; the run stops otherwise.
create or replace table audit.file_reconciliation as
-- One file can feed several sources (raw.files is keyed by source and sha256), so every
-- count is matched to its file by source and sha256.
with files as (
    -- a rejected file's rows never reach staging (pipelines/load/processing.py)
    select file_sha256 as _file_sha256, source, file_path, status, rows_read from raw.files
    where status <> 'rejected'
),

loaded as (
    select 'transactions' as source, _file_sha256, count(*) as n
    from core.transaction_lines group by all
    union all
    select 'customers', _file_sha256, count(*) from core.customer_records group by all
    union all
    select 'events', _file_sha256, count(*) from core.events group by all
),

quarantined as (
    select 'transactions' as source, _file_sha256, count(*) as n
    from quarantine.transactions group by all
    union all
    select 'customers', _file_sha256, count(*) from quarantine.customers group by all
    union all
    select 'events', _file_sha256, count(*) from quarantine.events group by all
    union all
    select source, _file_sha256, count(*) from raw.rejected_rows group by all
),

duplicates as (
    select source, _file_sha256, count(*) as n from core.duplicate_rows group by all
),

erased as (
    select source, file_sha256 as _file_sha256, sum(rows) as n
    from audit.erased_rows group by all
),

final as (
    select
        $run_id as run_id,
        f.source,
        f.file_path,
        f._file_sha256 as file_sha256,
        f.status,
        f.rows_read,
        coalesce((select sum(n) from loaded l
                  where l.source = f.source and l._file_sha256 = f._file_sha256), 0)::bigint
            as rows_loaded,
        coalesce((select sum(n) from quarantined q
                  where q.source = f.source and q._file_sha256 = f._file_sha256), 0)::bigint
            as rows_quarantined,
        coalesce((select sum(n) from duplicates d
                  where d.source = f.source and d._file_sha256 = f._file_sha256), 0)::bigint
            as rows_duplicate,
        coalesce((select sum(n) from erased e
                  where e.source = f.source and e._file_sha256 = f._file_sha256), 0)::bigint
            as rows_erased
    from files f
)

select
    *,
    rows_read = rows_loaded + rows_quarantined + rows_duplicate + rows_erased as is_balanced
from final
order by source, file_path
