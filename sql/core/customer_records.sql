-- core.customer_records: valid customer records, one per delivered record; exact re-sends
-- of a record (same id, same values) are kept once (the rest go to core.duplicate_rows).
create or replace table core.customer_records as
with staged as (
    select * from staging.customers
),

quarantined as (
    select _file_sha256, _row_number from quarantine.customers
),

valid as (
    select s.*
    from staged s
    anti join quarantined q using (_file_sha256, _row_number)
),

ranked as (
    select
        *,
        row_number() over (
            partition by customer_id, email, phone, full_name, birth_date, gender, city,
                country, signup_at, marketing_consent, updated_at
            order by _ingested_at, _file_sha256, _row_number
        ) as copy_number
    from valid
),

final as (
    select
        _file_sha256, _source_file, _row_number,
        customer_id, email, phone, full_name, name_key, birth_date, gender, city, country,
        signup_at, marketing_consent, updated_at, _ingested_at
    from ranked
    where copy_number = 1
)

select * from final
