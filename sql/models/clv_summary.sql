-- models.clv_summary: the BG/NBD + Gamma-Gamma sufficient statistics, one row per customer
-- (with at least one completed order on or before $as_of) and resolution.
--
-- Parameters
--   $as_of        DATE     observation date; completed orders with order_date <= $as_of count.
--   $unit_days    INTEGER  time unit of recency and T: 1 (days) or 7 (weeks).
--   $period_days  INTEGER  calendar period of the 'periods' resolution: 1 (UTC day) or 7 (ISO week,
--                          Monday to Sunday, as pandas' 'W' = 'W-SUN').
--   $resolution       VARCHAR  'periods' or 'exact' builds that resolution only (the value step
--                             builds the one it fits), 'both' builds both.
--
-- Resolutions
--   periods  orders in the same calendar period count once and their amounts are summed, exactly as
--            lifetimes.utils.summary_data_from_transaction_data(freq=F, freq_multiplier=M):
--              period_days=1, unit_days=1  ->  freq='D'
--              period_days=7, unit_days=7  ->  freq='W'
--              period_days=1, unit_days=7  ->  freq='D', freq_multiplier=7 (Fader-Hardie's CDNOW summary)
--            Recency and T run between period starts; the observation ends at the start of the
--            period holding $as_of.
--   exact    every completed order counts; recency and T are fractional days from the exact
--            order_at timestamps, divided by $unit_days. The observation ends at the end of the
--            $as_of day ($as_of + 1 day, 00:00 UTC), because orders placed during $as_of count.
--
-- Columns
--   frequency       repeat purchases (purchase periods or orders after the first)
--   recency         time from the first to the last purchase, in units
--   T               time from the first purchase to the end of observation, in units
--   monetary_value  mean value of the REPEAT purchases (the first is excluded, as in lifetimes):
--                   (all purchases - the first) / frequency, the amounts added exactly as DECIMAL;
--                   0 for customers without a repeat purchase
--   first_purchase_at, last_purchase_at  exact timestamps of the first and last completed order
--
-- Each resolution is one aggregate per customer (periods: over the customer's periods), with
-- the first purchase found by arg_min instead of numbering every order in a window.
--
-- The summary is defined once, as the table macro clv_summary_at(as_of, unit_days,
-- period_days, resolution) (a temporary macro of this connection), so that the churn step
-- reads it at its cutoffs without touching the stored table; the last statement stores it
-- at $as_of. Rows come in no particular order.

create or replace temp macro clv_summary_at(summary_as_of, summary_unit_days,
                                           summary_period_days, summary_resolution) as table

with

settings as (
    -- reject units the models do not know instead of silently producing another unit
    select
        case when summary_unit_days in (1, 7) then summary_unit_days::integer
            else error('unit_days must be 1 or 7, got ' || summary_unit_days::varchar) end as unit_days,
        case when summary_period_days in (1, 7) then summary_period_days::integer
            else error('period_days must be 1 or 7, got ' || summary_period_days::varchar) end as period_days,
        summary_as_of::date as as_of
),

period_purchases as (
    -- one row per customer and calendar period; amounts of one period are summed, as lifetimes does
    -- amounts add up as DECIMAL: exact, so reruns agree to the last bit (parallel DOUBLE sums do not)
    select
        transactions.customer_id,
        case when settings.period_days = 7 then date_trunc('week', transactions.order_date)::date
            else transactions.order_date end as period_start,
        sum(transactions.amount::decimal(38, 10)) as amount,
        min(transactions.order_at) as first_order_at,
        max(transactions.order_at) as last_order_at
    from core.transactions as transactions
    cross join settings
    where summary_resolution in ('periods', 'both')
        and transactions.is_completed_order
        and transactions.order_date <= settings.as_of
    group by all
),

periods_summary as (
    select
        'periods' as resolution,
        period_purchases.customer_id,
        count(*) - 1 as frequency,
        date_diff('day', min(period_purchases.period_start), max(period_purchases.period_start))
            / any_value(settings.unit_days) as recency,
        date_diff(
            'day',
            min(period_purchases.period_start),
            any_value(case when settings.period_days = 7 then date_trunc('week', settings.as_of)::date
                else settings.as_of end)
        ) / any_value(settings.unit_days) as "T",
        -- the periods after the first: all of them minus the earliest (period starts are distinct)
        case when count(*) > 1 then
            (sum(period_purchases.amount) - arg_min(period_purchases.amount, period_purchases.period_start))
                / (count(*) - 1)
            else 0 end as monetary_value,
        min(period_purchases.first_order_at) as first_purchase_at,
        max(period_purchases.last_order_at) as last_purchase_at
    from period_purchases
    cross join settings
    group by period_purchases.customer_id
),

exact_summary as (
    select
        'exact' as resolution,
        transactions.customer_id,
        count(*) - 1 as frequency,
        date_diff('microsecond', min(transactions.order_at), max(transactions.order_at))
            / 86400e6 / any_value(settings.unit_days) as recency,
        date_diff('microsecond', min(transactions.order_at), any_value(settings.as_of + 1)::timestamp)
            / 86400e6 / any_value(settings.unit_days) as "T",
        -- the orders after the first; order_id decides which of two orders placed at the same
        -- instant is the first purchase
        case when count(*) > 1 then
            (sum(transactions.amount::decimal(38, 10))
                - arg_min(transactions.amount, {'order_at': transactions.order_at,
                                                'order_id': transactions.order_id})::decimal(38, 10))
                / (count(*) - 1)
            else 0 end as monetary_value,
        min(transactions.order_at) as first_purchase_at,
        max(transactions.order_at) as last_purchase_at
    from core.transactions as transactions
    cross join settings
    where summary_resolution in ('exact', 'both')
        and transactions.is_completed_order
        and transactions.order_date <= settings.as_of
    group by transactions.customer_id
),

final as (
    select * from periods_summary
    union all by name
    select * from exact_summary
)

select * from final;

create or replace table models.clv_summary as
select * from clv_summary_at($as_of, $unit_days, $period_days, $resolution);
