-- core.events: valid behaviour events, deduplicated, keyed to the surviving customer_id.
-- An event id seen again (a re-sent export) is one event: the latest delivery wins.
-- Events without an id are keyed by their values and their occurrence in the file, as
-- order-less transaction rows are (see core/transaction_lines.sql).
create or replace table core.events as
with staged as (
    select * from staging.events
),

quarantined as (
    select _file_sha256, _row_number from quarantine.events
),

valid as (
    select s.*
    from staged s
    anti join quarantined q using (_file_sha256, _row_number)
),

keyed as (
    select
        *,
        coalesce(event_id, 'evt-' || md5(concat_ws('|', customer_id, event_at, event_type,
                                                   channel, value, properties))
                           || '-' || row_number() over (
                               partition by _file_sha256, customer_id, event_at, event_type,
                                   channel, value, properties
                               order by _row_number)) as event_key
    from valid
),

deduplicated as (
    select *
    from keyed
    qualify row_number() over (
        partition by event_key
        order by _ingested_at desc, _source_file desc, _file_sha256, _row_number) = 1
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
        d.event_at
    from deduplicated d
    join core.customer_map m on m.source_customer_id = d.customer_id
)

select * from final
