-- staging.transactions: every raw transaction row, typed and normalised; no row dropped.
-- Stages the rows of the pending files only (temp.main.pending_files, written by
-- pipelines/load/processing.py); pipelines/load/clean.py merges them into staging.transactions.
-- Values that fail to parse are NULL here and quarantined by the validation suite.
create or replace temp table staged_transactions as
with source as (
    select * from raw.transactions
    where _file_sha256 in (select file_sha256 from temp.main.pending_files)
),

parsed as (
    select
        _file_sha256,
        _source_file,
        _row_number,
        id_or_null(customer_id, $missing_values) as customer_id,
        id_or_null(order_id, $missing_values) as order_id,
        id_or_null(product_id, $missing_values) as product_id,
        upper(currency) as currency,
        lower(channel) as channel,
        lower(payment_method) as payment_method,
        status as status_text,
        quantity as quantity_text,
        unit_price as unit_price_text,
        amount as amount_text,
        parse_number(quantity, $decimal_comma) as quantity,
        parse_number(unit_price, $decimal_comma) as unit_price,
        parse_ts(order_ts, $timestamp_format, $timezone) as order_at,
        _ingested_at
    from source
),

-- amount may be delivered, or derived from its line's quantity x unit price.
amounts as (
    select
        *,
        case
            when amount_text is not null then parse_number(amount_text, $decimal_comma)
            -- widened first: DECIMAL(18, 4) x DECIMAL(18, 4) overflows from 10^14 and stops
            -- the step; an implausible product is quarantined by amount_plausible instead
            else round(quantity::decimal(38, 4) * unit_price, 4)
        end::decimal(38, 4) as amount_in_currency
    from parsed
),

-- Amounts in other currencies are converted to the base currency ([currency] in the
-- config), so that revenue never adds pounds to euros. Without a rate, amount is NULL
-- and validation quarantines the row (currency_convertible).
fx as (
    select * from staging.fx_rates
),

mixed as (
    select count(*) > 1 and not bool_or(is_configured) as is_mixed_unconfigured from fx
),

converted as (
    select
        a.*,
        case
            when a.currency is null then a.amount_in_currency
            when (select is_mixed_unconfigured from mixed) then null
            else round(a.amount_in_currency / f.units_per_base, 4)
        end as amount,
        a.currency is not null and (f.currency is null or (select is_mixed_unconfigured from mixed))
            as is_unconvertible
    from amounts a
    left join fx f on f.currency = a.currency
),

final as (
    select
        _file_sha256,
        _source_file,
        _row_number,
        customer_id,
        order_id,
        product_id,
        quantity,
        unit_price,
        amount,
        amount_in_currency,
        currency,
        case when is_unconvertible then currency end as unconvertible_currency,
        channel,
        payment_method,
        -- a negative amount on a "completed" line is a return
        case
            when normalise_status(status_text) = 'completed' and amount < 0 then 'returned'
            else normalise_status(status_text)
        end as status,
        quantity_text,
        unit_price_text,
        order_at,
        $keep_identical_lines as keeps_identical_lines,
        _ingested_at
    from converted
)

select * from final
