-- staging.events: every raw behaviour event, typed and normalised; no row dropped.
-- Stages the rows of the pending files only (temp.main.pending_files, written by
-- pipelines/load/processing.py); pipelines/load/clean.py merges them into staging.events.
create or replace temp table staged_events as
with source as (
    select * from raw.events
    where _file_sha256 in (select file_sha256 from temp.main.pending_files)
),

final as (
    select
        _file_sha256,
        _source_file,
        _row_number,
        id_or_null(customer_id, $missing_values) as customer_id,
        id_or_null(event_id, $missing_values) as event_id,
        lower(replace(trim(event_type), ' ', '_')) as event_type,
        lower(channel) as channel,
        value as value_text,
        parse_number(value, $decimal_comma)::double as value,
        properties,
        -- the survey a score belongs to decides its valid range (NPS 0-10, CSAT 1-5)
        lower(try(json_extract_string(properties, '$.survey'))) as survey,
        parse_ts(event_ts, $timestamp_format, $timezone) as event_at,
        _ingested_at
    from source
)

select * from final
