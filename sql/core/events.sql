-- core.events: valid behaviour events, deduplicated, keyed to the surviving customer_id.
-- An event id seen again (a re-sent export) is one event: the latest delivery wins.
-- Events without an id are keyed by their values and their occurrence in the file, as
-- order-less transaction rows are (see core/transaction_lines.sql).
create or replace table core.events as
with valid as (
    select s.*
    from staging.events s
    anti join quarantine.events q using (_file_sha256, _row_number)
),

-- The occurrence number needs a sort, so it is computed only for events without an id.
keyed as (
    select *, event_id as event_key
    from valid
    where event_id is not null
    union all by name
    select
        *,
        -- each value length-prefixed, a missing one written '-' (concat_ws skips NULLs,
        -- so two events whose missing fields differed got one key and one was dropped)
        'evt-' || md5(array_to_string(list_transform(
            [customer_id, event_at::varchar, event_type, channel, value::varchar, properties],
            lambda v: coalesce(length(v) || ':' || v, '-')), '|'))
        || '-' || row_number() over (
            partition by _file_sha256, customer_id, event_at, event_type, channel, value,
                properties
            order by _row_number) as event_key
    from valid
    where event_id is null
),

-- Keys delivered more than once are few; a hash aggregate finds them, and only their rows
-- go through the sort that picks the latest delivery.
repeated_keys as (
    select event_key from keyed group by event_key having count(*) > 1
),

deduplicated as (
    select * from keyed anti join repeated_keys using (event_key)
    union all
    select * from (
        select k.* from keyed k semi join repeated_keys using (event_key)
        qualify row_number() over (
            partition by event_key
            order by _ingested_at desc, _source_file desc, _file_sha256, _row_number) = 1)
),

final as (
    select
        d._file_sha256,
        d._row_number,
        m.customer_id,
        d.event_key as event_id,
        d.event_type,
        d.channel,
        d.value,
        d.properties,
        d.event_at,
        d.customer_id as source_customer_id
    from deduplicated d
    join core.customer_map m on m.source_customer_id = d.customer_id
)

select * from final
