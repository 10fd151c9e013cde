-- marts.model_parameters, this run's rows: every fitted model parameter of the run with
-- its standard error (NULL where the fit gives none, e.g. the penalizer used).
-- pipelines/marts.py checks them and appends them to the history table
-- marts.model_parameters (a rerun's rows are replaced). A model that was skipped or failed
-- has no rows here; marts.model_metrics says why (metric is_fitted).
--
-- Parameters
--   $as_of   DATE
--   $run_id  VARCHAR
create or replace temp table temp.main.model_parameters_run as
with parameters as (
    select * from models.model_parameters
    where run_id = $run_id
),

final as (
    select
        run_id,
        $as_of::date as as_of,
        model,
        parameter,
        value,
        std_error
    from parameters
)

select * from final
order by model, parameter
