-- staging.customers: every raw customer record, typed and normalised; no row dropped.
-- Stages the rows of the pending files only (temp.main.pending_files, written by
-- pipelines/load/processing.py); pipelines/load/clean.py merges them into staging.customers.
-- Phones are normalised to E.164 in Python (libphonenumber) into staging.phone_numbers.
create or replace temp table staged_customers as
with source as (
    select * from raw.customers
    where _file_sha256 in (select file_sha256 from temp.main.pending_files)
),

final as (
    select
        _file_sha256,
        _source_file,
        _row_number,
        id_or_null(customer_id, $missing_values) as customer_id,
        lower(trim(email)) as email,
        phone as phone_text,
        regexp_replace(trim(full_name), '\s+', ' ', 'g') as full_name,
        name_key(full_name) as name_key,
        birth_date as birth_date_text,
        parse_date(birth_date, $date_format) as birth_date,
        lower(gender) as gender,
        city,
        upper(country) as country,
        marketing_consent as marketing_consent_text,
        parse_bool(marketing_consent) as marketing_consent,
        signup_ts as signup_text,
        parse_ts(signup_ts, $timestamp_format, $timezone) as signup_at,
        updated_at as updated_text,
        parse_ts(updated_at, $timestamp_format, $timezone) as updated_at,
        _ingested_at
    from source
)

select * from final
