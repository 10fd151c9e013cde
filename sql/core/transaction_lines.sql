-- core.transaction_lines: valid transaction rows after deduplication, keyed to the
-- surviving customer_id.
-- An order is delivered whole in one file: when an order id arrives again in a later
-- delivery (a re-sent or corrected export), the latest delivery's lines replace the
-- earlier ones. Rows without an order id are their own order. Within one file,
-- identical rows are separate purchases (two of the same on one day); across files, the
-- k-th copy of a row in a later delivery is the k-th copy of an earlier one, re-sent.
create or replace table core.transaction_lines as
with staged as (
    select * from staging.transactions
),

quarantined as (
    select _file_sha256, _row_number from quarantine.transactions
),

valid as (
    select s.*
    from staged s
    anti join quarantined q using (_file_sha256, _row_number)
),

row_keys as (
    select
        *,
        case when order_id is null then
            md5(concat_ws('|', customer_id, order_at, amount, quantity, unit_price, product_id,
                          status, currency, channel, payment_method))
        end as row_hash
    from valid
),

keyed as (
    select
        * exclude (row_hash),
        case
            when order_id is not null then order_id
            else 'row-' || row_hash || '-' || row_number() over (
                partition by _file_sha256, row_hash order by _row_number)
        end as order_key
    from row_keys
),

-- Files of one run share an ingestion time: then the later file name wins, since
-- exports are named by date or sequence (transactions_2025-01-02.csv after ..._01.csv).
latest_delivery as (
    select order_key,
           arg_max(_file_sha256, (_ingested_at, _source_file, _file_sha256)) as _file_sha256
    from keyed
    group by order_key
),

kept as (
    select k.*
    from keyed k
    join latest_delivery l using (order_key, _file_sha256)
),

final as (
    select
        d._file_sha256,
        d._source_file,
        d._row_number,
        m.customer_id,
        d.customer_id as source_customer_id,
        d.order_key as order_id,
        d.product_id,
        d.quantity,
        d.unit_price,
        d.amount,
        d.status,
        d.currency,
        d.channel,
        d.payment_method,
        d.order_at
    from kept d
    join core.customer_map m on m.source_customer_id = d.customer_id
)

select * from final
