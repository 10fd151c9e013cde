-- Parsing helpers shared by the staging models. Values that do not parse become NULL;
-- the validation suite turns those NULLs into quarantine rows with a rule name.

-- Text -> UTC timestamp. fmt is a list of strptime formats tried in order (the first that
-- parses wins); [''] means ISO 8601. Naive values are read in zone tz; values carrying Z or
-- an offset keep their own zone.
-- (The zone conversion is skipped for UTC sources: it costs more than the parse itself.)
create or replace macro parse_ts(txt, fmt, tz) as
    case
        when txt is null then null::timestamp
        when fmt[1] <> '' and tz = 'UTC' then try_strptime(txt, if(fmt[1] = '', ['%Y'], fmt))::timestamp
        when fmt[1] <> '' then timezone('UTC', timezone(tz, try_strptime(txt, if(fmt[1] = '', ['%Y'], fmt))::timestamp))
        when regexp_matches(txt, '(Z|[+-]\d\d(:?\d\d)?)$')
            then timezone('UTC', try_cast(txt as timestamptz))
        when tz = 'UTC' then try_cast(txt as timestamp)
        else timezone('UTC', timezone(tz, try_cast(txt as timestamp)))
    end;

-- Text -> date. fmt as for parse_ts: a list tried in order, [''] for ISO 8601. (DuckDB
-- binds every CASE branch, so the unused strptime branch gets a harmless format instead of
-- an empty one.)
create or replace macro parse_date(txt, fmt) as
    case
        when txt is null then null::date
        when fmt[1] <> '' then try_strptime(txt, if(fmt[1] = '', ['%Y'], fmt))::date
        else try_cast(txt as date)
    end;

-- Text -> decimal. Currency signs and spaces are dropped. With decimal_comma, '1.234,5'
-- means 1234.5. Without it, only well-formed thousands groups ('1,234.50') lose their
-- commas: '3,5' stays unparseable rather than silently becoming 35.
create or replace macro parse_number(txt, decimal_comma) as
    case
        -- most values are plain numbers: skip the regular expressions for them
        when not decimal_comma and try_cast(txt as decimal(18, 4)) is not null
            then try_cast(txt as decimal(18, 4))
        else try_cast(
        case
            when txt is null then null
            when decimal_comma then replace(replace(regexp_replace(txt, '[\s€$£]', '', 'g'), '.', ''), ',', '.')
            when regexp_matches(regexp_replace(txt, '[\s€$£]', '', 'g'), '^[+-]?\d{1,3}(,\d{3})+(\.\d+)?$')
                then replace(regexp_replace(txt, '[\s€$£]', '', 'g'), ',', '')
            else regexp_replace(txt, '[\s€$£]', '', 'g')
        end as decimal(18, 4))
    end;

-- An id that is a missing-value marker (NA, NULL, NaN, ... : the source's missing_values,
-- lower-cased) is no id: NULL, so the row is quarantined by <field>_present, or, for an
-- order id, the line is its own order.
create or replace macro id_or_null(txt, markers) as
    case when list_contains(markers, lower(txt)) then null else txt end;

create or replace macro parse_bool(txt) as
    case
        when lower(trim(txt)) in ('1', 'true', 't', 'yes', 'y', 'ja', 'oui', 'opt-in', 'opted_in', 'subscribed') then true
        when lower(trim(txt)) in ('0', 'false', 'f', 'no', 'n', 'nein', 'non', 'opt-out', 'opted_out', 'unsubscribed') then false
        else null
    end;

-- Status synonyms seen in shop exports, mapped to the four canonical statuses. A missing
-- status means completed; anything else is kept (lower-cased) for validation to flag.
create or replace macro normalise_status(txt) as
    case
        when txt is null then 'completed'
        when lower(trim(txt)) in ('completed', 'complete', 'paid', 'shipped', 'delivered', 'fulfilled', 'ok') then 'completed'
        when lower(trim(txt)) in ('cancelled', 'canceled', 'cancel', 'void', 'voided') then 'cancelled'
        when lower(trim(txt)) in ('refunded', 'refund') then 'refunded'
        when lower(trim(txt)) in ('returned', 'return') then 'returned'
        else lower(trim(txt))
    end;

-- Name key for matching people: case, accents, punctuation and word order do not matter.
create or replace macro name_key(txt) as
    nullif(array_to_string(list_sort(list_filter(
        string_split(regexp_replace(lower(strip_accents(trim(txt))), '[[:punct:][:space:]]+', ' ', 'g'), ' '),
        lambda x: x <> '')), ' '), '');

