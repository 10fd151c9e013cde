-- models.clv_summary: the BG/NBD + Gamma-Gamma sufficient statistics, one row per customer
-- (with at least one completed order on or before $as_of) and resolution.
--
-- Parameters
--   $as_of        DATE     observation date; completed orders with order_date <= $as_of count.
--   $unit_days    INTEGER  time unit of recency and T: 1 (days) or 7 (weeks).
--   $period_days  INTEGER  calendar period of the 'periods' resolution: 1 (UTC day) or 7 (ISO week,
--                          Monday to Sunday, as pandas' 'W' = 'W-SUN').
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
--   monetary_value  mean value of the REPEAT purchases (the first is excluded, as in lifetimes);
--                   0 for customers without a repeat purchase
--   first_purchase_at, last_purchase_at  exact timestamps of the first and last completed order

create or replace table models.clv_summary as

with

transactions as (
    select
        customer_id,
        order_id,
        order_at,
        order_date,
        amount
    from core.transactions
    where is_completed_order
        and order_date <= $as_of
),

settings as (
    -- reject units the models do not know instead of silently producing another unit
    select
        case when $unit_days in (1, 7) then $unit_days::integer
            else error('unit_days must be 1 or 7, got ' || $unit_days::varchar) end as unit_days,
        case when $period_days in (1, 7) then $period_days::integer
            else error('period_days must be 1 or 7, got ' || $period_days::varchar) end as period_days,
        $as_of::date as as_of
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
    from transactions
    cross join settings
    group by all
),

numbered_periods as (
    select
        *,
        row_number() over (partition by customer_id order by period_start) as purchase_number
    from period_purchases
),

periods_summary as (
    select
        'periods' as resolution,
        numbered_periods.customer_id,
        count(*) - 1 as frequency,
        date_diff('day', min(numbered_periods.period_start), max(numbered_periods.period_start))
            / any_value(settings.unit_days) as recency,
        date_diff(
            'day',
            min(numbered_periods.period_start),
            any_value(case when settings.period_days = 7 then date_trunc('week', settings.as_of)::date
                else settings.as_of end)
        ) / any_value(settings.unit_days) as "T",
        coalesce(avg(numbered_periods.amount) filter (where numbered_periods.purchase_number > 1), 0)
            as monetary_value,
        min(numbered_periods.first_order_at) as first_purchase_at,
        max(numbered_periods.last_order_at) as last_purchase_at
    from numbered_periods
    cross join settings
    group by numbered_periods.customer_id
),

numbered_orders as (
    select
        *,
        -- order_id decides which of two orders placed at the same instant is the first purchase
        row_number() over (partition by customer_id order by order_at, order_id) as purchase_number
    from transactions
),

exact_summary as (
    select
        'exact' as resolution,
        numbered_orders.customer_id,
        count(*) - 1 as frequency,
        date_diff('microsecond', min(numbered_orders.order_at), max(numbered_orders.order_at))
            / 86400e6 / any_value(settings.unit_days) as recency,
        date_diff('microsecond', min(numbered_orders.order_at), any_value(settings.as_of + 1)::timestamp)
            / 86400e6 / any_value(settings.unit_days) as "T",
        coalesce(avg(numbered_orders.amount::decimal(38, 10)) filter (where numbered_orders.purchase_number > 1), 0)
            as monetary_value,
        min(numbered_orders.order_at) as first_purchase_at,
        max(numbered_orders.order_at) as last_purchase_at
    from numbered_orders
    cross join settings
    group by numbered_orders.customer_id
),

final as (
    select * from periods_summary
    union all by name
    select * from exact_summary
)

select * from final
