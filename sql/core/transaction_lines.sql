-- core.transaction_lines: valid transaction rows after deduplication, keyed to the
-- surviving customer_id.
-- An order is delivered whole in one file: when a customer's order id arrives again in a
-- later delivery (a re-sent or corrected export), the latest delivery's lines replace the
-- earlier ones. The customer is part of the key, as in core.transactions: exports that
-- reuse order ids (one shop's numbering restarting, two shops in one feed) must not let
-- one customer's delivery replace another customer's order. Rows without an order id are their own order. Within one file,
-- identical rows without an order id are separate purchases (two of the same on one day);
-- across files, the k-th copy of a row in a later delivery is the k-th copy of an earlier
-- one, re-sent. An order line repeated exactly (every field the same) inside one file is a
-- duplicated export line and is kept once, unless the source sets keep_identical_lines.
create or replace table core.transaction_lines as
with valid as (
    select s.*
    from staging.transactions s
    anti join quarantine.transactions q using (_file_sha256, _row_number)
),

-- Exact repeats are found in two passes: a 64-bit hash of every field picks the few
-- candidate lines (a group-by over one integer), then the candidates alone are compared
-- field by field, so a hash collision can never drop a real line.
line_hashes as (
    select _file_sha256, _row_number, hash(_file_sha256, customer_id, order_id, order_at,
               amount, quantity, unit_price, product_id, status, currency, channel,
               payment_method) as line_hash
    from valid
    where order_id is not null and not keeps_identical_lines
),

repeated_lines as (
    select _file_sha256, _row_number
    from (
        select v._file_sha256, v._row_number, row_number() over (
            partition by v._file_sha256, v.customer_id, v.order_id, v.order_at, v.amount,
                         v.quantity, v.unit_price, v.product_id, v.status, v.currency,
                         v.channel, v.payment_method
            order by v._row_number) as copy_number
        from valid v
        semi join (
            select h._file_sha256, h._row_number
            from line_hashes h
            semi join (select line_hash from line_hashes group by line_hash
                       having count(*) > 1) c using (line_hash)
        ) using (_file_sha256, _row_number))
    where copy_number > 1
),

-- The occurrence number needs a sort, so it is computed only for rows without an order id.
keyed as (
    select *, order_id as order_key
    from valid
    anti join repeated_lines using (_file_sha256, _row_number)
    where order_id is not null
    union all by name
    select
        * exclude (row_hash),
        'row-' || row_hash || '-' || row_number() over (
            partition by _file_sha256, row_hash order by _row_number) as order_key
    from (
        select
            *,
            -- each value length-prefixed, a missing one written '-': concat_ws skipped
            -- NULLs, so (a, NULL, b) and (a, b, NULL) hashed alike and one replaced the other
            md5(array_to_string(list_transform(
                [customer_id, order_at::varchar, amount::varchar, quantity::varchar,
                 unit_price::varchar, product_id, status, currency, channel, payment_method],
                lambda v: coalesce(length(v) || ':' || v, '-')), '|')) as row_hash
        from valid
        where order_id is null)
),

-- Orders delivered in more than one file are few; only they need the latest delivery
-- picked. Files are compared by a number (raw.files is small): min/max over 64-character
-- sha256 strings were most of this table's cost. Files of one run share an ingestion time:
-- then the later file name wins, since exports are named by date or sequence
-- (transactions_2025-01-02.csv after ..._01.csv). When every row comes from one file (a
-- first load, a full re-export) nothing was delivered twice, and the group-by over every
-- order is skipped (a quarter of this table's time at 10M rows).
-- Only transaction files: a file that also fed another source has a row per source.
file_numbers as (
    select file_sha256 as _file_sha256, row_number() over (order by file_sha256) as file_no
    from raw.files
    where source = 'transactions'
),

redelivered_orders as (
    select k.customer_id, k.order_key
    from keyed k
    join file_numbers f using (_file_sha256)
    where (select count(*) from raw.files where source = 'transactions' and rows_read > 0) > 1
    group by k.customer_id, k.order_key
    having min(f.file_no) <> max(f.file_no)
),

latest_delivery as (
    select customer_id, order_key,
           arg_max(_file_sha256, (_ingested_at, _source_file, _file_sha256)) as _file_sha256
    from keyed
    semi join redelivered_orders using (customer_id, order_key)
    group by customer_id, order_key
),

kept as (
    select k.* from keyed k anti join redelivered_orders r using (customer_id, order_key)
    union all
    select k.* from keyed k join latest_delivery l using (customer_id, order_key, _file_sha256)
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
