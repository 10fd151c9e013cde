-- models.clv_holdout: calibration/holdout split for checking the BG/NBD model out of sample,
-- one row per customer (first completed order on or before $calibration_end) and resolution.
--
-- Parameters
--   $calibration_end  DATE     last day of the calibration period (inclusive)
--   $as_of            DATE     last day of the holdout period (inclusive); $as_of > $calibration_end
--   $unit_days        INTEGER  time unit of recency, T and duration_holdout: 1 (days) or 7 (weeks)
--   $period_days      INTEGER  calendar period of the 'periods' resolution: 1 (day) or 7 (ISO week)
--
-- The *_cal columns are exactly models.clv_summary built with $as_of = $calibration_end (same
-- resolutions, same definitions). The holdout columns follow
-- lifetimes.utils.calibration_and_holdout_data:
--   frequency_holdout  purchases in the holdout window ($calibration_end < order_date <= $as_of):
--                      distinct calendar periods ('periods'; a week that straddles
--                      $calibration_end counts in both windows, as in lifetimes) or orders ('exact')
--   duration_holdout   length of the holdout window in units: between the period starts of
--                      $calibration_end and $as_of ('periods'), or ($as_of - $calibration_end) days ('exact')

create or replace table models.clv_holdout as

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
    select
        case when $unit_days in (1, 7) then $unit_days::integer
            else error('unit_days must be 1 or 7, got ' || $unit_days::varchar) end as unit_days,
        case when $period_days in (1, 7) then $period_days::integer
            else error('period_days must be 1 or 7, got ' || $period_days::varchar) end as period_days,
        case when $calibration_end < $as_of then $calibration_end::date
            else error('calibration_end must be before as_of') end as calibration_end,
        $as_of::date as as_of
),

calibration_transactions as (
    select transactions.*
    from transactions
    cross join settings
    where transactions.order_date <= settings.calibration_end
),

holdout_transactions as (
    select transactions.*
    from transactions
    cross join settings
    where transactions.order_date > settings.calibration_end
),

-- calibration summary: the same statistics as models.clv_summary, observed up to $calibration_end

period_purchases as (
    -- amounts add up as DECIMAL: exact, so reruns agree to the last bit (parallel DOUBLE sums do not)
    select
        calibration_transactions.customer_id,
        case when settings.period_days = 7 then date_trunc('week', calibration_transactions.order_date)::date
            else calibration_transactions.order_date end as period_start,
        sum(calibration_transactions.amount::decimal(38, 10)) as amount
    from calibration_transactions
    cross join settings
    group by all
),

numbered_periods as (
    select
        *,
        row_number() over (partition by customer_id order by period_start) as purchase_number
    from period_purchases
),

periods_calibration as (
    select
        'periods' as resolution,
        numbered_periods.customer_id,
        count(*) - 1 as frequency_cal,
        date_diff('day', min(numbered_periods.period_start), max(numbered_periods.period_start))
            / any_value(settings.unit_days) as recency_cal,
        date_diff(
            'day',
            min(numbered_periods.period_start),
            any_value(case when settings.period_days = 7 then date_trunc('week', settings.calibration_end)::date
                else settings.calibration_end end)
        ) / any_value(settings.unit_days) as "T_cal",
        coalesce(avg(numbered_periods.amount) filter (where numbered_periods.purchase_number > 1), 0)
            as monetary_value_cal
    from numbered_periods
    cross join settings
    group by numbered_periods.customer_id
),

numbered_orders as (
    select
        *,
        row_number() over (partition by customer_id order by order_at, order_id) as purchase_number
    from calibration_transactions
),

exact_calibration as (
    select
        'exact' as resolution,
        numbered_orders.customer_id,
        count(*) - 1 as frequency_cal,
        date_diff('microsecond', min(numbered_orders.order_at), max(numbered_orders.order_at))
            / 86400e6 / any_value(settings.unit_days) as recency_cal,
        date_diff('microsecond', min(numbered_orders.order_at), any_value(settings.calibration_end + 1)::timestamp)
            / 86400e6 / any_value(settings.unit_days) as "T_cal",
        coalesce(avg(numbered_orders.amount::decimal(38, 10)) filter (where numbered_orders.purchase_number > 1), 0)
            as monetary_value_cal
    from numbered_orders
    cross join settings
    group by numbered_orders.customer_id
),

-- holdout purchases

periods_holdout as (
    select
        'periods' as resolution,
        holdout_transactions.customer_id,
        count(distinct case when settings.period_days = 7
            then date_trunc('week', holdout_transactions.order_date)::date
            else holdout_transactions.order_date end) as frequency_holdout
    from holdout_transactions
    cross join settings
    group by holdout_transactions.customer_id
),

exact_holdout as (
    select
        'exact' as resolution,
        customer_id,
        count(*) as frequency_holdout
    from holdout_transactions
    group by customer_id
),

calibration as (
    select * from periods_calibration
    union all by name
    select * from exact_calibration
),

holdout as (
    select * from periods_holdout
    union all by name
    select * from exact_holdout
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
        coalesce(holdout.frequency_holdout, 0) as frequency_holdout,
        durations.duration_holdout
    from calibration
    inner join durations
        on calibration.resolution = durations.resolution
    left join holdout
        on calibration.resolution = holdout.resolution
        and calibration.customer_id = holdout.customer_id
)

select * from final
