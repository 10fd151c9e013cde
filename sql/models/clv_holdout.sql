-- models.clv_holdout: calibration/holdout split for checking the BG/NBD model out of sample,
-- one row per customer (first completed order on or before $calibration_end) and resolution.
--
-- Parameters
--   $calibration_end  DATE     last day of the calibration period (inclusive)
--   $as_of            DATE     last day of the holdout period (inclusive); $as_of > $calibration_end
--   $unit_days        INTEGER  time unit of recency, T and duration_holdout: 1 (days) or 7 (weeks)
--   $period_days      INTEGER  calendar period of the 'periods' resolution: 1 (day) or 7 (ISO week)
--   $resolution       VARCHAR  'periods' or 'exact' builds that resolution only (the value step
--                             builds the one it fits), 'both' builds both.
--
-- The *_cal columns are exactly models.clv_summary built with $as_of = $calibration_end (same
-- resolutions, same definitions). The holdout columns follow
-- lifetimes.utils.calibration_and_holdout_data:
--   frequency_holdout  purchases in the holdout window ($calibration_end < order_date <= $as_of):
--                      distinct calendar periods ('periods'; a week that straddles
--                      $calibration_end counts in both windows, as in lifetimes) or orders ('exact')
--   duration_holdout   length of the holdout window in units: between the period starts of
--                      $calibration_end and $as_of ('periods'), or ($as_of - $calibration_end) days ('exact')
-- For the next-order-date backtest (both resolutions alike):
--   last_purchase_at_cal      timestamp of the last completed order up to $calibration_end
--   first_holdout_order_date  date of the first completed order in the holdout window (null: none)
--
-- Each resolution is one aggregate per customer over both windows (FILTER), as in
-- models.clv_summary.

create or replace table models.clv_holdout as

with

settings as (
    select
        case when $unit_days in (1, 7) then $unit_days::integer
            else error('unit_days must be 1 or 7, got ' || $unit_days::varchar) end as unit_days,
        case when $period_days in (1, 7) then $period_days::integer
            else error('period_days must be 1 or 7, got ' || $period_days::varchar) end as period_days,
        case when $calibration_end < $as_of then $calibration_end::date
            else error('calibration_end must be before as_of') end as calibration_end,
        $as_of::date as as_of
),

period_purchases as (
    -- one row per customer, calendar period and window: a week straddling $calibration_end has
    -- a row in each window. Amounts add up as DECIMAL: exact, so reruns agree to the last bit.
    select
        transactions.customer_id,
        case when settings.period_days = 7 then date_trunc('week', transactions.order_date)::date
            else transactions.order_date end as period_start,
        transactions.order_date <= settings.calibration_end as in_calibration,
        sum(transactions.amount::decimal(38, 10)) as amount,
        max(transactions.order_at) as last_order_at,
        min(transactions.order_date) as first_order_date
    from core.transactions as transactions
    cross join settings
    where $resolution in ('periods', 'both')
        and transactions.is_completed_order
        and transactions.order_date <= settings.as_of
    group by all
),

periods_customers as (
    select
        'periods' as resolution,
        period_purchases.customer_id,
        count(*) filter (where period_purchases.in_calibration) as purchases_cal,
        min(period_purchases.period_start) filter (where period_purchases.in_calibration) as first_period,
        max(period_purchases.period_start) filter (where period_purchases.in_calibration) as last_period,
        sum(period_purchases.amount) filter (where period_purchases.in_calibration) as amount_cal,
        arg_min(period_purchases.amount, period_purchases.period_start)
            filter (where period_purchases.in_calibration) as first_amount,
        count(*) filter (where not period_purchases.in_calibration) as frequency_holdout,
        max(period_purchases.last_order_at) filter (where period_purchases.in_calibration)
            as last_purchase_at_cal,
        min(period_purchases.first_order_date) filter (where not period_purchases.in_calibration)
            as first_holdout_order_date
    from period_purchases
    group by period_purchases.customer_id
    having count(*) filter (where period_purchases.in_calibration) > 0
),

periods_calibration as (
    select
        periods_customers.resolution,
        periods_customers.customer_id,
        periods_customers.purchases_cal - 1 as frequency_cal,
        date_diff('day', periods_customers.first_period, periods_customers.last_period)
            / settings.unit_days as recency_cal,
        date_diff(
            'day',
            periods_customers.first_period,
            case when settings.period_days = 7 then date_trunc('week', settings.calibration_end)::date
                else settings.calibration_end end
        ) / settings.unit_days as "T_cal",
        case when periods_customers.purchases_cal > 1 then
            (periods_customers.amount_cal - periods_customers.first_amount) / (periods_customers.purchases_cal - 1)
            else 0 end as monetary_value_cal,
        periods_customers.frequency_holdout,
        periods_customers.last_purchase_at_cal,
        periods_customers.first_holdout_order_date
    from periods_customers
    cross join settings
),

exact_customers as (
    select
        'exact' as resolution,
        transactions.customer_id,
        count(*) filter (where transactions.order_date <= settings.calibration_end) as purchases_cal,
        min(transactions.order_at) filter (where transactions.order_date <= settings.calibration_end)
            as first_order_at,
        max(transactions.order_at) filter (where transactions.order_date <= settings.calibration_end)
            as last_purchase_at_cal,
        sum(transactions.amount::decimal(38, 10))
            filter (where transactions.order_date <= settings.calibration_end) as amount_cal,
        -- order_id decides which of two orders placed at the same instant is the first purchase
        arg_min(transactions.amount, {'order_at': transactions.order_at, 'order_id': transactions.order_id})
            filter (where transactions.order_date <= settings.calibration_end) as first_amount,
        count(*) filter (where transactions.order_date > settings.calibration_end) as frequency_holdout,
        min(transactions.order_date) filter (where transactions.order_date > settings.calibration_end)
            as first_holdout_order_date
    from core.transactions as transactions
    cross join settings
    where $resolution in ('exact', 'both')
        and transactions.is_completed_order
        and transactions.order_date <= settings.as_of
    group by transactions.customer_id
    having count(*) filter (where transactions.order_date <= settings.calibration_end) > 0
),

exact_calibration as (
    select
        exact_customers.resolution,
        exact_customers.customer_id,
        exact_customers.purchases_cal - 1 as frequency_cal,
        date_diff('microsecond', exact_customers.first_order_at, exact_customers.last_purchase_at_cal)
            / 86400e6 / settings.unit_days as recency_cal,
        date_diff('microsecond', exact_customers.first_order_at, (settings.calibration_end + 1)::timestamp)
            / 86400e6 / settings.unit_days as "T_cal",
        case when exact_customers.purchases_cal > 1 then
            (exact_customers.amount_cal - exact_customers.first_amount::decimal(38, 10))
                / (exact_customers.purchases_cal - 1)
            else 0 end as monetary_value_cal,
        exact_customers.frequency_holdout,
        exact_customers.last_purchase_at_cal,
        exact_customers.first_holdout_order_date
    from exact_customers
    cross join settings
),

calibration as (
    select * from periods_calibration
    union all by name
    select * from exact_calibration
),

durations as (
    select
        'periods' as resolution,
        date_diff(
            'day',
            case when period_days = 7 then date_trunc('week', calibration_end)::date else calibration_end end,
            case when period_days = 7 then date_trunc('week', as_of)::date else as_of end
        ) / unit_days as duration_holdout
    from settings
    union all
    select
        'exact' as resolution,
        date_diff('day', calibration_end, as_of) / unit_days as duration_holdout
    from settings
),

final as (
    select
        calibration.resolution,
        calibration.customer_id,
        calibration.frequency_cal,
        calibration.recency_cal,
        calibration."T_cal",
        calibration.monetary_value_cal,
        calibration.frequency_holdout,
        durations.duration_holdout,
        calibration.last_purchase_at_cal,
        calibration.first_holdout_order_date
    from calibration
    inner join durations
        on calibration.resolution = durations.resolution
)

select * from final
