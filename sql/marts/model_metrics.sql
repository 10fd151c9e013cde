-- marts.model_metrics, this run's rows: every model metric of the run next to its
-- baseline, plus one row per model the run tried (models.model_runs) with metric
-- is_fitted (1 = fitted; 0 = skipped or failed, the reason in message).
-- pipelines/marts.py checks them and appends them to the history table
-- marts.model_metrics (a rerun's rows are replaced).
--
-- Parameters
--   $as_of   DATE
--   $run_id  VARCHAR
create or replace temp table temp.main.model_metrics_run as
with metrics as (
    select * from models.model_metrics
    where run_id = $run_id
),

model_runs as (
    select * from models.model_runs
    where run_id = $run_id
),

fit_statuses as (
    select
        run_id,
        model,
        'is_fitted' as metric,
        case when status = 'fitted' then 1.0 else 0.0 end::double as value,
        null::double as baseline,
        status || coalesce(': ' || message, '') as message
    from model_runs
),

final as (
    select
        run_id,
        $as_of::date as as_of,
        model,
        metric,
        value,
        baseline,
        null::varchar as message
    from metrics
    union all
    select
        run_id,
        $as_of::date as as_of,
        model,
        metric,
        value,
        baseline,
        message
    from fit_statuses
)

select * from final
order by model, metric
