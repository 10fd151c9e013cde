-- models.churn_labels: one row per customer with at least one completed order on or
-- before $cutoff (DATE); is_churned = no completed order in the $horizon_days
-- (INTEGER) days after it, i.e. order_date in (cutoff, cutoff + horizon_days].
-- Dated labels live here, never inside a model's fit.
create or replace table models.churn_labels as

with

completed_orders as (
    select
        customer_id,
        order_date
    from core.transactions
    where is_completed_order
),

parameters as (
    select
        cast($cutoff as date) as cutoff_date,
        cast($horizon_days as integer) as horizon_days
),

customers_at_cutoff as (
    select completed_orders.customer_id
    from completed_orders
    cross join parameters
    where completed_orders.order_date <= parameters.cutoff_date
    group by completed_orders.customer_id
),

-- An order on the cutoff day belongs to the history, one on the last day of the
-- horizon still counts as a purchase inside it.
customers_buying_in_horizon as (
    select completed_orders.customer_id
    from completed_orders
    cross join parameters
    where completed_orders.order_date > parameters.cutoff_date
      and completed_orders.order_date <= parameters.cutoff_date + parameters.horizon_days
    group by completed_orders.customer_id
),

final as (
    select
        customers_at_cutoff.customer_id,
        customers_buying_in_horizon.customer_id is null as is_churned,
        parameters.horizon_days,
        parameters.cutoff_date,
        cast(parameters.cutoff_date + parameters.horizon_days as date) as horizon_end_date
    from customers_at_cutoff
    cross join parameters
    left join customers_buying_in_horizon
        on customers_at_cutoff.customer_id = customers_buying_in_horizon.customer_id
)

select * from final
order by customer_id
