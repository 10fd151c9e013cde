-- models.rfm: one row per customer with at least one completed order on or before $as_of.
--
-- Parameters
--   $as_of  DATE  observation date; only rows with order_date <= $as_of are used.
--
-- Definitions (amounts in currency units, days are UTC calendar days)
--   frequency            completed orders (core.transactions.is_completed_order)
--   recency_days         days from the last completed order's date to $as_of (0 = ordered on $as_of)
--   revenue_total        gross revenue: sum of completed order amounts
--   monetary_value       net revenue: revenue_total plus every negative amount (returns and
--                        refunds as delivered, whatever their status except 'cancelled');
--                        can be 0 or negative when everything was returned
--   average_order_value  revenue_total / frequency (gross, per completed order)
--   orders_total         every order row of the customer, of any status (completed, cancelled,
--                        refunded, returned, zero or negative amounts included)
--   average_gap_days     mean days between consecutive completed orders
--                        ((last - first) / (frequency - 1), fractional); NULL with one order
--   last_gap_days        days between the last two completed orders (fractional); NULL with one order
-- Rows with status refunded/returned and a positive amount are neither revenue nor a deduction:
-- they are the reversed sale itself, which never counted as revenue.

create or replace table models.rfm as

with

transactions as (
    select
        customer_id,
        order_id,
        order_at,
        order_date,
        amount,
        status,
        is_completed_order
    from core.transactions
    where order_date <= $as_of
),

completed_orders as (
    select
        customer_id,
        order_id,
        order_at,
        order_date,
        amount,
        -- order_id breaks ties between orders placed at the same instant, so the gaps are deterministic
        lag(order_at) over (partition by customer_id order by order_at, order_id) as previous_order_at,
        row_number() over (partition by customer_id order by order_at desc, order_id desc) as order_number_from_last
    from transactions
    where is_completed_order
),

completed_summary as (
    -- amounts add up as DECIMAL: exact, so reruns agree to the last bit (parallel DOUBLE sums do not)
    select
        customer_id,
        count(*) as frequency,
        sum(amount::decimal(38, 10))::double as revenue_total,
        min(order_at) as first_purchase_at,
        max(order_at) as last_purchase_at,
        max(order_date) as last_purchase_date,
        max(
            case when order_number_from_last = 1 then
                date_diff('microsecond', previous_order_at, order_at) / 86400e6
            end
        ) as last_gap_days
    from completed_orders
    group by customer_id
),

all_orders_summary as (
    select
        customer_id,
        count(*) as orders_total,
        coalesce(sum(amount::decimal(38, 10)) filter (where amount < 0 and status <> 'cancelled'), 0)::double
            as negative_amount_total
    from transactions
    group by customer_id
),

final as (
    select
        completed_summary.customer_id,
        date_diff('day', completed_summary.last_purchase_date, $as_of::date) as recency_days,
        completed_summary.frequency,
        completed_summary.revenue_total + all_orders_summary.negative_amount_total as monetary_value,
        completed_summary.revenue_total / completed_summary.frequency as average_order_value,
        all_orders_summary.orders_total,
        completed_summary.revenue_total,
        case when completed_summary.frequency > 1 then
            date_diff('microsecond', completed_summary.first_purchase_at, completed_summary.last_purchase_at)
                / 86400e6 / (completed_summary.frequency - 1)
        end as average_gap_days,
        completed_summary.last_gap_days,
        completed_summary.first_purchase_at,
        completed_summary.last_purchase_at
    from completed_summary
    inner join all_orders_summary
        on completed_summary.customer_id = all_orders_summary.customer_id
)

select * from final
