//! Hand-written SQL that PostgreSQL prepares once per connection.
//!
//! Diesel never caches what `sql_query` runs: every execution is parsed and planned again,
//! and for a statement with a CTE or two the planning costs as much as the running. [`sql`]
//! takes `'static` text instead, so each statement reads the same every time and the
//! connection's statement cache can key it by its text: prepared on first use, afterwards
//! only bound and executed. Binds work as with `sql_query`: `$1` is the first value bound,
//! and a number may appear more than once. A `$` followed by digits is always taken for a
//! placeholder, so such text cannot appear inside a literal (bind it instead).

use std::marker::PhantomData;

use diesel::QueryResult;
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::serialize::ToSql;
use diesel::sql_types::{HasSqlType, Untyped};

/// A statement to run with `diesel_async::RunQueryDsl` (`execute`, `load`, `get_result`
/// into a `QueryableByName` row).
pub fn sql<'a>(text: &'static str) -> Sql<'a> {
    Sql {
        text,
        binds: Vec::new(),
    }
}

/// A `'static` SQL text and the values bound to its `$n` placeholders.
pub struct Sql<'a> {
    text: &'static str,
    binds: Vec<Box<dyn Bind + Send + 'a>>,
}

impl std::fmt::Debug for Sql<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The values may be personal data: only their number is shown.
        f.debug_struct("Sql")
            .field("text", &self.text)
            .field("binds", &self.binds.len())
            .finish()
    }
}

impl<'a> Sql<'a> {
    /// Binds the next placeholder (`$1` first) as SQL type `ST`.
    #[must_use]
    pub fn bind<ST, V>(mut self, value: V) -> Self
    where
        Pg: HasSqlType<ST>,
        V: ToSql<ST, Pg> + Send + 'a,
        ST: 'a,
    {
        self.binds.push(Box::new(Value {
            value,
            sql_type: PhantomData,
        }));
        self
    }
}

trait Bind {
    fn push<'b>(&'b self, out: &mut AstPass<'_, 'b, Pg>) -> QueryResult<()>;
}

struct Value<ST, V> {
    value: V,
    sql_type: PhantomData<fn() -> ST>,
}

impl<ST, V> Bind for Value<ST, V>
where
    Pg: HasSqlType<ST>,
    V: ToSql<ST, Pg>,
{
    fn push<'b>(&'b self, out: &mut AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_bind_param::<ST, V>(&self.value)
    }
}

impl QueryFragment<Pg> for Sql<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        // Each `$n` is replaced by the n-th value, bound where it stands: a number used
        // twice is bound twice. The text produced is the same on every run, so the
        // statement cache keys it.
        let mut rest = self.text;
        while let Some(at) = rest.find('$') {
            let digits = rest[at + 1..]
                .bytes()
                .take_while(u8::is_ascii_digit)
                .count();
            if digits == 0 {
                out.push_sql(&rest[..=at]);
                rest = &rest[at + 1..];
                continue;
            }
            out.push_sql(&rest[..at]);
            let bind = rest[at + 1..at + 1 + digits]
                .parse::<usize>()
                .ok()
                .and_then(|n| n.checked_sub(1))
                .and_then(|n| self.binds.get(n))
                .ok_or_else(|| {
                    diesel::result::Error::QueryBuilderError(
                        format!(
                            "{} names a value that was not bound",
                            &rest[at..at + 1 + digits]
                        )
                        .into(),
                    )
                })?;
            bind.push(&mut out)?;
            rest = &rest[at + 1 + digits..];
        }
        out.push_sql(rest);
        Ok(())
    }
}

impl QueryId for Sql<'_> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl Query for Sql<'_> {
    type SqlType = Untyped;
}

#[cfg(test)]
mod tests {
    use super::sql;
    use diesel::pg::Pg;
    use diesel::sql_types::{Integer, Text};

    #[test]
    fn placeholders_become_binds_in_order_and_repeats_bind_again() {
        let query = sql("SELECT $2::text, $1 + $1, '$' || $2")
            .bind::<Integer, _>(7)
            .bind::<Text, _>("x");
        let text = diesel::debug_query::<Pg, _>(&query).to_string();
        assert!(
            text.starts_with("SELECT $1::text, $2 + $3, '$' || $4 -- binds: [\"x\", 7, 7, \"x\"]"),
            "{text}"
        );
    }
}
