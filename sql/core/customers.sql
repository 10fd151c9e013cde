-- core.customers: one row per real customer (surviving customer_id).
-- Survivorship, per field: the value from the most recently updated record that has one
-- (updated_at, then delivery time), so a correction in a newer export wins while a blank
-- in a newer export does not erase what we knew. Consent follows the same rule: the
-- latest statement of consent, never an older "yes" over a newer "no". Records of one
-- run share an ingestion time: then the later file name wins (exports are named by date
-- or sequence), as for orders; the file and row number make the order total, so a tie
-- never leaves the pick to the order DuckDB's threads happen to see the rows in.
create or replace table core.customers as
with records as (
    select r.*, m.customer_id as unified_id
    from core.customer_records r
    join core.customer_map m on m.source_customer_id = r.customer_id
),

-- One sort ranks every record by that order; the aggregates below compare the integer
-- rank, which is several times cheaper than comparing the five-part key in each of them.
ordered as (
    select
        *,
        row_number() over (
            order by coalesce(updated_at, signup_at, timestamp '1900-01-01'), _ingested_at,
                     _source_file, _file_sha256, _row_number) as recency_key
    from records
),

profiles as (
    select
        unified_id as customer_id,
        arg_max(email, recency_key) filter (where email is not null) as email,
        arg_max(phone, recency_key) filter (where phone is not null) as phone,
        arg_max(full_name, recency_key) filter (where full_name is not null) as full_name,
        arg_max(birth_date, recency_key) filter (where birth_date is not null) as birth_date,
        arg_max(gender, recency_key) filter (where gender is not null) as gender,
        arg_max(city, recency_key) filter (where city is not null) as city,
        arg_max(country, recency_key) filter (where country is not null) as country,
        min(signup_at) as signup_at,
        arg_max(marketing_consent, recency_key) filter (where marketing_consent is not null)
            as marketing_consent,
        max(updated_at) as updated_at,
        count(*) as source_record_count
    from ordered
    group by unified_id
),

ids as (
    select distinct customer_id from core.customer_map
),

final as (
    select
        i.customer_id,
        p.email,
        p.phone,
        p.full_name,
        p.birth_date,
        p.gender,
        p.city,
        p.country,
        coalesce(p.marketing_consent, false) as marketing_consent,
        p.customer_id is not null as is_in_customer_master,
        coalesce(p.source_record_count, 0) as source_record_count,
        p.signup_at,
        p.updated_at
    from ids i
    left join profiles p using (customer_id)
)

select * from final
