-- core.duplicate_rows: valid rows that core does not keep because another delivery of
-- the same row, order or event was kept. With quarantine.* and the kept rows, this
-- accounts for every row read.
-- The find_<source> parameter is false when core kept every valid row of the source
-- (counted in pipelines/core/build.py): then there is nothing to find, and the anti-join over
-- every row, keyed by 64-character sha256 strings, is skipped.
create or replace table core.duplicate_rows as
with valid_transactions as (
    select s._file_sha256, s._row_number, s.order_id, s.customer_id
    from staging.transactions s
    anti join quarantine.transactions q using (_file_sha256, _row_number)
    where $find_transactions
),

valid_customers as (
    select s._file_sha256, s._row_number
    from staging.customers s
    anti join quarantine.customers q using (_file_sha256, _row_number)
    where $find_customers
),

valid_events as (
    select s._file_sha256, s._row_number
    from staging.events s
    anti join quarantine.events q using (_file_sha256, _row_number)
    where $find_events
),

final as (
    select 'transactions' as source, v._file_sha256, v._row_number,
           case when v.order_id is null then 'identical row delivered again in a later file'
                -- the order's kept lines come from this very file: the line was a repeat
                when exists (select 1 from core.transaction_lines k
                             where k._file_sha256 = v._file_sha256 and k.order_id = v.order_id
                               and k.source_customer_id = v.customer_id)
                    then 'identical line repeated in the same file'
                else 'order re-delivered in a later file' end as reason
    from valid_transactions v
    anti join core.transaction_lines k using (_file_sha256, _row_number)
    union all
    select 'customers', v._file_sha256, v._row_number, 'identical record delivered again'
    from valid_customers v
    anti join core.customer_records k using (_file_sha256, _row_number)
    union all
    select 'events', v._file_sha256, v._row_number, 'event delivered again in a later file'
    from valid_events v
    anti join core.events k using (_file_sha256, _row_number)
)

select * from final
